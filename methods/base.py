"""The `Hasher` contract shared by every hashing method.

Contract (scikit-learn's estimator rules, faiss's code layout):

* ``__init__(n_bits, *, seed=0, <hyper-parameters>)`` stores its arguments under their own names and
  does nothing else. Hyper-parameters are explicit keyword-only arguments (no ``**kwargs``), each with
  a constraint in ``_parameter_constraints`` (scikit-learn's format, see `methods.constraints`).
* ``validate_params()`` checks the hyper-parameter values without data (declared constraints, then
  the method's cross-parameter rules) and raises `InputError`; ``fit`` calls it before any work.
* ``fit(X, **side) -> self`` learns from the training features ``X`` (float, shape ``(n, d)``) and
  the side inputs the method declares (``tags=``, ``views=`` ...). Learned state lives in attributes
  whose names end in ``_``; their presence is what "fitted" means.
* ``project(X, **side) -> z`` returns real-valued outputs of shape ``(n, n_bits)``; the bit is
  ``z >= 0``. Methods implement ``_project``; thresholds other than zero are folded into ``z``.
* ``encode(X, **side)`` packs ``z >= 0`` into ``uint8`` of shape ``(n, ceil(n_bits / 8))``, bit ``j``
  of a row in byte ``j // 8`` at position ``j % 8`` (little bit order), padding bits zero.
* ``n_parameters()`` counts what must be stored to encode (projections, rotations, weights).
* ``resolved_params()`` gives the hyper-parameter values a fit actually used where the method derives
  them (LAGNH's schedule preset, a device chosen by ``"auto"``); ``run_info()`` gives facts about the
  fitted model that are not hyper-parameter values.

A method never evaluates itself: the harness times it and scores its codes.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, ClassVar

import numpy as np

from hashbench.methods.constraints import (
    Integral,
    Interval,
    InvalidParameterError,
    describe_constraints,
    make_constraint,
    validate_parameter_constraints,
)

FAMILIES = ("shallow", "deep", "graph")
_log = logging.getLogger("hashbench.methods")


def log_epoch(method: str, epoch: int, history: dict[str, list[float]]) -> None:
    """One INFO line on the ``hashbench.methods`` logger with the latest value of every curve of
    ``history`` after epoch ``epoch`` (1-based); ``python -m bench -v`` shows them, the default hides them."""
    if _log.isEnabledFor(logging.INFO):
        values = ", ".join(f"{k}={v[-1]:.4g}" for k, v in history.items() if v)
        _log.info("%s epoch %d: %s", method, epoch, values)


class NotFittedError(RuntimeError):
    """`encode` (or `n_parameters`) was called before `fit`."""


class InputError(ValueError):
    """Inputs a user can get wrong: shapes, dtypes, non-finite values, missing side inputs."""


def _one_line_repr(value: Any, limit: int = 80) -> str:
    # Arrays print over several lines; an error message stays on one.
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    * ``execution_params``: hyper-parameters that choose where the computation runs, not what it
      computes (``("device",)``). A harness records them but leaves them out of a run's identity, so
      ``device="cpu"`` and ``device="auto"`` on a machine without a GPU are the same run.
    * ``_parameter_constraints``: hyper-parameter name -> list of allowed values in scikit-learn's
      format (a value is valid when it satisfies one of them; vocabulary in `methods.constraints`).
      A class declares only its own hyper-parameters; when the class is created, those of its bases
      are merged in (the subclass wins), so ``cls._parameter_constraints`` is always complete. The base
      declares ``n_bits`` (an int in 1..1024) and ``seed`` (an int >= 0).

    Adding a method::

        from hashbench.methods.constraints import Integral, Interval

        @register_method
        class MyHash(Hasher):
            name = "myhash"
            reference = "A. Author, The paper, 2024"
            _parameter_constraints = {"n_iter": [Interval(Integral, 1, None, closed="left")]}

            def __init__(self, n_bits, *, seed=0, n_iter=10):
                super().__init__(n_bits, seed=seed)
                self.n_iter = n_iter

            def _check_params(self):  # only rules that tie several parameters together
                ...

            def _fit(self, X): ...        # learned state in attributes ending in "_"
            def _project(self, X): ...    # (n, n_bits) real values, bit = value >= 0
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "shallow"
    side_inputs: ClassVar[tuple[str, ...]] = ()
    fit_only_side_inputs: ClassVar[tuple[str, ...]] = ()
    batch_dependent: ClassVar[bool] = False
    reference: ClassVar[str] = ""
    conformance_params: ClassVar[dict[str, Any]] = {}
    execution_params: ClassVar[tuple[str, ...]] = ()
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_bits": [Interval(Integral, 1, 1024, closed="both")],
        "seed": [Interval(Integral, 0, None, closed="left")],
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        merged: dict[str, list[Any]] = {}
        for klass in reversed(cls.__mro__[1:]):
            merged.update(vars(klass).get("_parameter_constraints", {}))
        own = vars(cls).get("_parameter_constraints", {})
        merged.update(own)
        for param, constraints in own.items():
            # A typo in a declaration fails when the module is imported, not in the middle of a sweep.
            if not isinstance(constraints, list) and constraints != "no_validation":
                raise TypeError(f"{cls.__name__}._parameter_constraints[{param!r}] must be a list of constraints")
            if isinstance(constraints, list):
                for constraint in constraints:
                    make_constraint(constraint)
        cls._parameter_constraints = merged

    def __init__(self, n_bits: int, *, seed: int = 0) -> None:
        self.n_bits = n_bits
        self.seed = seed

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
        return {name: getattr(self, name) for name in self._param_names()}

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

    def validate_params(self) -> None:
        """Check the hyper-parameter values, without data and without importing torch.

        Each value of `get_params` is checked against ``_parameter_constraints`` by scikit-learn's
        ``validate_parameter_constraints``; then `_check_params` applies the method's cross-parameter
        rules. ``fit`` calls this before any work; the harness calls it before a sweep records anything.

        Raises:
            InputError: a value is not allowed; one line naming the method, the parameter, the value
                and what is allowed (``itq: n_iter must be an int in the range [0, inf), got 'abc'``).
            RuntimeError: a parameter of ``__init__`` has no declared constraint (a bug of the method,
                not of its caller).
        """
        params = self.get_params()
        constraints = type(self)._parameter_constraints
        undeclared = [name for name in params if name not in constraints]
        if undeclared:
            raise RuntimeError(
                f"{type(self).__name__} declares no constraint for its parameter(s) {undeclared}; "
                "add them to its _parameter_constraints"
            )
        for name, value in params.items():
            try:
                validate_parameter_constraints({name: constraints[name]}, {name: value}, caller_name=self._label())
            except InvalidParameterError:
                allowed = describe_constraints(constraints[name])
                raise InputError(f"{self._label()}: {name} must be {allowed}, got {_one_line_repr(value)}") from None
        self._check_params()

    def _check_params(self) -> None:
        """Rules that tie several hyper-parameters (or a parameter and the class) together; each value
        alone has already passed its declared constraints. Raise `InputError` naming the method (see
        `_label`) and the parameters. Default: none."""

    def _label(self) -> str:
        return self.name or type(self).__name__

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
        """Learn the hash function from training features ``X`` and side inputs; return ``self``.

        Raises:
            InputError: invalid hyper-parameters (checked first, see `validate_params`), features or side
                inputs.
        """
        self.validate_params()
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

    def resolved_params(self) -> dict[str, Any]:
        """Hyper-parameter values as a fit actually used them, where the method derives them from what
        it was given: a preset's values for parameters left as None, a count capped at the training
        size, the device ``"auto"`` chose, iteration counts derived from passes over the data. Keys
        are the hyper-parameter's name when the value replaces it (LAGNH's ``epochs``, ``n_anchors``,
        ``device``), else a name of its own (SGH's ``iterations``); values are Python scalars,
        strings or None. Methods store them in the fitted attribute ``resolved_params_``; default:
        none (``{}``).

        Raises:
            NotFittedError: before ``fit``.
        """
        self._check_fitted()
        return dict(getattr(self, "resolved_params_", {}) or {})

    def run_info(self) -> dict[str, Any]:
        """Facts about the fitted model that are not hyper-parameter values, which the harness logs
        beside ``n_parameters`` (e.g. ``epochs_run``, ``discriminator_parameters``, the count of a
        frozen feature extractor). Never repeats a hyper-parameter or a `resolved_params` value under
        its name. Default: none."""
        return {}

    # ----------------------------------------------------------------- to implement
    def _fit(self, X: np.ndarray, **side: np.ndarray) -> None:
        raise NotImplementedError

    def _project(self, X: np.ndarray, **side: np.ndarray) -> np.ndarray:
        raise NotImplementedError
