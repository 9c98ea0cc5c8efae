"""``X W + b`` over row blocks, for the encoders of the deep baselines (numpy only).

The product is taken in float64 block by block, so that a float32 feature matrix is never copied whole
into float64 (60,000 × 4,096 would need 2 GB).
"""
from __future__ import annotations

import numpy as np

_BLOCK_ROWS = 8192


def affine(X: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``X @ weight + bias`` in float64, shape ``(n, weight.shape[1])``."""
    weight = np.asarray(weight, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    out = np.empty((X.shape[0], weight.shape[1]), dtype=np.float64)
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        block = np.asarray(X[start : start + _BLOCK_ROWS], dtype=np.float64)
        out[start : start + _BLOCK_ROWS] = block @ weight + bias
    return out
