"""Constraints for `Hasher._parameter_constraints`, in scikit-learn's format.

A class maps each hyper-parameter to a list of constraints; a value is valid when it satisfies any of
them, as decided by scikit-learn's ``validate_parameter_constraints``. Besides sklearn's own vocabulary
(re-exported here: `StrOptions`, `Options`, `Integral`, `Real`; the literals ``None`` and
``"boolean"``), method modules use:

* `Interval`: sklearn's ``Interval`` that refuses booleans. sklearn's accepts ``True`` as the integer 1
  and the real 1.0 (``bool`` is a ``numbers.Integral``), so ``n_bits=True`` would pass. NaN never
  passes; ``±inf`` passes only a closed unbounded side, so ``Interval(Real, 0, None, closed="left")``
  means a finite real ``>= 0``. Numpy scalars (``np.int64(16)``, ``np.float32(0.5)``) pass.
* `FiniteRealSequence`: a non-empty 1-D list, tuple or array of finite reals (DeepBit's ``view_angles``).
* `TORCH_SEED_MAX`: the largest seed torch's generators take, for the ``seed`` of torch methods.
* `DeviceName`: a torch device string (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:k"``, ``"mps"``),
  checked by its form without importing torch; whether the device exists is known only at ``fit``.

sklearn's ``make_constraint`` accepts only instances of its own constraint classes, so the two custom
constraints extend ``Options`` ("a value of some type among allowed ones") with an empty option set and
their own test and description.

This module imports numpy and scikit-learn, never torch.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import InvalidParameterError, Options, StrOptions, make_constraint
from sklearn.utils._param_validation import Interval as _SklearnInterval
from sklearn.utils._param_validation import validate_parameter_constraints

__all__ = [
    "DeviceName",
    "FiniteRealSequence",
    "Integral",
    "Interval",
    "InvalidParameterError",
    "Options",
    "Real",
    "StrOptions",
    "TORCH_SEED_MAX",
    "describe_constraints",
    "make_constraint",
    "validate_parameter_constraints",
]

# torch.Generator.manual_seed takes an unsigned 64-bit integer.
TORCH_SEED_MAX = 2**64 - 1


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


class Interval(_SklearnInterval):
    """sklearn's ``Interval(type, left, right, *, closed)`` without booleans (see the module docstring)."""

    def is_satisfied_by(self, val: Any) -> bool:
        return not _is_bool(val) and super().is_satisfied_by(val)


class _Predicate(Options):
    """Base of the custom constraints: ``Options`` with no options, a test and a description."""

    description = ""

    def __init__(self) -> None:
        super().__init__(object, set())

    def is_satisfied_by(self, val: Any) -> bool:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.description


class FiniteRealSequence(_Predicate):
    """A non-empty 1-D ``list``, ``tuple`` (any ``Sequence`` but a string) or ``ndarray`` whose items are
    finite real numbers, booleans excluded."""

    description = "a non-empty sequence of finite real numbers"

    def is_satisfied_by(self, val: Any) -> bool:
        if isinstance(val, np.ndarray):
            if val.ndim != 1:
                return False
        elif not isinstance(val, Sequence) or isinstance(val, (str, bytes)):
            return False
        return len(val) > 0 and all(
            isinstance(item, Real) and not _is_bool(item) and math.isfinite(item) for item in val
        )


class DeviceName(_Predicate):
    """A device string: ``"auto"`` (a GPU when present), ``"cpu"``, ``"cuda"``, ``"cuda:<k>"`` or ``"mps"``."""

    description = "one of 'auto', 'cpu', 'cuda', 'cuda:<k>', 'mps'"
    _PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

    def is_satisfied_by(self, val: Any) -> bool:
        return isinstance(val, str) and self._PATTERN.fullmatch(val) is not None


def describe_constraints(constraints: list[Any]) -> str:
    """What a list of constraints allows, as sklearn words it (``"an int in the range [1, 1024]"``,
    alternatives joined as ``"a, b or c"``, hidden constraints left out)."""
    shown = [c for c in (make_constraint(c) for c in constraints) if not c.hidden]
    words = [str(c) for c in shown]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
