"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): for smoke tests and quick runs."""
from __future__ import annotations

import numpy as np

from hashbench.datasets.base import Dataset


def load_digits() -> Dataset:
    """The 1,797 digits: ``images`` uint8 ``(1797, 8, 8)`` scaled from 0..16 to 0..255, ``labels`` int64
    in 0..9; no partition. Reads no files (the data ship with scikit-learn), so it takes no ``data_root``.
    """
    from sklearn.datasets import load_digits as _sk_load

    raw = _sk_load()
    # sklearn stores intensities 0..16; rescale to the uint8 range every image extractor expects.
    images = np.round(raw.images * (255.0 / 16.0)).astype(np.uint8)
    return Dataset(
        name="digits",
        labels=raw.target.astype(np.int64),
        images=images,
        classes=tuple(str(c) for c in range(10)),
        source="sklearn.datasets.load_digits (bundled with scikit-learn)",
    )
