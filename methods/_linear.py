"""Linear building blocks shared by the shallow hashers (LSH, PCAH, ITQ, SH).

* `fit_pca` : mean ``μ`` and the top-``k`` eigenvectors ``W`` (d×k) of the training covariance
  ``C = (X - μ)ᵀ(X - μ) / (n - 1)``, ordered by decreasing eigenvalue, each column's sign fixed so
  that its largest-magnitude entry is positive (the eigen-solver's sign is arbitrary).
* `project_centred` : ``(X - μ) W`` for any ``W``, by blocks of rows so that centring a large matrix
  never copies it whole.
* `check_pca_bits` : PCA-based methods need ``n_bits <= d``.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from hashbench.methods.base import InputError

# Rows per block when centring and projecting: bounds the float64 temporary to 256 MB at d=4096.
_BLOCK_ROWS = 8192


def check_pca_bits(method: str, n_bits: int, n_features: int) -> None:
    """Raise `InputError` when a method needing one PCA direction per bit gets fewer features than bits."""
    if n_bits > n_features:
        raise InputError(
            f"{method} takes one principal direction per bit, so n_bits={n_bits} needs at least {n_bits} "
            f"feature dimensions; X has {n_features} feature(s). Use n_bits <= {n_features}, or lsh / sh which accept any n_bits"
        )


def fit_pca(X: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top principal directions of ``X``.

    Returns ``(mean, components, variances)``: ``mean`` (d,), ``components`` (d, k) with orthonormal
    columns, ``variances`` (k,) the matching eigenvalues of the covariance, largest first. Computed in
    float64 (a float32 covariance loses the small directions).
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    if not 1 <= n_components <= d:
        raise InputError(f"n_components must be in 1..{d}, got {n_components}")
    mean = X.mean(axis=0)
    centred = X - mean
    cov = centred.T @ centred / max(n - 1, 1)
    # Only the top k eigenpairs: much cheaper than a full decomposition at d=4096 and small k.
    values, vectors = scipy.linalg.eigh(cov, subset_by_index=[d - n_components, d - 1])
    values, vectors = values[::-1], vectors[:, ::-1]
    pivot = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[pivot, np.arange(n_components)])
    signs[signs == 0] = 1.0
    vectors = vectors * signs
    return mean, np.ascontiguousarray(vectors), np.maximum(values, 0.0)


def project_centred(X: np.ndarray, mean: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``(X - mean) @ W`` in float64, computed block by block over rows."""
    W = np.asarray(W, dtype=np.float64)
    out = np.empty((X.shape[0], W.shape[1]), dtype=np.float64)
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        block = np.asarray(X[start : start + _BLOCK_ROWS], dtype=np.float64) - mean
        out[start : start + _BLOCK_ROWS] = block @ W
    return out
