"""The `pixels` extractor: raw pixels scaled to [0, 1], flattened."""
from __future__ import annotations

import numpy as np

from datasets.base import Dataset


def extract_pixels(data: Dataset) -> tuple[np.ndarray, dict]:
    images = data.images
    if isinstance(images, np.ndarray):
        flat = images.reshape(len(images), -1)
    else:
        flat = np.stack([np.asarray(images[i]).reshape(-1) for i in range(len(images))])
    scale = 255.0 if flat.dtype == np.uint8 else 1.0
    feats = np.ascontiguousarray(flat, dtype=np.float32) / np.float32(scale)
    return feats, {"features": "pixels", "features_dim": int(feats.shape[1])}
