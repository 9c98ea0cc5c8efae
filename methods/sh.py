"""Spectral hashing (SH), Weiss, Torralba & Fergus, NIPS 2008.

The data are rotated to their top ``m = min(n_bits, d)`` principal directions, ``p = (x - μ) W``, and
assumed uniform on the training bounding box ``[mn_j, mx_j]`` (``mn = min p - eps``,
``mx = max p + eps``, ``R_j = mx_j - mn_j``). The Laplacian eigenfunctions of that box along one axis
are ``Φ_{j,k}(p) = sin(π/2 + ω_{jk} (p_j - mn_j))`` with ``ω_{jk} = kπ / R_j`` and eigenvalue
``λ = 1 - exp(-ε²/2 · ω_{jk}²)``, increasing in ``ω_{jk}²``. SH keeps the ``n_bits`` single-axis modes
with the smallest ``ω²`` (``k >= 1``: the constant mode ``k = 0`` is dropped) and sets bit ``b`` to
``[Φ_b(p) >= 0]``.

Ties: modes are ordered by ``k / R_j``, one correctly rounded division, so modes whose frequencies
are mathematically equal (ranges in exact integer ratio) compare equal in floating point too (``λ``
or ``kπ/R_j`` would round them apart); equal keys are broken by axis, then ``k``, which is the order
a stable sort gives in the original MATLAB ``trainSH.m``. The original thresholds ``Φ > 0``; the
harness uses ``>= 0`` (only an exact zero of the sine differs).
"""
from __future__ import annotations

import numpy as np

from hashbench.methods._linear import fit_pca, project_centred
from hashbench.methods.base import Hasher
from hashbench.methods.registry import register_method

# Box margin of the original code (MATLAB's eps): keeps R_j > 0 on an axis where all points agree.
_BOX_EPS = float(np.finfo(np.float64).eps)


def spectral_modes(ranges: np.ndarray, n_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_bits`` single-axis modes of smallest frequency for a box with side lengths ``ranges``.

    Returns ``(axes, orders)``: mode ``b`` is ``sin(π/2 + orders[b] π / ranges[axes[b]] · (p - mn))`` on
    axis ``axes[b]``. Modes come in increasing ``orders / ranges[axes]``, ties by axis then order.
    """
    ranges = np.asarray(ranges, dtype=np.float64)
    # A mode k on axis j is never needed once k / R_j > n_bits / max(R): the widest axis alone
    # already offers n_bits modes below that frequency (the bound of trainSH.m).
    max_mode = np.ceil((n_bits + 1) * ranges / ranges.max()).astype(np.int64)
    axes = np.concatenate([np.full(m - 1, j, dtype=np.int64) for j, m in enumerate(max_mode)])
    orders = np.concatenate([np.arange(1, m, dtype=np.int64) for m in max_mode])
    key = orders / ranges[axes]
    chosen = np.lexsort((orders, axes, key))[:n_bits]
    return axes[chosen], orders[chosen]


@register_method
class SH(Hasher):
    """Spectral hashing: ``z_b = sin(π/2 + ω_b ((x - μ) w_{a_b} - mn_{a_b}))`` for ``n_bits`` modes ``(a_b, ω_b)``.

    Any ``n_bits`` is allowed: with ``n_bits > d`` the PCA keeps all ``d`` directions and several
    bits use higher harmonics of the same axis. ``seed`` is unused (SH is deterministic).

    Fitted attributes: ``mean_`` (d,), ``components_`` (d, m), ``mn_`` and ``mx_`` (m,) box corners,
    ``mode_axes_``, ``mode_orders_`` (n_bits,) int, ``omegas_`` (n_bits,) ``= mode_orders_ π / R``.
    """

    name = "sh"
    family = "shallow"
    reference = "Y. Weiss, A. Torralba, R. Fergus, Spectral hashing, NIPS 2008"

    def __init__(self, n_bits: int, *, seed: int = 0) -> None:
        super().__init__(n_bits, seed=seed)

    def _fit(self, X: np.ndarray) -> None:
        n_bits = int(self.n_bits)
        mean, components, _ = fit_pca(X, min(n_bits, X.shape[1]))
        P = project_centred(X, mean, components)
        mn = P.min(axis=0) - _BOX_EPS
        mx = P.max(axis=0) + _BOX_EPS
        axes, orders = spectral_modes(mx - mn, n_bits)
        self.mean_, self.components_ = mean, components
        self.mn_, self.mx_ = mn, mx
        self.mode_axes_, self.mode_orders_ = axes, orders
        self.omegas_ = orders * np.pi / (mx - mn)[axes]

    def _project(self, X: np.ndarray) -> np.ndarray:
        P = project_centred(X, self.mean_, self.components_)
        return np.sin(np.pi / 2 + self.omegas_ * (P[:, self.mode_axes_] - self.mn_[self.mode_axes_]))

    def n_parameters(self) -> int:
        """The mean (d), the PCA projection (d × m) and per bit its axis, offset ``mn`` and ``ω``."""
        self._check_fitted()
        return int(self.mean_.size + self.components_.size + 3 * self.omegas_.size)
