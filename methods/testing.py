"""Conformance checks that every `Hasher` must pass (in the spirit of scikit-learn's estimator checks).

Use from a test::

    from hashbench.methods.testing import check_hasher
    check_hasher(ITQ)                      # runs every check, raises AssertionError on the first failure
    check_hasher(MyDeep, epochs=1)         # small hyper-parameters for a slow method

or one pytest case per check::

    @pytest.mark.parametrize("check", CHECKS)
    def test_my_method(check):
        run_check(MyDeep, check, epochs=1)

The checks run on small synthetic data: `make_features` draws clustered Gaussian features (300 × 32 by
default) and `make_side_inputs` draws every side input the class declares in ``cls.side_inputs``
from the generators in `SIDE_INPUT_GENERATORS` (``tags``: (n, 20) 0/1 multi-hot, ``views``:
(n, 4, d) noisy copies of the features, ``aug_views``: (n, 8, d) noisier copies). A method with a new side input adds its generator there.

Slow methods may declare small hyper-parameters for these checks in a class attribute
``conformance_params`` (a dict passed to ``__init__``); keyword arguments given to `check_hasher` /
`run_check` override it. The code length is ``n_bits=20`` by default: odd in bytes, so the padding
bits of the last byte are exercised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from hashbench.methods.base import FAMILIES, Hasher, InputError, NotFittedError, pack_bits
from hashbench.methods.constraints import make_constraint

# ----------------------------------------------------------------------------- synthetic data


def make_features(
    n_samples: int = 300, n_features: int = 32, n_clusters: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Clustered Gaussian features: returns ``(X, clusters)``, ``X`` float32 (n, d), ``clusters`` (n,) int.

    Cluster centres are N(0, 4 I), points are centre + N(0, I), plus a constant offset of 3 so that
    a method that forgets to centre the data is visibly worse off.
    """
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((n_clusters, n_features))
    clusters = rng.integers(0, n_clusters, size=n_samples)
    X = 3.0 + centres[clusters] + rng.standard_normal((n_samples, n_features))
    return X.astype(np.float32), clusters


def make_tags(X: np.ndarray, clusters: np.ndarray, rng: np.random.Generator, n_tags: int = 20) -> np.ndarray:
    """Multi-hot tags, float32 (n, n_tags) of 0/1: each cluster owns 3 tags (present with probability
    0.9), any other tag appears with probability 0.05."""
    n_clusters = int(clusters.max()) + 1
    owned = np.zeros((n_clusters, n_tags), dtype=bool)
    for c in range(n_clusters):
        owned[c, rng.choice(n_tags, size=3, replace=False)] = True
    p = np.where(owned[clusters], 0.9, 0.05)
    return (rng.random(p.shape) < p).astype(np.float32)


def make_views(X: np.ndarray, clusters: np.ndarray, rng: np.random.Generator, n_views: int = 4) -> np.ndarray:
    """Augmented views, float32 (n, n_views, d): each view is ``X`` plus N(0, 0.1²) noise."""
    noise = 0.1 * rng.standard_normal((X.shape[0], n_views, X.shape[1]))
    return (X[:, None, :] + noise).astype(np.float32)


def make_aug_views(X: np.ndarray, clusters: np.ndarray, rng: np.random.Generator, n_views: int = 8) -> np.ndarray:
    """A pool of randomly augmented views, float32 (n, n_views, d): each view is ``X`` scaled by a factor
    ``U(0.8, 1.2)`` (per view) plus N(0, 0.5²) noise, a stand-in for crops and colour changes that keep
    an item in its cluster."""
    scale = rng.uniform(0.8, 1.2, size=(X.shape[0], n_views, 1))
    noise = 0.5 * rng.standard_normal((X.shape[0], n_views, X.shape[1]))
    return (X[:, None, :] * scale + noise).astype(np.float32)


# side-input name -> generator(X, clusters, rng) -> array with X.shape[0] rows.
SIDE_INPUT_GENERATORS: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]] = {
    "tags": make_tags,
    "views": make_views,
    "aug_views": make_aug_views,
}


def make_side_inputs(names: tuple[str, ...], X: np.ndarray, clusters: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic side inputs for the given names, from `SIDE_INPUT_GENERATORS`."""
    unknown = [s for s in names if s not in SIDE_INPUT_GENERATORS]
    if unknown:
        raise KeyError(
            f"no synthetic generator for side input(s) {unknown}; add one to methods.testing.SIDE_INPUT_GENERATORS"
        )
    side = {}
    for i, name in enumerate(names):
        side[name] = SIDE_INPUT_GENERATORS[name](X, clusters, np.random.default_rng([seed, i]))
    return side


# ----------------------------------------------------------------------------- check context


@dataclass
class Case:
    """One method configuration under test, with its synthetic data and a lazily fitted instance."""

    cls: type[Hasher]
    n_bits: int
    init_kwargs: dict[str, Any]
    X: np.ndarray
    side: dict[str, np.ndarray]
    _fitted: Hasher | None = field(default=None, repr=False)
    _codes: np.ndarray | None = field(default=None, repr=False)
    _fit_returned: Any = field(default=None, repr=False)
    _modified_inputs: list[str] = field(default_factory=list, repr=False)

    def new(self, **overrides: Any) -> Hasher:
        kwargs = {**self.init_kwargs, **overrides}
        n_bits = kwargs.pop("n_bits", self.n_bits)
        return self.cls(n_bits, **kwargs)

    def rows(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[idx] for k, v in self.side.items()}

    def fitted(self) -> tuple[Hasher, np.ndarray]:
        """A fitted instance and its codes on ``X``, computed once per case; treat as read-only.

        The one fit also records what ``fit`` returned and which inputs ``fit``/``encode`` modified
        (fits are what make the checks of slow methods slow).
        """
        if self._fitted is None:
            X = self.X.copy()
            side = {k: v.copy() for k, v in self.side.items()}
            est = self.new()
            self._fit_returned = est.fit(X, **side)
            self._codes = est.encode(X, **side)
            self._modified_inputs = [k for k, v in side.items() if not np.array_equal(v, self.side[k])]
            if not np.array_equal(X, self.X):
                self._modified_inputs.insert(0, "X")
            self._fitted = est
        return self._fitted, self._codes


_CASES: dict[tuple, Case] = {}
_MAX_CACHED_CASES = 8


def make_case(cls: type[Hasher], *, n_bits: int = 20, n_samples: int = 300, n_features: int = 32, **init_kwargs: Any) -> Case:
    """The (cached) `Case` for ``cls`` with the given settings; ``cls.conformance_params`` fill in defaults."""
    kwargs = {**cls.conformance_params, **init_kwargs}
    key = (cls, n_bits, n_samples, n_features, repr(sorted(kwargs.items())))
    if key not in _CASES:
        X, clusters = make_features(n_samples, n_features)
        side = make_side_inputs(tuple(cls.side_inputs), X, clusters)
        if len(_CASES) >= _MAX_CACHED_CASES:
            _CASES.pop(next(iter(_CASES)))
        _CASES[key] = Case(cls, n_bits, kwargs, X, side)
    return _CASES[key]


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return bool(a == b)


def _expect_error(error: type[Exception], what: str, fn: Callable[[], Any]) -> Exception:
    try:
        fn()
    except error as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - the wrong exception type is exactly what we report
        raise AssertionError(f"{what}: expected {error.__name__}, got {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"{what}: expected {error.__name__}, nothing was raised")


# ----------------------------------------------------------------------------- the checks


def check_metadata(case: Case) -> None:
    """Class metadata is well formed and the registry knows the class under its name."""
    from hashbench.methods.registry import get_method

    cls = case.cls
    assert isinstance(cls.name, str) and cls.name, "name must be a non-empty string"
    assert cls.family in FAMILIES, f"family must be one of {FAMILIES}, got {cls.family!r}"
    assert isinstance(cls.reference, str) and cls.reference.strip(), "reference (the paper) must be given"
    assert isinstance(cls.side_inputs, tuple) and all(isinstance(s, str) for s in cls.side_inputs), (
        "side_inputs must be a tuple of names"
    )
    assert isinstance(cls.batch_dependent, bool), "batch_dependent must be a bool"
    assert get_method(cls.name) is cls, f"get_method({cls.name!r}) does not return {cls.__name__}"


def check_init_stores_only(case: Case) -> None:
    """``__init__`` stores its arguments under their own names and learns nothing."""
    est = case.new()
    assert not est.is_fitted(), f"fitted attributes exist right after __init__: {sorted(est._fitted_attributes())}"
    params = est.get_params()
    assert params["n_bits"] == case.n_bits and "seed" in params, f"get_params() lacks n_bits/seed: {params}"
    for key, value in case.init_kwargs.items():
        assert key in params, f"__init__ argument {key!r} is missing from get_params()"
        assert _equal(params[key], value), f"__init__ changed {key!r}: given {value!r}, stored {params[key]!r}"
    repr(est)


def check_get_params_roundtrip(case: Case) -> None:
    """``cls(**est.get_params())`` has the same parameters."""
    params = case.new().get_params()
    again = case.cls(**params).get_params()
    assert params.keys() == again.keys(), f"parameter names differ: {sorted(params)} vs {sorted(again)}"
    for key in params:
        assert _equal(params[key], again[key]), f"parameter {key!r} does not round-trip: {params[key]!r} -> {again[key]!r}"


def check_parameter_constraints(case: Case) -> None:
    """Every parameter of ``get_params()`` has a constraint in ``_parameter_constraints`` and every
    constraint names a parameter; ``validate_params()`` accepts the class's defaults and the
    conformance settings."""
    cls = case.cls
    declared = cls._parameter_constraints
    assert isinstance(declared, dict), f"_parameter_constraints must be a dict, got {type(declared).__name__}"
    params = case.new().get_params()
    undeclared = [name for name in params if name not in declared]
    assert not undeclared, f"parameter(s) {undeclared} have no constraint in _parameter_constraints"
    stale = sorted(set(declared) - set(params))
    assert not stale, f"_parameter_constraints declares {stale}, which are not parameters of __init__"
    for what, est in (("the class's defaults", cls(case.n_bits)), ("the conformance settings", case.new())):
        try:
            est.validate_params()
        except Exception as exc:  # noqa: BLE001 - any failure to accept valid settings is the finding
            raise AssertionError(f"validate_params() refuses {what}: {type(exc).__name__}: {exc}") from exc


def check_search_space(case: Case) -> None:
    """Every end and choice of ``search_space`` is accepted by ``validate_params()`` when set alone on the
    class's defaults (so a tuner can never draw a setting the method refuses at a range's end)."""
    from hashbench.methods.base import search_space_values

    cls = case.cls
    for name, spec in cls.search_space.items():
        for value in search_space_values(spec):
            est = cls(case.n_bits).set_params(**{name: value})
            try:
                est.validate_params()
            except Exception as exc:  # noqa: BLE001 - a refused value of the space is the finding
                raise AssertionError(f"search_space[{name!r}] = {value!r} is refused: {type(exc).__name__}: {exc}") \
                    from exc


def check_not_fitted(case: Case) -> None:
    """``encode``, ``project``, ``n_parameters`` and ``resolved_params`` before ``fit`` raise
    `NotFittedError` (the first one's message says to fit)."""
    est = case.new()
    exc = _expect_error(NotFittedError, "encode before fit", lambda: est.encode(case.X, **case.side))
    assert "fit" in str(exc), f"the NotFittedError message should tell to call fit: {exc}"
    _expect_error(NotFittedError, "project before fit", lambda: est.project(case.X, **case.side))
    _expect_error(NotFittedError, "n_parameters before fit", est.n_parameters)
    _expect_error(NotFittedError, "resolved_params before fit", est.resolved_params)


def check_fit_returns_self(case: Case) -> None:
    """``fit`` returns the instance itself and leaves it fitted."""
    est, _ = case.fitted()
    out = case._fit_returned
    assert out is est, f"fit returned {type(out).__name__}, not self"
    assert est.is_fitted() and est.n_features_in_ == case.X.shape[1]


def check_code_layout(case: Case) -> None:
    """Codes are uint8 (n, ceil(n_bits/8)), padding bits zero, equal to pack_bits(project(X) >= 0)."""
    est, codes = case.fitted()
    n = case.X.shape[0]
    assert codes.dtype == np.uint8, f"codes dtype is {codes.dtype}, expected uint8"
    assert codes.shape == (n, math.ceil(case.n_bits / 8)), f"codes shape {codes.shape}"
    pad = 8 * codes.shape[1] - case.n_bits
    if pad:
        assert not np.any(codes[:, -1] >> (8 - pad)), "padding bits of the last byte are not zero"
    z = est.project(case.X, **case.side)
    assert z.shape == (n, case.n_bits), f"project returned shape {z.shape}"
    assert np.all(np.isfinite(z)), "project returned non-finite values"
    assert np.array_equal(pack_bits(z), codes), "encode differs from packing project(X) >= 0"


def check_codes_vary(case: Case) -> None:
    """The training codes are not all the same."""
    _, codes = case.fitted()
    assert len(np.unique(codes, axis=0)) > 1, "every training point got the same code"


def check_inputs_unchanged(case: Case) -> None:
    """``fit`` and ``encode`` do not modify the arrays they are given."""
    case.fitted()
    assert not case._modified_inputs, f"fit/encode modified their input(s) {case._modified_inputs}"


def check_same_seed_same_codes(case: Case) -> None:
    """Two fresh instances with the same seed give identical codes."""
    _, codes = case.fitted()
    again = case.new().fit(case.X, **case.side).encode(case.X, **case.side)
    assert np.array_equal(codes, again), "two fits with the same seed gave different codes"


def check_refit(case: Case) -> None:
    """Fitting again on other data then on ``X`` gives the codes of a fresh fit on ``X`` (no leftover state)."""
    _, codes = case.fitted()
    # Half as many rows: cheaper, and a shape a leftover buffer would not fit.
    half = np.arange(max(case.X.shape[0] // 2, 2))
    other, _ = make_features(len(half), case.X.shape[1], seed=1)
    est = case.new()
    est.fit(other, **case.rows(half))
    again = est.fit(case.X, **case.side).encode(case.X, **case.side)
    assert np.array_equal(codes, again), "refitting the same instance gives other codes than a fresh fit"


def check_row_independence(case: Case) -> None:
    """A row's code does not depend on the rows encoded with it (skipped for ``batch_dependent`` classes)."""
    if case.cls.batch_dependent:
        return
    est, codes = case.fitted()
    n = case.X.shape[0]
    perm = np.random.default_rng(0).permutation(n)
    shuffled = est.encode(case.X[perm], **case.rows(perm))
    assert np.array_equal(shuffled, codes[perm]), "codes change when the rows are encoded in another order"
    pieces = [np.arange(s, min(s + 7, n)) for s in range(0, n, 7)]
    small = np.concatenate([est.encode(case.X[idx], **case.rows(idx)) for idx in pieces])
    assert np.array_equal(small, codes), "codes change when the rows are encoded 7 at a time"
    single = est.encode(case.X[:1], **case.rows(np.arange(1)))
    assert np.array_equal(single, codes[:1]), "a row encoded alone gets another code"


def check_nan_input(case: Case) -> None:
    """NaN in ``X`` raises `InputError`, at fit and at encode."""
    X = case.X.copy()
    X[X.shape[0] // 2, X.shape[1] // 2] = np.nan
    _expect_error(InputError, "fit with a NaN in X", lambda: case.new().fit(X, **case.side))
    est, _ = case.fitted()
    _expect_error(InputError, "encode with a NaN in X", lambda: est.encode(X, **case.side))


def check_wrong_n_features(case: Case) -> None:
    """Encoding ``X`` with another feature count than at fit raises `InputError`."""
    est, _ = case.fitted()
    fewer = case.X[:, :-1]
    more = np.hstack([case.X, case.X[:, :1]])
    _expect_error(InputError, "encode with one feature fewer", lambda: est.encode(fewer, **case.side))
    _expect_error(InputError, "encode with one feature more", lambda: est.encode(more, **case.side))


def check_missing_side_inputs(case: Case) -> None:
    """Leaving out a declared side input raises `InputError` at fit, and at encode unless it is one of
    ``fit_only_side_inputs``; those, when left out at encode, do not change the codes."""
    if not case.cls.side_inputs:
        return
    _expect_error(InputError, "fit without side inputs", lambda: case.new().fit(case.X))
    est, codes = case.fitted()
    fit_only = tuple(case.cls.fit_only_side_inputs)
    needed = {k: v for k, v in case.side.items() if k not in fit_only}
    if needed:
        _expect_error(InputError, "encode without side inputs", lambda: est.encode(case.X))
    if fit_only:
        assert np.array_equal(est.encode(case.X, **needed), codes), (
            f"leaving out the fit-only side input(s) {fit_only} at encode changes the codes"
        )


def check_invalid_n_bits(case: Case) -> None:
    """``n_bits=0`` is refused with `InputError` at fit."""
    _expect_error(InputError, "fit with n_bits=0", lambda: case.new(n_bits=0).fit(case.X, **case.side))


class _Invalid:
    """A value of no type that an ordinary constraint allows."""

    def __repr__(self) -> str:
        return "<invalid>"


def _accepts(constraints: Any, value: Any) -> bool:
    if constraints == "no_validation":
        return True
    return any(make_constraint(c).is_satisfied_by(value) for c in constraints or ())


def check_fit_validates_params(case: Case) -> None:
    """``fit`` refuses an invalid value of each declared parameter with a one-line `InputError` that
    names the parameter, before any work (``_fit`` is never reached). Each parameter in turn is set to
    an object of no expected type; a parameter whose constraints accept any object is skipped."""
    bad = _Invalid()
    constraints = case.cls._parameter_constraints
    for name in case.new().get_params():
        if _accepts(constraints.get(name), bad):
            continue
        est = case.new().set_params(**{name: bad})
        ran = []
        # An instance attribute shadows the method: records whether fit got as far as the work.
        est._fit = lambda *args, **kwargs: ran.append(True)
        error = None
        try:
            est.fit(case.X, **case.side)
        except InputError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - the wrong exception type is exactly what we report
            raise AssertionError(
                f"fit with {name}={bad!r}: expected InputError, got {type(exc).__name__}: {exc}"
            ) from exc
        assert not ran, f"fit with {name}={bad!r} went on to _fit; it must call validate_params() before any work"
        assert error is not None, f"fit with {name}={bad!r}: expected InputError, nothing was raised"
        message = str(error)
        assert name in message and "\n" not in message, (
            f"the InputError for an invalid {name} must name it on one line, got {message!r}"
        )


def check_n_parameters(case: Case) -> None:
    """``n_parameters()`` of a fitted instance is a positive Python int."""
    est, _ = case.fitted()
    count = est.n_parameters()
    assert isinstance(count, int) and not isinstance(count, bool), f"n_parameters() returned {type(count).__name__}"
    assert count > 0, f"n_parameters() returned {count}"


def check_run_info(case: Case) -> None:
    """After ``fit``, ``run_info()`` and ``resolved_params()`` are dicts keyed by names, and
    ``run_info()`` repeats no hyper-parameter and no resolved value under its name."""
    est, _ = case.fitted()
    info, resolved = est.run_info(), est.resolved_params()
    for what, value in (("run_info()", info), ("resolved_params()", resolved)):
        assert isinstance(value, dict), f"{what} returned {type(value).__name__}, not a dict"
        assert all(isinstance(k, str) for k in value), f"{what} has keys that are not strings: {sorted(map(repr, value))}"
    repeated = sorted(set(info) & (set(est.get_params()) | set(resolved)))
    assert not repeated, (
        f"run_info() repeats {repeated}: hyper-parameters belong to get_params(), values derived from them "
        "to resolved_params()"
    )


def check_save_load(case: Case) -> None:
    """`methods.persist.save_hasher` then `load_hasher` gives a hasher of the same class and parameters
    that encodes ``X`` to the same codes (every fitted attribute must be plain data, a numpy array or a
    torch module the method can rebuild)."""
    import tempfile

    from hashbench.methods.persist import load_hasher, save_hasher

    est, codes = case.fitted()
    with tempfile.TemporaryDirectory() as folder:
        try:
            save_hasher(est, folder)
            loaded = load_hasher(folder, type(est))
        except Exception as exc:  # noqa: BLE001 - any failure to save or load is the finding
            raise AssertionError(f"cannot save and load the fitted hasher: {type(exc).__name__}: {exc}") from exc
    assert type(loaded) is type(est), f"loaded a {type(loaded).__name__}, saved a {type(est).__name__}"
    params, again = est.get_params(), loaded.get_params()
    assert params.keys() == again.keys() and all(_equal(params[k], again[k]) for k in params), (
        f"parameters change through save and load: {params} -> {again}"
    )
    assert np.array_equal(loaded.encode(case.X, **case.side), codes), "the loaded hasher encodes to other codes"


CHECKS: dict[str, Callable[[Case], None]] = {
    fn.__name__.removeprefix("check_"): fn
    for fn in (
        check_metadata,
        check_init_stores_only,
        check_get_params_roundtrip,
        check_parameter_constraints,
        check_search_space,
        check_not_fitted,
        check_fit_returns_self,
        check_code_layout,
        check_codes_vary,
        check_inputs_unchanged,
        check_same_seed_same_codes,
        check_refit,
        check_row_independence,
        check_nan_input,
        check_wrong_n_features,
        check_missing_side_inputs,
        check_invalid_n_bits,
        check_fit_validates_params,
        check_n_parameters,
        check_run_info,
        check_save_load,
    )
}


def run_check(cls: type[Hasher], check: str, **settings: Any) -> None:
    """Run the check named ``check`` (a key of `CHECKS`) on ``cls``; ``settings`` as in `check_hasher`."""
    case = make_case(cls, **settings)
    try:
        CHECKS[check](case)
    except AssertionError as exc:
        raise AssertionError(f"{cls.__name__} fails conformance check {check!r}: {exc}") from exc


def check_hasher(cls: type[Hasher], *, n_bits: int = 20, n_samples: int = 300, n_features: int = 32, **init_kwargs: Any) -> None:
    """Run every conformance check on ``cls``; raise `AssertionError` naming the first that fails.

    ``init_kwargs`` go to ``cls(n_bits, **init_kwargs)`` (over ``cls.conformance_params``);
    ``n_samples`` × ``n_features`` is the size of the synthetic training data.
    """
    for name in CHECKS:
        run_check(cls, name, n_bits=n_bits, n_samples=n_samples, n_features=n_features, **init_kwargs)


# ----------------------------------------------------------------------------- scikit-learn's checks
# scikit-learn's own estimator checks (`sklearn.utils.estimator_checks.parametrize_with_checks`) run on
# every registered method through `sklearn_check_estimator`; tests/test_sklearn_estimators.py holds
# the list of checks that cannot apply, each with its reason.

from sklearn.base import BaseEstimator, TransformerMixin, clone  # noqa: E402

SKLEARN_CHECK_BITS = 2  # the checks' data can have 2 features: PCA-based methods need n_bits <= d


def row_side_inputs(names: tuple[str, ...], X: np.ndarray, *, n_tags: int = 20, n_views: int = 4,
                    n_aug_views: int = 8) -> dict[str, np.ndarray]:
    """Synthetic side inputs computed from each row of ``X`` alone (so codes stay row-independent and a
    row gets the same side inputs whatever batch it is in):

    * ``tags``: float32 (n, n_tags) 0/1, tag ``j`` set where ``x · w_j > 0`` for fixed Gaussian ``w_j``
      (drawn from seed 0 and the feature count);
    * ``views``: float32 (n, n_views, d), view ``k`` = ``x · (1 + 0.01 (k + 1))``;
    * ``aug_views``: float32 (n, n_aug_views, d), view ``k`` = ``x · (1 + 0.05 (k + 1)) + 0.01 (k + 1)``.

    Raises `KeyError` for a side input without a generator here.
    """
    X = np.asarray(X, dtype=np.float64)
    out = {}
    for name in names:
        if name == "tags":
            w = np.random.default_rng([0, X.shape[1]]).standard_normal((X.shape[1], n_tags))
            out[name] = (X @ w > 0).astype(np.float32)
        elif name == "views":
            scale = 1.0 + 0.01 * np.arange(1, n_views + 1)
            out[name] = (X[:, None, :] * scale[None, :, None]).astype(np.float32)
        elif name == "aug_views":
            k = np.arange(1, n_aug_views + 1)[None, :, None]
            out[name] = (X[:, None, :] * (1.0 + 0.05 * k) + 0.01 * k).astype(np.float32)
        else:
            raise KeyError(f"no row-wise generator for side input {name!r}; add one to methods.testing.row_side_inputs")
    return out


class SyntheticSideInputs(TransformerMixin, BaseEstimator):
    """A hasher that needs side inputs, made into a plain ``fit(X, y)`` / ``transform(X)`` estimator for
    scikit-learn's checks: every call passes `row_side_inputs` of the right shape for ``X``.

    Args:
        hasher: an unfitted `Hasher` whose class declares ``side_inputs``.

    Fitted attributes: ``hasher_`` (a clone of ``hasher``, fitted) and ``n_features_in_``.
    """

    def __init__(self, hasher: Hasher) -> None:
        self.hasher = hasher

    def fit(self, X: Any, y: Any = None) -> "SyntheticSideInputs":
        from hashbench.methods.base import check_features

        X = check_features(X)
        self.hasher_ = clone(self.hasher).fit(X, **row_side_inputs(tuple(self.hasher.side_inputs), X))
        self.n_features_in_ = self.hasher_.n_features_in_
        return self

    def transform(self, X: Any) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        from hashbench.methods.base import check_features

        check_is_fitted(self)
        X = check_features(X, n_features=self.n_features_in_, owner=type(self).__name__)
        return self.hasher_.encode(X, **row_side_inputs(tuple(self.hasher.side_inputs), X))

    def __sklearn_tags__(self):
        tags = self.hasher.__sklearn_tags__()
        return tags


def sklearn_check_estimator(cls: type[Hasher], n_bits: int = SKLEARN_CHECK_BITS) -> BaseEstimator:
    """The estimator scikit-learn's checks run for ``cls``: ``cls(n_bits, **cls.conformance_params)``,
    wrapped in `SyntheticSideInputs` when the class declares side inputs."""
    est = cls(n_bits, **cls.conformance_params)
    return SyntheticSideInputs(est) if cls.side_inputs else est
