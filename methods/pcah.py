"""PCA hashing: the sign of the top principal components.

Bit ``j`` of ``x`` is ``[(x - μ) · w_j >= 0]`` where ``w_j`` is the ``j``-th eigenvector of the
training covariance (largest eigenvalue first) and ``μ`` the training mean. Needs ``n_bits <= d``.
"""
from __future__ import annotations

import numpy as np

from hashbench.methods._linear import check_pca_bits, fit_pca, project_centred
from hashbench.methods.base import Hasher
from hashbench.methods.registry import register_method


@register_method
class PCAH(Hasher):
    """PCA hashing: ``z = (x - μ) W`` with ``W`` (d × n_bits) the top principal directions.

    ``seed`` is unused (PCA is deterministic); it is kept for a uniform signature.

    Fitted attributes: ``mean_`` (d,), ``components_`` (d, n_bits), ``explained_variance_`` (n_bits,)
    (the latter is diagnostic and not counted by `n_parameters`).
    """

    name = "pcah"
    family = "shallow"
    reference = (
        "J. Wang, S. Kumar, S.-F. Chang, Semi-supervised hashing for large-scale search, TPAMI 2012 "
        "(PCAH baseline); Y. Gong, S. Lazebnik, Iterative quantization, CVPR 2011"
    )

    def __init__(self, n_bits: int, *, seed: int = 0) -> None:
        super().__init__(n_bits, seed=seed)

    def _fit(self, X: np.ndarray) -> None:
        check_pca_bits(self.name, int(self.n_bits), X.shape[1])
        self.mean_, self.components_, self.explained_variance_ = fit_pca(X, int(self.n_bits))

    def _project(self, X: np.ndarray) -> np.ndarray:
        return project_centred(X, self.mean_, self.components_)

    def n_parameters(self) -> int:
        """The mean (d) and the projection (d × n_bits)."""
        self._check_fitted()
        return int(self.mean_.size + self.components_.size)
