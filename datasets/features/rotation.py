"""Rotated copies of images for DeepBit's rotation-invariance views.

DeepBit (Lin et al., CVPR 2016) rotates each training image about its centre by a few degrees and crops
the centre. Here, for an ``(H, W)`` image and angle ``theta`` (degrees, positive = counter-clockwise as
displayed), `rotate_crop` returns the image rotated about its centre, cropped to the largest centred
rectangle of the same aspect ratio that holds no pixel from outside the original (so no empty corners),
and resized back to ``(H, W)``, all in one bilinear resampling: output pixel ``p`` (centred pixel
coordinates, y down) takes the source value at ``a R(theta)^-1 p`` with the crop factor
``a = min(W / (W cos + H sin), H / (W sin + H cos))`` of `inscribed_scale` (``1 / (cos + sin)`` for a
square, 0.863 at 10 degrees). At 0 degrees the image is returned unchanged.

`rotate_black_corners` is the authors' way: the image rotated about its centre at its own scale, the
corners that come from outside the original filled with black (0), as DeepBit's released augmentation
leaves them. The crop zooms in by ``1 / a`` (1.08 at 5 degrees, 1.16 at 10) where the authors' views do not,
and black corners show the network a border no database image has; which of the two the `views` side input
uses is its ``rotation`` setting.
"""
from __future__ import annotations

import math


def inscribed_scale(angle_deg: float, height: int, width: int) -> float:
    """Largest ``a`` such that the centred ``a W x a H`` rectangle lies inside the rotated image."""
    c, s = abs(math.cos(math.radians(angle_deg))), abs(math.sin(math.radians(angle_deg)))
    return min(width / (width * c + height * s), height / (width * s + height * c))


def rotate_crop(x, angle_deg: float):
    """``x`` ``(B, C, H, W)`` float tensor -> same shape, rotated, cropped and resized (module docstring)."""
    return _rotate(x, angle_deg, crop=True)


def rotate_black_corners(x, angle_deg: float):
    """``x`` ``(B, C, H, W)`` float tensor (pixel values, 0 = black) -> same shape, rotated about the centre
    without zoom; output pixels whose source lies outside the image are 0 (module docstring)."""
    return _rotate(x, angle_deg, crop=False)


def _rotate(x, angle_deg: float, *, crop: bool):
    import torch
    import torch.nn.functional as F

    if angle_deg % 360 == 0:
        return x
    height, width = x.shape[-2:]
    a = inscribed_scale(angle_deg, height, width) if crop else 1.0
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    # affine_grid works in [-1, 1] coordinates per axis, hence the aspect factors on the shear terms.
    theta = torch.tensor([[a * c, -a * s * height / width, 0.0],
                          [a * s * width / height, a * c, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    # Cropped: border padding, so sample points within half a pixel of the edge do not blend in black.
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border" if crop else "zeros", align_corners=False)
