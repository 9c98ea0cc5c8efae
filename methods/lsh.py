"""Locality-sensitive hashing with random hyperplanes (sign random projections).

Bit ``j`` of ``x`` is ``[(x - μ) · w_j >= 0]`` with ``w_j ~ N(0, I_d)`` drawn once from ``seed`` and
``μ`` the training mean. Centring makes every hyperplane pass through the data's centre, so each
bit splits the training set roughly in half instead of being constant for data far from the origin
(fc7 features are all non-negative).
"""
from __future__ import annotations

import numpy as np

from hashbench.methods._linear import project_centred
from hashbench.methods.base import Hasher
from hashbench.methods.registry import register_method


@register_method
class LSH(Hasher):
    """Random hyperplane LSH: ``z = (x - μ) W``, ``W`` (d × n_bits) i.i.d. standard Gaussian.

    Fitted attributes: ``mean_`` (d,) and ``projection_`` (d, n_bits). Any ``n_bits`` is allowed.
    """

    name = "lsh"
    family = "shallow"
    reference = (
        "M. S. Charikar, Similarity estimation techniques from rounding algorithms, STOC 2002 "
        "(random hyperplanes); hyperplanes through the training mean"
    )

    def __init__(self, n_bits: int, *, seed: int = 0) -> None:
        super().__init__(n_bits, seed=seed)

    def _fit(self, X: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        self.mean_ = np.asarray(X, dtype=np.float64).mean(axis=0)
        self.projection_ = rng.standard_normal((X.shape[1], int(self.n_bits)))

    def _project(self, X: np.ndarray) -> np.ndarray:
        return project_centred(X, self.mean_, self.projection_)

    def n_parameters(self) -> int:
        """The mean (d) and the projection (d × n_bits)."""
        self._check_fitted()
        return int(self.mean_.size + self.projection_.size)
