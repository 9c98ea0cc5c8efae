"""The `pixels` extractor: raw pixels scaled to [0, 1], flattened."""
from __future__ import annotations

import numpy as np

from hashbench.datasets.base import Dataset
from hashbench.datasets.errors import DataError
from hashbench.datasets.features.constraints import declare_settings


@declare_settings("the 'pixels' extractor", {})  # no settings
def extract_pixels(data: Dataset) -> tuple[np.ndarray, dict]:
    """``(n, H * W * C)`` float32: each image's pixels flattened, uint8 images divided by 255 (others
    as they are). Info: ``{"name": "pixels", "dim": H * W * C}``.

    Raises:
        DataError: the images differ in size (their pixels cannot form one matrix).
    """
    images = data.images
    if isinstance(images, np.ndarray):
        flat = images.reshape(len(images), -1)
    else:
        rows = [np.asarray(images[i]).reshape(-1) for i in range(len(images))]
        if len({r.shape for r in rows}) > 1:
            raise DataError(f"{data.name}: pixel features need images of one size; choose an extractor that "
                            "resizes them (e.g. effnet-lite0)")
        flat = np.stack(rows)
    scale = 255.0 if flat.dtype == np.uint8 else 1.0
    feats = np.ascontiguousarray(flat, dtype=np.float32) / np.float32(scale)
    return feats, {"name": "pixels", "dim": int(feats.shape[1])}
