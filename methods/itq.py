"""Iterative quantization (ITQ), Gong & Lazebnik, CVPR 2011 / TPAMI 2013.

With ``V = (X - μ) W`` the training data projected on its top ``r = n_bits`` principal directions,
ITQ looks for an orthogonal ``R`` (r × r) minimising the quantisation loss

    Q(B, R) = ||B - V R||_F^2,   B ∈ {-1, +1}^{n × r},

by alternating, from a random orthogonal ``R_0`` drawn from ``seed``:

* ``B = sign(V R)`` with ``sign(0) = +1`` (optimal ``B`` for fixed ``R``);
* ``R = Ṽ Uᵀ`` where ``Bᵀ V = U Σ Ṽᵀ`` (orthogonal Procrustes: optimal ``R`` for fixed ``B``).

Neither step can increase ``Q``. A query is encoded as ``sign((x - μ) W R)``.
"""
from __future__ import annotations

import numpy as np

from hashbench.methods._linear import check_pca_bits, fit_pca, project_centred
from hashbench.methods.base import Hasher
from hashbench.methods.constraints import Integral, Interval
from hashbench.methods.registry import register_method


def random_rotation(r: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed random orthogonal ``r × r`` matrix (QR of a Gaussian, signs fixed by diag(R))."""
    q, upper = np.linalg.qr(rng.standard_normal((r, r)))
    signs = np.sign(np.diag(upper))
    signs[signs == 0] = 1.0
    return q * signs


def sign_codes(Z: np.ndarray) -> np.ndarray:
    """``sign(Z)`` in {-1, +1} with ``sign(0) = +1`` (the original code thresholds ``Z >= 0``)."""
    return np.where(Z >= 0, 1.0, -1.0)


def quantization_loss(B: np.ndarray, V: np.ndarray, R: np.ndarray) -> float:
    """``||B - V R||_F^2``."""
    return float(np.sum((B - V @ R) ** 2))


def procrustes_rotation(B: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``argmin_{R orthogonal} ||B - V R||_F`` = ``Ṽ Uᵀ`` with ``Bᵀ V = U Σ Ṽᵀ``.

    NumPy's ``svd`` returns ``Ṽᵀ`` (not ``Ṽ`` as ``torch.svd`` does): mixing the two conventions gives
    ``Ṽᵀ Uᵀ``, the bug found in several PyTorch ports.
    """
    U, _, Vt = np.linalg.svd(B.T @ V)
    return Vt.T @ U.T


def itq_rotation(V: np.ndarray, n_iter: int, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """Run ITQ on projected data ``V`` (n × r).

    Returns ``(R, losses)`` where ``losses[t] = ||sign(V R_t) - V R_t||_F^2`` for ``t = 0..n_iter``,
    ``R_0`` the random start and ``R_t`` the rotation after ``t`` Procrustes updates (non-increasing).
    """
    R = random_rotation(V.shape[1], rng)
    losses = []
    for _ in range(n_iter):
        B = sign_codes(V @ R)
        losses.append(quantization_loss(B, V, R))
        R = procrustes_rotation(B, V)
    losses.append(quantization_loss(sign_codes(V @ R), V, R))
    return R, losses


@register_method
class ITQ(Hasher):
    """ITQ: ``z = (x - μ) W R`` with PCA directions ``W`` (d × n_bits) and a learned rotation ``R``.

    Args:
        n_bits: code length; needs ``n_bits <= d``.
        seed: seeds the random initial rotation.
        n_iter: number of alternating (B, R) updates (50, as recommended by Gong's ``ITQ.m``).

    Fitted attributes: ``mean_`` (d,), ``components_`` (d, n_bits), ``rotation_`` (n_bits, n_bits),
    ``quantization_loss_`` (list of ``n_iter + 1`` floats, see `itq_rotation`; diagnostic only).
    """

    name = "itq"
    family = "shallow"
    reference = (
        "Y. Gong, S. Lazebnik, Iterative quantization: A procrustean approach to learning binary codes, "
        "CVPR 2011; Y. Gong, S. Lazebnik, A. Gordo, F. Perronnin, TPAMI 35(12), 2013"
    )
    # Rotation iterations: the paper's 50; fewer under-fit the rotation, more rarely change the codes.
    search_space = {"n_iter": {"low": 5, "high": 200, "log": True}}
    _parameter_constraints = {"n_iter": [Interval(Integral, 0, None, closed="left")]}

    def __init__(self, n_bits: int, *, seed: int = 0, n_iter: int = 50) -> None:
        super().__init__(n_bits, seed=seed)
        self.n_iter = n_iter

    def _fit(self, X: np.ndarray) -> None:
        check_pca_bits(self.name, int(self.n_bits), X.shape[1])
        mean, components, _ = fit_pca(X, int(self.n_bits))
        V = project_centred(X, mean, components)
        rotation, losses = itq_rotation(V, int(self.n_iter), np.random.default_rng(self.seed))
        self.mean_, self.components_, self.rotation_ = mean, components, rotation
        self.quantization_loss_ = losses

    def _project(self, X: np.ndarray) -> np.ndarray:
        return project_centred(X, self.mean_, self.components_ @ self.rotation_)

    def n_parameters(self) -> int:
        """The mean (d), the PCA projection (d × n_bits) and the rotation (n_bits × n_bits).

        ``W R`` could be stored as one d × n_bits matrix; we count the two factors as the method
        defines them.
        """
        self._check_fitted()
        return int(self.mean_.size + self.components_.size + self.rotation_.size)
