"""Hashing methods: the `Hasher` contract, the registry, and one module per method."""
from hashbench.methods.base import Hasher, InputError, NotFittedError, pack_bits, unpack_bits
from hashbench.methods.registry import (
    UnknownMethodError,
    describe_methods,
    get_method,
    method_names,
    register_method,
)

__all__ = [
    "Hasher",
    "InputError",
    "NotFittedError",
    "UnknownMethodError",
    "describe_methods",
    "get_method",
    "method_names",
    "pack_bits",
    "register_method",
    "unpack_bits",
]
