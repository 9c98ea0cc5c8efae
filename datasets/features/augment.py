"""Random augmentations of images for contrastive hashing (CIBHash's two views of an image).

CIBHash (Qiu et al., IJCAI 2021; ``github.com/zexuanqiu/CIBHash``, ``utils/data.py``) draws two views of
each training image per step with torchvision's ``RandomResizedCrop(224, scale=(0.5, 1.0))``,
``RandomHorizontalFlip()``, ``RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.7)``,
``RandomGrayscale(p=0.2)`` and a 3 x 3 Gaussian blur applied with probability 0.5 (sigma ~ U(0.1, 2.0),
OpenCV, reflected borders). torchvision does not install beside this project's torch, so the same
operations are written here on torch tensors, one image at a time:

1. crop: area fraction ``U(0.5, 1.0)`` of the image, aspect ratio ``exp(U(log 3/4, log 4/3))``, up to
   10 draws until the box fits (then a centred crop of the clamped ratio), position uniform; the box is
   resized to the extractor's ``s x s`` exactly as whole images are for features
   (`datasets.features.images.to_input_batch`: bilinear, anti-aliased), instead of torchvision's 224;
2. horizontal flip with probability 0.5;
3. with probability 0.7 the colour jitter: brightness, contrast, saturation factors ``U(0.6, 1.4)`` and a
   hue shift ``U(-0.1, 0.1)`` turns, applied in a random order (torchvision's ``ColorJitter``); contrast
   blends with the mean grey level of the image, saturation with its grey image, hue rotates the HSV hue;
4. with probability 0.2 grey: ``0.299 R + 0.587 G + 0.114 B`` on all three channels;
5. with probability 0.5 a 3 x 3 Gaussian blur with sigma ``U(0.1, 2.0)``, reflected borders (at ``s`` px,
   where the authors blur at 224 px).

Values stay float in ``[0, 255]`` between the steps (torchvision rounds PIL images to uint8 after each);
every step clips to that range as torchvision does. The random numbers of view ``v`` of dataset row
``i`` come from ``numpy.random.default_rng([seed, i, v])``, so a view depends on the seed, the row and the
view number only, never on the batch it was computed in or on which other rows were asked for.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

# The authors' parameters (utils/data.py); part of the cache key of augmented views.
CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
FLIP_P = 0.5
JITTER_P = 0.7
JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}
GREY_P = 0.2
BLUR_P = 0.5
BLUR_KERNEL = 3
BLUR_SIGMA = (0.1, 2.0)
GREY_WEIGHTS = (0.299, 0.587, 0.114)
# Bump when the drawing or the operations change, so cached views are recomputed.
AUGMENTATION_VERSION = "cibhash-v1"


def augmentation_spec() -> dict[str, Any]:
    """The augmentation's parameters as a flat dict (for cache keys and provenance)."""
    return {"crop_scale": CROP_SCALE, "crop_ratio": CROP_RATIO, "flip_p": FLIP_P, "jitter_p": JITTER_P,
            **{f"jitter_{k}": v for k, v in JITTER.items()}, "grey_p": GREY_P, "blur_p": BLUR_P,
            "blur_kernel": BLUR_KERNEL, "blur_sigma": BLUR_SIGMA, "version": AUGMENTATION_VERSION}


def view_rng(seed: int, row: int, view: int) -> np.random.Generator:
    """The generator of view ``view`` of dataset row ``row`` (module docstring)."""
    return np.random.default_rng([int(seed), int(row), int(view)])


def draw_crop(rng: np.random.Generator, height: int, width: int) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random resized crop of an ``height x width`` image (step 1 above)."""
    area = height * width
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    # torchvision's fallback: a centred crop of the whole image with the ratio clamped to the range
    in_ratio = width / height
    if in_ratio < CROP_RATIO[0]:
        w, h = width, int(round(width / CROP_RATIO[0]))
    elif in_ratio > CROP_RATIO[1]:
        h, w = height, int(round(height * CROP_RATIO[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def draw_augmentation(rng: np.random.Generator, height: int, width: int) -> dict[str, Any]:
    """Every random choice of one view of an ``height x width`` image, drawn in a fixed order:
    ``crop`` (top, left, h, w), ``flip`` (bool), ``jitter`` (None or a list of ``(operation, factor)``
    in the order applied; hue's factor is a shift in turns), ``grey`` (bool), ``blur_sigma`` (None or
    sigma in pixels)."""
    crop = draw_crop(rng, height, width)
    flip = bool(rng.random() < FLIP_P)
    jitter = None
    if rng.random() < JITTER_P:
        factors = {name: float(rng.uniform(max(0.0, 1.0 - JITTER[name]), 1.0 + JITTER[name]))
                   for name in ("brightness", "contrast", "saturation")}
        factors["hue"] = float(rng.uniform(-JITTER["hue"], JITTER["hue"]))
        order = rng.permutation(4)
        names = ("brightness", "contrast", "saturation", "hue")
        jitter = [(names[k], factors[names[k]]) for k in order]
    grey = bool(rng.random() < GREY_P)
    blur_sigma = float(rng.uniform(*BLUR_SIGMA)) if rng.random() < BLUR_P else None
    return {"crop": crop, "flip": flip, "jitter": jitter, "grey": grey, "blur_sigma": blur_sigma}


def _grey(x):
    """``(3, H, W)`` -> ``(1, H, W)`` luma."""
    r, g, b = GREY_WEIGHTS
    return r * x[0:1] + g * x[1:2] + b * x[2:3]


def _rgb_to_hsv(x):
    import torch

    r, g, b = x[0], x[1], x[2]
    maxc, _ = x.max(dim=0)
    minc, _ = x.min(dim=0)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, ((g - b) / safe) % 6.0,
                    torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h)) % 1.0
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return h, s, maxc


def _hsv_to_rgb(h, s, v):
    import torch

    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    # sector k -> (R, G, B)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros((3, *h.shape), dtype=h.dtype)
    for k, rgb in enumerate(table):
        mask = i == k
        for c in range(3):
            out[c] = torch.where(mask, rgb[c], out[c])
    return out


def adjust_hue(x, shift: float):
    """``(3, H, W)`` in ``[0, 255]`` with its HSV hue rotated by ``shift`` turns."""
    h, s, v = _rgb_to_hsv(x / 255.0)
    return _hsv_to_rgb((h + shift) % 1.0, s, v) * 255.0


def _blend(x, other, factor: float):
    return (factor * x + (1.0 - factor) * other).clamp(0.0, 255.0)


def colour_op(x, name: str, factor: float):
    """One jitter operation on ``(3, H, W)`` float in ``[0, 255]`` (torchvision's definitions)."""
    if name == "brightness":
        return (x * factor).clamp(0.0, 255.0)
    if name == "contrast":
        return _blend(x, _grey(x).mean(), factor)
    if name == "saturation":
        return _blend(x, _grey(x), factor)
    if name == "hue":
        return adjust_hue(x, factor)
    raise ValueError(f"unknown colour operation {name!r}")


def gaussian_blur(x, sigma: float):
    """``(3, H, W)`` blurred with a ``BLUR_KERNEL``-wide Gaussian of ``sigma`` px, reflected borders."""
    import torch
    import torch.nn.functional as F

    half = BLUR_KERNEL // 2
    t = torch.arange(-half, half + 1, dtype=x.dtype)
    k1 = torch.exp(-(t ** 2) / (2.0 * sigma ** 2))
    k1 = k1 / k1.sum()
    kernel = (k1[:, None] * k1[None, :]).expand(3, 1, BLUR_KERNEL, BLUR_KERNEL)
    padded = F.pad(x[None], (half, half, half, half), mode="reflect")
    return F.conv2d(padded, kernel, groups=3)[0]


def augment_image(image: np.ndarray, size: int, params: dict[str, Any]):
    """One view: ``image`` uint8 ``(H, W)`` or ``(H, W, 3)`` -> float32 tensor ``(3, size, size)`` in
    ``[0, 255]``, with the choices ``params`` of `draw_augmentation` (module docstring)."""
    import torch

    from hashbench.datasets.features.images import to_input_batch

    top, left, h, w = params["crop"]
    x = to_input_batch(np.ascontiguousarray(image[None, top:top + h, left:left + w]), size, "cpu",
                       channels_last=False)[0].contiguous()
    if params["flip"]:
        x = torch.flip(x, dims=(2,))
    for name, factor in params["jitter"] or ():
        x = colour_op(x, name, factor)
    if params["grey"]:
        x = _grey(x).expand(3, -1, -1).contiguous()
    if params["blur_sigma"] is not None:
        x = gaussian_blur(x, params["blur_sigma"])
    return x


def augmented_batch(images, rows: np.ndarray, view: int, seed: int, size: int):
    """``(B, 3, size, size)`` float32 tensor: view ``view`` of each image of ``images`` (a uint8 array
    or a list of arrays, one per entry of ``rows``, the images' dataset row numbers)."""
    import torch

    out = []
    # One image at a time the tensors are small (3 x s x s): torch's thread pool only adds synchronisation.
    # Measured on the shared 2-core machine under load (128 views of 128 px): 0.33 s of CPU on one thread,
    # 8.5 s on two (the threads spin while waiting for each other).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for image, row in zip(images, rows):
            image = np.asarray(image)
            params = draw_augmentation(view_rng(seed, row, view), image.shape[0], image.shape[1])
            out.append(augment_image(image, size, params))
    finally:
        torch.set_num_threads(threads)
    if not out:
        return torch.zeros((0, 3, size, size), dtype=torch.float32)
    return torch.stack(out)
