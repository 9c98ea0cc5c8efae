"""The `Hasher` contract shared by every hashing method.

Contract (scikit-learn's estimator rules, faiss's code layout):

* ``__init__(n_bits, *, seed=0, <hyper-parameters>)`` stores its arguments under their own names and
  does nothing else. Hyper-parameters are explicit keyword-only arguments (no ``**kwargs``), each with
  a constraint in ``_parameter_constraints`` (scikit-learn's format, see `methods.constraints`).
* ``validate_params()`` checks the hyper-parameter values without data (declared constraints, then
  the method's cross-parameter rules) and raises `InputError`; ``fit`` calls it before any work.
* ``fit(X, y=None, **side) -> self`` learns from the training features ``X`` (float, shape ``(n, d)``)
  and the side inputs the method declares (``tags=``, ``views=`` ...); ``y`` is ignored (hashing is
  unsupervised; the argument exists so that scikit-learn's `Pipeline` and `GridSearchCV` can pass it).
  Learned state lives in attributes whose names end in ``_``; their presence is what "fitted" means.
* ``project(X, **side) -> z`` returns real-valued outputs of shape ``(n, n_bits)``; the bit is
  ``z >= 0``. Methods implement ``_project``; thresholds other than zero are folded into ``z``.
* ``encode(X, **side)`` packs ``z >= 0`` into ``uint8`` of shape ``(n, ceil(n_bits / 8))``, bit ``j``
  of a row in byte ``j // 8`` at position ``j % 8`` (little bit order), padding bits zero.
* ``transform(X, **side)`` is ``encode``: scikit-learn's name, so a hasher is the last step of a
  `Pipeline` (``Pipeline([("scale", StandardScaler()), ("itq", ITQ(64))])``).
* ``n_parameters()`` counts what must be stored to encode (projections, rotations, weights).
* ``resolved_params()`` gives the hyper-parameter values a fit actually used where the method derives
  them (LAGNH's schedule preset, a device chosen by ``"auto"``); ``run_info()`` gives facts about the
  fitted model that are not hyper-parameter values.

A method never evaluates itself: the harness times it and scores its codes.

A `Hasher` is a scikit-learn estimator: it inherits `sklearn.base.BaseEstimator` (``get_params(deep=True)``,
``set_params``, ``clone``, the HTML repr) and `TransformerMixin`, and states its tags in
``__sklearn_tags__`` (packed ``uint8`` output, no NaN, fit required). Saving a fitted hasher without
pickling it: `save_hasher` / `load_hasher` in `methods.persist`.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

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


class NotFittedError(_SklearnNotFittedError, RuntimeError):
    """`encode` (or `n_parameters`) was called before `fit`. Also scikit-learn's `NotFittedError` (a
    ValueError and an AttributeError), so sklearn's tools recognise it."""


class InputError(ValueError):
    """Inputs a user can get wrong: shapes, dtypes, non-finite values, missing side inputs."""


class _InputTypeError(InputError, TypeError):
    """An `InputError` whose cause was a `TypeError` (values of the wrong type: scikit-learn's checks
    expect a TypeError there)."""


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


def check_features(X: Any, *, name: str = "X", n_features: int | None = None, owner: str = "the hasher") -> np.ndarray:
    """Validate a feature matrix and return it as C-contiguous float32 (float64 stays float64).

    The structural checks are scikit-learn's ``check_array`` (dense, 2-D, at least one row and one
    column, real numbers; object arrays of numbers are converted), their messages cut to one line; then
    NaN and infinite values are counted, and the feature count is compared with ``n_features`` (the
    count at fit) in scikit-learn's words.

    Raises:
        InputError: sparse, not 2-D, empty, complex or non-numeric input; NaN or infinite values; another
            feature count than ``n_features``.
    """
    from sklearn.utils import check_array

    try:
        X = check_array(X, accept_sparse=False, dtype="numeric", ensure_all_finite=False, input_name=name)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        if "Reshape your data" in text:  # sklearn's advice sits on a later line, after the whole array
            line += " Reshape your data: array.reshape(-1, 1) for a single feature, array.reshape(1, -1) for a single sample."
        raise (_InputTypeError if isinstance(exc, TypeError) else InputError)(line) from None
    if X.dtype != np.float64:
        X = X.astype(np.float32, copy=False)
    bad = int(np.size(X) - np.count_nonzero(np.isfinite(X)))
    if bad:
        raise InputError(f"{name} has {bad} NaN or infinite values")
    if n_features is not None and X.shape[1] != n_features:
        raise InputError(f"{name} has {X.shape[1]} features, but {owner} is expecting {n_features} features as input")
    return np.ascontiguousarray(X)


def search_space_values(spec: dict[str, Any]) -> list[Any]:
    """The values of one `Hasher.search_space` entry that bound it: its two ends, or its choices."""
    return list(spec["choices"]) if "choices" in spec else [spec["low"], spec["high"]]


def check_search_space(space: Any, constraints: dict[str, Any], owner: str) -> None:
    """Raise `TypeError` unless ``space`` is a valid `Hasher.search_space` for parameters declared in
    ``constraints`` (called when a method class is created, so a typo fails at import)."""
    if not isinstance(space, dict):
        raise TypeError(f"{owner}.search_space must be a dict of name -> range, got {type(space).__name__}")
    for name, spec in space.items():
        where = f"{owner}.search_space[{name!r}]"
        if name not in constraints or name in ("n_bits", "seed"):
            raise TypeError(f"{where}: not a tunable hyper-parameter declared in _parameter_constraints")
        if not isinstance(spec, dict) or not (set(spec) <= {"low", "high", "log"} and {"low", "high"} <= set(spec)
                                               or set(spec) == {"choices"}):
            raise TypeError(f"{where} must be {{'low': a, 'high': b[, 'log': bool]}} or {{'choices': [...]}}, got {spec!r}")
        if "choices" in spec:
            if not isinstance(spec["choices"], (list, tuple)) or len(spec["choices"]) < 2:
                raise TypeError(f"{where}: 'choices' must list at least two values")
        else:
            low, high = spec["low"], spec["high"]
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
            if not numbers or not low < high or (spec.get("log") and low <= 0):
                raise TypeError(f"{where}: needs numbers low < high (> 0 on a log scale), got {spec!r}")
        if constraints[name] != "no_validation":
            for value in search_space_values(spec):
                if not any(make_constraint(c).is_satisfied_by(value) for c in constraints[name]):
                    raise TypeError(f"{where}: {value!r} breaks the parameter's constraints {constraints[name]}")


class Hasher(TransformerMixin, BaseEstimator):
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
    * ``search_space``: the hyper-parameters worth tuning and their ranges, as plain data (a tuner such
      as ``bench tune`` reads it; nothing here imports one): name -> ``{"low": a, "high": b}`` (ints when
      both ends are ints, else floats; ``"log": True`` samples on a log scale) or ``{"choices": [...]}``.
      Every end and choice must pass the parameter's constraints (checked when the class is created).
      Empty: nothing to tune (the method has no hyper-parameter that changes its codes).
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
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}
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
        check_search_space(cls.search_space, merged, cls.__name__)

    def __init__(self, n_bits: int, *, seed: int = 0) -> None:
        self.n_bits = n_bits
        self.seed = seed

    # ----------------------------------------------------------------- parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        """The hyper-parameter names: those of ``__init__`` (scikit-learn's rule)."""
        return list(cls._get_param_names())

    # get_params(deep=True) is BaseEstimator's: the hyper-parameters as given to __init__ (run identities
    # and MLflow's hp.* read them); no hasher nests an estimator, so deep and shallow agree.

    def set_params(self, **params: Any) -> "Hasher":
        """Set hyper-parameters by name (scikit-learn's `BaseEstimator.set_params`, nested ``a__b`` keys
        included); returns ``self``.

        Raises:
            InputError: a name that is not a hyper-parameter (one line listing the valid ones).
        """
        valid = self.get_params(deep=True)
        for key in params:
            if key.partition("__")[0] not in valid:
                raise InputError(f"{type(self).__name__} has no parameter {key!r}; valid: {sorted(valid)}")
        return super().set_params(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        # codes are packed uint8 whatever the input's dtype
        tags.transformer_tags.preserves_dtype = []
        tags.target_tags.required = False
        return tags

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

    def _check_preset(self, preset: dict[str, Any], what: str) -> None:
        """For a preset that fills the hyper-parameters left as None (e.g. a ``schedule``): raise `InputError`
        when a value it fills in would not pass the constraints a value given explicitly must pass. ``what``
        names the preset in the message, e.g. ``"the 'cpu' schedule"``."""
        for key, value in preset.items():
            allowed = [c for c in type(self)._parameter_constraints[key] if c is not None]
            if getattr(self, key) is None and not any(make_constraint(c).is_satisfied_by(value) for c in allowed):
                raise InputError(f"{self._label()}: {what} sets {key}={value!r}, which must be "
                                 f"{describe_constraints(allowed)}")

    def _label(self) -> str:
        return self.name or type(self).__name__

    # ----------------------------------------------------------------- fitted state
    def _fitted_attributes(self) -> dict[str, Any]:
        return {
            k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")
        }

    def is_fitted(self) -> bool:
        return bool(self._fitted_attributes())

    def __sklearn_is_fitted__(self) -> bool:  # what sklearn.utils.validation.check_is_fitted asks
        return self.is_fitted()

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(X) before encode or n_parameters"
            )

    # ----------------------------------------------------------------- validation
    def _check_side(self, n: int, side: dict[str, Any], *, fitting: bool = False) -> dict[str, np.ndarray]:
        unknown = sorted(set(side) - set(self.side_inputs))
        if unknown:
            reads = f"it reads {', '.join(self.side_inputs)}" if self.side_inputs else "it reads none"
            raise InputError(f"{self.name} has no side input {', '.join(map(repr, unknown))} ({reads})")
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
    def fit(self, X: Any, y: Any = None, **side: Any) -> "Hasher":
        """Learn the hash function from training features ``X`` and side inputs; return ``self``.
        ``y`` is ignored (unsupervised, as scikit-learn's unsupervised estimators).

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
        X = check_features(X, n_features=self.n_features_in_, owner=type(self).__name__)
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

    def transform(self, X: Any, **side: Any) -> np.ndarray:
        """scikit-learn's name for `encode`: packed ``uint8`` codes ``(n, ceil(n_bits / 8))``."""
        return self.encode(X, **side)

    def fit_transform(self, X: Any, y: Any = None, **side: Any) -> np.ndarray:
        """``fit(X, y, **side)`` then ``encode(X, **side)``: the side inputs reach both (scikit-learn's
        mixin would give them to ``fit`` only)."""
        return self.fit(X, y, **side).encode(X, **side)

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

    def _load_module(self, name: str, state_dict: dict[str, Any]) -> Any:
        """Rebuild the fitted torch module of attribute ``name`` from the hyper-parameters and the other
        fitted attributes (already set) and load ``state_dict`` into it (CPU tensors); for
        `methods.persist.load_hasher`. Methods that keep a torch module in a fitted attribute
        implement it; the default raises ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} keeps a torch module in {name!r} but cannot rebuild it")

    # ----------------------------------------------------------------- to implement
    def _fit(self, X: np.ndarray, **side: np.ndarray) -> None:
        raise NotImplementedError

    def _project(self, X: np.ndarray, **side: np.ndarray) -> np.ndarray:
        raise NotImplementedError
