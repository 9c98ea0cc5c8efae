"""The `Hasher` contract shared by every hashing method.

Contract (scikit-learn's estimator rules, faiss's code layout):

* ``__init__(n_bits, *, seed=0, **hyper)`` stores its arguments and does nothing else.
* ``fit(X, **side) -> self`` learns from the training features ``X`` (float, shape ``(n, d)``) and
  the side inputs the method declares (``tags=``, ``views=`` ...). Learned state lives in attributes
  whose names end in ``_``; their presence is what "fitted" means.
* ``project(X, **side) -> z`` returns real-valued outputs of shape ``(n, n_bits)``; the bit is
  ``z >= 0``. Methods implement ``_project``; thresholds other than zero are folded into ``z``.
* ``encode(X, **side)`` packs ``z >= 0`` into ``uint8`` of shape ``(n, ceil(n_bits / 8))``, bit ``j``
  of a row in byte ``j // 8`` at position ``j % 8`` (little bit order), padding bits zero.
* ``n_parameters()`` counts what must be stored to encode (projections, rotations, weights).

A method never evaluates itself: the harness times it and scores its codes.
"""
from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np

FAMILIES = ("shallow", "deep", "graph")


class NotFittedError(RuntimeError):
    """`encode` (or `n_parameters`) was called before `fit`."""


class InputError(ValueError):
    """Inputs a user can get wrong: shapes, dtypes, non-finite values, missing side inputs."""


def pack_bits(z: np.ndarray) -> np.ndarray:
    """Binarise ``z >= 0`` and pack rows into ``uint8`` bytes (little bit order, zero padding)."""
    z = np.asarray(z)
    if z.ndim != 2:
        raise InputError(f"expected a 2-D array of projections, got shape {z.shape}")
    return np.ascontiguousarray(np.packbits(z >= 0, axis=1, bitorder="little"))


def unpack_bits(codes: np.ndarray, n_bits: int) -> np.ndarray:
    """Inverse of `pack_bits`: ``uint8`` codes to a ``(n, n_bits)`` 0/1 ``uint8`` array."""
    return np.unpackbits(codes, axis=1, count=n_bits, bitorder="little")


def check_features(X: Any, *, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Validate a feature matrix and return it as C-contiguous float32 (float64 stays float64)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise InputError(f"{name} has no rows")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise InputError(f"{name} must be real-valued, got dtype {X.dtype}")
    if X.dtype != np.float64:
        X = X.astype(np.float32, copy=False)
    bad = int(np.size(X) - np.count_nonzero(np.isfinite(X)))
    if bad:
        raise InputError(f"{name} has {bad} NaN or infinite values")
    if n_features is not None and X.shape[1] != n_features:
        raise InputError(f"{name} has {X.shape[1]} features, the method was fitted on {n_features}")
    return np.ascontiguousarray(X)


class Hasher:
    """Base class of all hashing methods (see the module docstring for the contract).

    Class-level metadata, read by the registry and the runner without fitting anything:

    * ``name``: registry name (``"itq"``).
    * ``family``: ``"shallow"``, ``"deep"`` or ``"graph"``.
    * ``side_inputs``: names of the side inputs that ``fit`` and ``encode`` require (``("tags",)``).
    * ``fit_only_side_inputs``: those of ``side_inputs`` that only ``fit`` requires; ``project`` and
      ``encode`` accept them but do not need them (DeepBit's rotated ``views``).
    * ``batch_dependent``: True when a row's code depends on the other rows encoded with it.
    * ``reference``: the paper the method follows.
    * ``conformance_params``: small hyper-parameters (e.g. few epochs) with which the conformance check
      (`methods.testing`) exercises the method quickly; never used for real runs.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "shallow"
    side_inputs: ClassVar[tuple[str, ...]] = ()
    fit_only_side_inputs: ClassVar[tuple[str, ...]] = ()
    batch_dependent: ClassVar[bool] = False
    reference: ClassVar[str] = ""
    conformance_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, n_bits: int, *, seed: int = 0, **hyper: Any) -> None:
        self.n_bits = n_bits
        self.seed = seed
        for key, value in hyper.items():
            setattr(self, key, value)
        self._extra_params = tuple(hyper)

    # ----------------------------------------------------------------- parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters by name, as given to ``__init__`` (run names and MLflow read these)."""
        names = self._param_names() + list(getattr(self, "_extra_params", ()))
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params: Any) -> "Hasher":
        valid = set(self.get_params())
        for key, value in params.items():
            if key not in valid:
                raise InputError(f"{type(self).__name__} has no parameter {key!r}; valid: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ----------------------------------------------------------------- fitted state
    def _fitted_attributes(self) -> dict[str, Any]:
        return {
            k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")
        }

    def is_fitted(self) -> bool:
        return bool(self._fitted_attributes())

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(X) before encode or n_parameters"
            )

    # ----------------------------------------------------------------- validation
    def _check_n_bits(self) -> None:
        if not isinstance(self.n_bits, (int, np.integer)) or not 1 <= int(self.n_bits) <= 1024:
            raise InputError(f"n_bits must be an integer in 1..1024, got {self.n_bits!r}")

    def _check_side(self, n: int, side: dict[str, Any], *, fitting: bool = False) -> dict[str, np.ndarray]:
        required = [s for s in self.side_inputs if fitting or s not in self.fit_only_side_inputs]
        missing = [s for s in required if side.get(s) is None]
        if missing:
            raise InputError(f"{self.name} needs the side input(s) {missing}; pass them by name")
        checked = {}
        for key, value in side.items():
            if value is None:
                continue
            arr = np.asarray(value)
            if arr.shape[0] != n:
                raise InputError(f"side input {key!r} has {arr.shape[0]} rows, X has {n}")
            checked[key] = arr
        return checked

    # ----------------------------------------------------------------- public API
    def fit(self, X: Any, **side: Any) -> "Hasher":
        """Learn the hash function from training features ``X`` and side inputs; return ``self``."""
        self._check_n_bits()
        X = check_features(X)
        side = self._check_side(X.shape[0], side, fitting=True)
        self._fit(X, **side)
        self.n_features_in_ = X.shape[1]
        return self

    def project(self, X: Any, **side: Any) -> np.ndarray:
        """Real-valued outputs ``z`` of shape ``(n, n_bits)``; the code bit is ``z >= 0``."""
        self._check_fitted()
        X = check_features(X, n_features=self.n_features_in_)
        side = self._check_side(X.shape[0], side)
        z = np.asarray(self._project(X, **side))
        if z.shape != (X.shape[0], self.n_bits):
            raise RuntimeError(
                f"{type(self).__name__}._project returned shape {z.shape}, expected {(X.shape[0], self.n_bits)}"
            )
        return z

    def encode(self, X: Any, **side: Any) -> np.ndarray:
        """Packed ``uint8`` codes of shape ``(n, ceil(n_bits / 8))`` from ``z >= 0``."""
        return pack_bits(self.project(X, **side))

    def n_parameters(self) -> int:
        """Numbers stored to encode: by default the sizes of fitted array attributes and modules."""
        self._check_fitted()
        total = 0
        for key, value in self._fitted_attributes().items():
            if key == "n_features_in_":
                continue
            if isinstance(value, np.ndarray):
                total += int(value.size)
            elif hasattr(value, "parameters"):  # a torch module, counted without importing torch
                total += int(sum(p.numel() for p in value.parameters()))
        return total

    # ----------------------------------------------------------------- diagnostics
    def training_history(self) -> dict[str, list[float]]:
        """Per-epoch training curves (e.g. ``{"loss": [...]}``) that the harness logs as stepped metrics.

        Methods that train iteratively store them in ``history_``; this is diagnostics, never a score.
        """
        return dict(getattr(self, "history_", {}) or {})

    def run_info(self) -> dict[str, Any]:
        """Scalar facts about the fitted model the harness logs beside ``n_parameters`` (e.g.
        ``backbone_parameters``, the count of a frozen feature extractor). Default: none."""
        return {}

    # ----------------------------------------------------------------- to implement
    def _fit(self, X: np.ndarray, **side: np.ndarray) -> None:
        raise NotImplementedError

    def _project(self, X: np.ndarray, **side: np.ndarray) -> np.ndarray:
        raise NotImplementedError
