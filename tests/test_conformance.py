"""Every built-in method passes the conformance checks of `methods.testing`.

A method whose module file does not exist yet is skipped (it is planned, not broken); any other
import error fails the test.
"""
import importlib.util

import pytest

from hashbench.methods.registry import BUILTIN, get_method
from hashbench.methods.testing import CHECKS, run_check


def _method_class(name: str):
    module = BUILTIN[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"module {module} of method {name!r} does not exist yet")
    return get_method(name)


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_conformance(name, check):
    run_check(_method_class(name), check)


# ----------------------------------------------------------------------------- the checks can fail
# Deliberately broken variants of LSH (not registered), each violating one rule of the contract.

import numpy as np  # noqa: E402

from hashbench.methods.base import check_features  # noqa: E402
from hashbench.methods.constraints import Integral, Interval, Real  # noqa: E402
from hashbench.methods.lsh import LSH  # noqa: E402

SCALE = {"scale": [Interval(Real, 0, None, closed="neither")]}


class BatchCentred(LSH):
    def _project(self, X):
        return (X - X.mean(axis=0)) @ self.projection_


class Unseeded(LSH):
    def _fit(self, X):
        super()._fit(X)
        self.projection_ = np.random.default_rng().standard_normal(self.projection_.shape)


class MutatesInput(LSH):
    def _fit(self, X):
        super()._fit(X)
        X -= 1.0


class DirtyPadding(LSH):
    def encode(self, X, **side):
        codes = super().encode(X, **side)
        codes[:, -1] |= 0x80
        return codes


class NumpyCount(LSH):
    def n_parameters(self):
        return np.int64(super().n_parameters())


class KeepsFirstMean(LSH):
    def _fit(self, X):
        mean = getattr(self, "mean_", None)
        super()._fit(X)
        if mean is not None:
            self.mean_ = mean


class AltersParams(LSH):
    _parameter_constraints = SCALE

    def __init__(self, n_bits, *, seed=0, scale=1.0):
        super().__init__(n_bits, seed=seed)
        self.scale = float(scale) * 2


class FittedTooEarly(LSH):
    def __init__(self, n_bits, *, seed=0):
        super().__init__(n_bits, seed=seed)
        self.cache_ = None


class IgnoresNaN(LSH):
    def fit(self, X, **side):
        self._fit(np.nan_to_num(np.asarray(X, dtype=np.float64)))
        self.n_features_in_ = np.shape(X)[1]
        return self


class UndeclaredParam(LSH):
    def __init__(self, n_bits, *, seed=0, scale=1.0):
        super().__init__(n_bits, seed=seed)
        self.scale = scale


class StaleConstraint(LSH):
    _parameter_constraints = SCALE


class RefusesOwnDefault(LSH):
    _parameter_constraints = {"scale": [Interval(Real, 0, 1, closed="both")]}

    def __init__(self, n_bits, *, seed=0, scale=2.0):
        super().__init__(n_bits, seed=seed)
        self.scale = scale


class FitSkipsValidation(LSH):
    def fit(self, X, **side):
        X = check_features(X)
        self._fit(X)
        self.n_features_in_ = X.shape[1]
        return self


class ValidatesAfterWork(LSH):
    def fit(self, X, **side):
        X = check_features(X)
        self._fit(X)
        self.validate_params()
        self.n_features_in_ = X.shape[1]
        return self


class AcceptsZeroBits(LSH):
    _parameter_constraints = {"n_bits": [Interval(Integral, 0, 1024, closed="both")]}


class RepeatsParams(LSH):
    def run_info(self):
        return {"n_bits": self.n_bits}


class KeepsAFunction(LSH):
    def _fit(self, X):
        super()._fit(X)
        self.scale_fn_ = np.sqrt


class ForgetsOnLoad(LSH):
    """Keeps state outside the fitted attributes, which saving cannot see."""

    def _fit(self, X):
        super()._fit(X)
        self._offset = 1.0

    def _project(self, X):
        return super()._project(X) + getattr(self, "_offset", -50.0)


@pytest.mark.parametrize(
    "cls, check, kwargs",
    [
        (BatchCentred, "row_independence", {}),
        (Unseeded, "same_seed_same_codes", {}),
        (MutatesInput, "inputs_unchanged", {}),
        (DirtyPadding, "code_layout", {}),
        (NumpyCount, "n_parameters", {}),
        (KeepsFirstMean, "refit", {}),
        (AltersParams, "init_stores_only", {"scale": 3}),
        (FittedTooEarly, "not_fitted", {}),
        (IgnoresNaN, "nan_input", {}),
        (LSH, "metadata", {"_unregistered": True}),
        (UndeclaredParam, "parameter_constraints", {}),
        (StaleConstraint, "parameter_constraints", {}),
        (RefusesOwnDefault, "parameter_constraints", {}),
        (FitSkipsValidation, "fit_validates_params", {}),
        (ValidatesAfterWork, "fit_validates_params", {}),
        (AcceptsZeroBits, "invalid_n_bits", {}),
        (RepeatsParams, "run_info", {}),
        (KeepsAFunction, "save_load", {}),
        (ForgetsOnLoad, "save_load", {}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_broken_hasher_fails_its_check(cls, check, kwargs):
    if kwargs.pop("_unregistered", False):
        cls = type("Unregistered", (LSH,), {"name": "lsh"})
    with pytest.raises(AssertionError, match=check):
        run_check(cls, check, **kwargs)


def test_mutants_break_only_their_own_rule():
    """Each new mutant passes the checks it is not meant to fail (so its check is what catches it)."""
    for cls, check in [(StaleConstraint, "fit_validates_params"), (FitSkipsValidation, "parameter_constraints"),
                       (AcceptsZeroBits, "fit_validates_params"), (RepeatsParams, "parameter_constraints")]:
        run_check(cls, check)


def test_an_undeclared_parameter_is_a_programming_error_not_an_input_error():
    with pytest.raises(RuntimeError, match="scale"):
        UndeclaredParam(8).validate_params()


def test_lsh_passes_with_other_sizes():
    from hashbench.methods.testing import check_hasher

    check_hasher(LSH, n_bits=5, n_samples=40, n_features=3)


# ----------------------------------------------------------------------------- search spaces


def test_a_search_space_typo_fails_when_the_class_is_created():
    from hashbench.methods.constraints import Integral, Interval

    with pytest.raises(TypeError, match="not a tunable hyper-parameter"):
        type("Typo", (LSH,), {"search_space": {"n_iterations": {"low": 1, "high": 5}}})
    with pytest.raises(TypeError, match="low < high"):
        type("Upside", (LSH,), {"_parameter_constraints": {"k": [Interval(Integral, 1, None, closed="left")]},
                                "search_space": {"k": {"low": 5, "high": 1}}})
    with pytest.raises(TypeError, match="breaks the parameter's constraints"):
        type("Outside", (LSH,), {"_parameter_constraints": {"k": [Interval(Integral, 1, None, closed="left")]},
                                 "search_space": {"k": {"low": 0, "high": 4}}})
    with pytest.raises(TypeError, match="choices"):
        type("OneChoice", (LSH,), {"_parameter_constraints": {"k": [Interval(Integral, 1, None, closed="left")]},
                                   "search_space": {"k": {"choices": [2]}}})


def test_the_search_space_check_catches_a_value_only_the_method_refuses():
    class CrossRule(LSH):
        _parameter_constraints = {"k": [Interval(Integral, 1, None, closed="left")]}
        search_space = {"k": {"low": 1, "high": 64}}

        def __init__(self, n_bits, *, seed=0, k=4):
            super().__init__(n_bits, seed=seed)
            self.k = k

        def _check_params(self):
            if self.k > self.n_bits:
                raise ValueError("k must not exceed n_bits")

    with pytest.raises(AssertionError, match="search_space\\['k'\\] = 64 is refused"):
        run_check(CrossRule, "search_space")


def test_every_method_with_hyper_parameters_that_change_its_codes_declares_a_search_space():
    empty = sorted(name for name in BUILTIN if not get_method(name).search_space)
    assert empty == ["lsh", "pcah", "sh"]  # nothing of theirs changes the codes but n_bits and seed
