"""What values the feature layer's settings take, declared beside each extractor and side input.

Each extractor and side-input function carries a table ``setting name -> list of constraints`` in
scikit-learn's ``_parameter_constraints`` format: a value is valid when it satisfies *any* constraint of
its list; the literal ``None`` allows None and the string ``"boolean"`` allows ``bool`` / ``numpy.bool_``.
The other constraints are the small classes below, named and described as scikit-learn's are
(``Interval(Integral, 1, 20)`` reads "an int in the range [1, 20]").

Why not scikit-learn's own ``sklearn.utils._param_validation`` (which `methods` uses): the settings are
checked before a run loads anything (`datasets.features.check_settings`), and that check must stay
light; importing ``sklearn.utils._param_validation`` takes ~1.3 s and pulls in ~490 scipy modules
(measured on the 2-core machine), where this module needs nothing beyond the standard library and numpy.

Differences from scikit-learn on purpose: booleans never pass as numbers (``input_size=True`` is not
the integer 1), NaN never passes, and `Choices` lists its options sorted so that messages are the same
in every process.

`declare_settings` attaches a table to a function (as ``fn.setting_constraints``), checks that it names
exactly the function's keyword-only settings, and makes every call check its arguments, so a value is
refused with the same one-line `DataError` whether it is caught early (`check_settings`) or where it is
used. A device a value names (``"cuda"``, ``"mps"``) must also exist on this machine
(`check_device_available`, which imports torch only for such a device).
"""
from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, Callable

import numpy as np

from hashbench.datasets.errors import DataError

__all__ = ["Choices", "DeviceName", "FiniteRealSequence", "Integral", "Interval", "Real", "allowed",
           "check_device_available", "check_value", "check_values", "declare_settings", "is_allowed"]


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


class Constraint:
    """One allowed kind of value: `is_satisfied_by` decides, ``str()`` says it in words."""

    def is_satisfied_by(self, value: Any) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self})"


class Interval(Constraint):
    """A number of ``kind`` (``numbers.Integral`` or ``numbers.Real``) in ``[left, right]``; a bound of None
    is unbounded (then ``±inf`` passes on that side for reals). Booleans and NaN never pass; numpy
    scalars do."""

    def __init__(self, kind: type, left: float | None, right: float | None):
        if kind not in (Integral, Real):
            raise ValueError("kind must be numbers.Integral or numbers.Real")
        if left is not None and right is not None and right < left:
            raise ValueError(f"empty interval [{left}, {right}]")
        self.kind, self.left, self.right = kind, left, right

    def is_satisfied_by(self, value: Any) -> bool:
        if _is_bool(value) or not isinstance(value, self.kind):
            return False
        if self.kind is Real and math.isnan(value):
            return False
        return (self.left is None or value >= self.left) and (self.right is None or value <= self.right)

    def __str__(self) -> str:
        what = "an int" if self.kind is Integral else "a float"
        left = "(-inf" if self.left is None else f"[{self.left}"
        right = "inf)" if self.right is None else f"{self.right}]"
        return f"{what} in the range {left}, {right}"


class Choices(Constraint):
    """One of a fixed set of strings."""

    def __init__(self, options: Any):
        self.options = frozenset(options)

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.options

    def __str__(self) -> str:
        return f"a str among {{{', '.join(repr(o) for o in sorted(self.options))}}}"


class FiniteRealSequence(Constraint):
    """A non-empty 1-D list, tuple (any ``Sequence`` but a string) or numpy array of finite real numbers,
    booleans excluded."""

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, np.ndarray):
            if value.ndim != 1:
                return False
        elif not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            return False
        return len(value) > 0 and all(isinstance(v, Real) and not _is_bool(v) and math.isfinite(v) for v in value)

    def __str__(self) -> str:
        return "a non-empty sequence of finite real numbers"


class DeviceName(Constraint):
    """A torch device by name: ``"auto"`` (a CUDA GPU when there is one, else the CPU), ``"cpu"``,
    ``"cuda"``, ``"cuda:<k>"`` or ``"mps"``. The form is checked here; whether the device exists on
    this machine is `check_device_available`'s question."""

    _FORM = re.compile(r"auto|cpu|mps|cuda(?::[0-9]+)?")

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and self._FORM.fullmatch(value) is not None

    def __str__(self) -> str:
        return "one of 'auto', 'cpu', 'cuda', 'cuda:<k>', 'mps'"


def _satisfies(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    if constraint == "boolean":
        return _is_bool(value)
    return constraint.is_satisfied_by(value)


def _words(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if constraint == "boolean":
        return "a bool"
    return str(constraint)


def is_allowed(value: Any, constraints: list[Any]) -> bool:
    """Whether ``value`` satisfies any of ``constraints``."""
    return any(_satisfies(c, value) for c in constraints)


def allowed(constraints: list[Any]) -> str:
    """What ``constraints`` allow, in words (``"an int in the range [1, inf) or None"``)."""
    words = [_words(c) for c in constraints]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _shown(value: Any, limit: int = 60) -> str:
    text = " ".join(repr(value).split())  # one line whatever the value
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_value(name: str, value: Any, constraints: list[Any], what: str) -> None:
    """Raise a one-line `DataError` naming ``what`` (``"the 'effnet-lite0' extractor"``), the setting,
    the value and what is allowed, unless ``value`` satisfies ``constraints``; then, for a device,
    `check_device_available`."""
    if not is_allowed(value, constraints):
        raise DataError(f"{name}={_shown(value)} is not a valid setting of {what}: {name} must be "
                        f"{allowed(constraints)}")
    if any(isinstance(c, DeviceName) for c in constraints):
        check_device_available(value, what)


def check_values(table: dict[str, list[Any]], settings: dict[str, Any], what: str) -> None:
    """`check_value` for every entry of ``settings`` that ``table`` constrains (names are checked
    elsewhere: `datasets.features.registry.check_setting_names`)."""
    for name, value in settings.items():
        if name in table:
            check_value(name, value, table[name], what)


def check_device_available(device: Any, what: str) -> None:
    """Refuse, with one line, a CUDA or MPS device this machine does not have.

    ``None``, ``"auto"`` and ``"cpu"`` always exist and need no torch; for any other device torch is
    imported (its absence is refused with the install hint). ``"cuda:<k>"`` needs at least ``k + 1``
    visible CUDA devices.
    """
    if device is None or device in ("auto", "cpu") or not isinstance(device, str):
        return
    try:
        import torch
    except ImportError:
        from hashbench.datasets.features.backbone import INSTALL_HINT

        raise DataError(f"device={device!r} of {what} needs torch, which is not installed; {INSTALL_HINT}") from None
    kind, _, index = device.partition(":")
    use_instead = "use device='cpu' (or 'auto': a GPU when there is one)"
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch is built without CUDA" if torch.version.cuda is None
                   else "torch sees no CUDA GPU")
            raise DataError(f"device={device!r} of {what} is not available on this machine ({why}; torch "
                            f"{torch.__version__}); {use_instead}")
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise DataError(f"device={device!r} of {what} is not available on this machine: torch sees "
                            f"{count} CUDA device(s), numbered from 0; {use_instead}")
    elif kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DataError(f"device={device!r} of {what} is not available on this machine (no Apple MPS "
                            f"backend in torch {torch.__version__}); {use_instead}")


_NOT_SETTINGS = ("indices",)  # keyword-only parameters that are arguments of a call, not settings


def declare_settings(what: str, table: dict[str, list[Any]]) -> Callable[[Callable], Callable]:
    """Decorator: ``table`` constrains the settings of the decorated function, named ``what`` in errors.

    The table must name exactly the function's keyword-only parameters other than ``indices`` (its
    settings; anything else is a `TypeError` at import). The wrapped function checks every setting it
    is called with, its defaults included, by `check_values`; ``fn.setting_constraints`` holds the table
    and ``fn.setting_owner`` the ``what``. The signature is the function's own (``inspect.signature``).
    """

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)
        settings = [p.name for p in signature.parameters.values()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _NOT_SETTINGS]
        if sorted(settings) != sorted(table):
            raise TypeError(f"{fn.__qualname__}: constraints declared for {sorted(table)}, "
                            f"but its settings are {sorted(settings)}")
        for name, constraints in table.items():
            if not isinstance(constraints, list) or not constraints:
                raise TypeError(f"{fn.__qualname__}: constraints of {name!r} must be a non-empty list")

        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)  # a wrong call stays a TypeError
            bound.apply_defaults()
            check_values(table, {n: bound.arguments[n] for n in settings}, what)
            return fn(*args, **kwargs)

        checked.setting_constraints = dict(table)
        checked.setting_owner = what
        return checked

    return decorate
