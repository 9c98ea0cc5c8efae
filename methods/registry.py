"""Registry of hashing methods.

A method registers itself with ``@register_method`` on its class. Built-in methods are listed in
``BUILTIN`` (name -> module) so that their names are known without importing them; third-party
packages register modules through the entry-point group ``hashbench.methods`` (entry point name =
method name, value = ``module`` or ``module:Class``). A method's module is imported only when the
method is chosen (``get_method``) or described (``describe_methods``), so choosing ``itq`` never
imports torch or torch-geometric.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

from hashbench.methods.base import FAMILIES, Hasher

ENTRY_POINT_GROUP = "hashbench.methods"

# name -> module that registers it. Ablations share their parent's module.
BUILTIN: dict[str, str] = {
    "lsh": "hashbench.methods.lsh",
    "pcah": "hashbench.methods.pcah",
    "itq": "hashbench.methods.itq",
    "sh": "hashbench.methods.sh",
    "sgh": "hashbench.methods.sgh",
    "sgh-graph": "hashbench.methods.sgh_graph",
    "deepbit": "hashbench.methods.deepbit",
    "tbh": "hashbench.methods.tbh",
    "cibhash": "hashbench.methods.cibhash",
    "greedyhash": "hashbench.methods.greedyhash",
    "bihalf": "hashbench.methods.bihalf",
    "lagnh": "hashbench.methods.lagnh",
    "lagnh-noaux": "hashbench.methods.lagnh",
    "lagnh-noadv": "hashbench.methods.lagnh",
    "lagnh-norec": "hashbench.methods.lagnh",
    "lagnh-noatt": "hashbench.methods.lagnh",
}

_REGISTRY: dict[str, type[Hasher]] = {}


class UnknownMethodError(KeyError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown method {self.name!r}; known methods: {', '.join(self.known)}"


def register_method(cls: type[Hasher]) -> type[Hasher]:
    """Class decorator: register a `Hasher` subclass under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Hasher)):
        raise TypeError(f"{cls!r} is not a Hasher subclass")
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.family not in FAMILIES:
        raise ValueError(f"{cls.__name__}.family must be one of {FAMILIES}, got {cls.family!r}")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"method name {cls.name!r} is registered twice ({existing.__module__}, {cls.__module__})")
    _REGISTRY[cls.name] = cls
    return cls


def _plugin_targets() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def method_names() -> list[str]:
    """Every known method name, built-in and plug-in, without importing any method module."""
    return sorted(set(BUILTIN) | set(_plugin_targets()) | set(_REGISTRY))


def get_method(name: str) -> type[Hasher]:
    """The class registered under ``name``, importing its module on first use."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    target = BUILTIN.get(name) or _plugin_targets().get(name)
    if target is None:
        raise UnknownMethodError(name, method_names())
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    if attr:
        register_method(getattr(module, attr))
    if name not in _REGISTRY:
        raise ValueError(f"module {module_name!r} was expected to register method {name!r} but did not")
    return _REGISTRY[name]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    family: str
    side_inputs: tuple[str, ...]
    batch_dependent: bool
    reference: str


def describe_methods(names: list[str] | None = None) -> list[MethodInfo]:
    """Metadata of the given (default: all) methods; imports their modules."""
    out = []
    for name in names or method_names():
        cls = get_method(name)
        out.append(MethodInfo(name, cls.family, tuple(cls.side_inputs), bool(cls.batch_dependent), cls.reference))
    return out
