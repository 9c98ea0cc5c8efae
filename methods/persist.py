"""Save a fitted `Hasher` to a folder and load it back, without pickling Python objects.

A pickle ties a model to the process that wrote it (its classes, its module paths) and runs code when
read. A saved hasher is instead a folder of plain data:

* ``hasher.json``: the format version, the method's registry name, its hyper-parameters as given
  (``get_params()``) and every fitted attribute (names ending in ``_``) that is plain data (numbers,
  strings, None, lists, tuples, dicts with string keys), encoded so that types come back as they were
  (tuples stay tuples, numpy scalars keep their dtype);
* ``arrays.npz``: the fitted numpy arrays, read back with ``allow_pickle=False``;
* ``modules/<attribute>.pt``: the state dict of each fitted torch module (LAGNH's network), written by
  ``torch.save`` and read with ``weights_only=True``; the method rebuilds the module from its
  hyper-parameters and fitted sizes (`Hasher._load_module`) and loads the weights into it.

Loading runs ``get_method(name)(**params)`` and sets the fitted attributes: the loaded hasher encodes
exactly as the saved one did (same numbers, same code path; bit-identical codes on the same device).

This module imports numpy only; torch is imported only to save or load a hasher that has a module.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hashbench.methods.base import Hasher, InputError

FORMAT_VERSION = 1
MANIFEST = "hasher.json"
ARRAYS = "arrays.npz"
MODULES = "modules"


def _is_module(value: Any) -> bool:
    # a torch.nn.Module, recognised without importing torch
    return hasattr(value, "state_dict") and hasattr(value, "load_state_dict") and hasattr(value, "parameters")


class _Encoder:
    """Turns fitted values into JSON, collecting arrays and modules on the side."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.modules: dict[str, Any] = {}

    def encode(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, np.generic):
            return value
        if isinstance(value, np.generic):
            return {"__scalar__": value.dtype.str, "value": value.item()}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise TypeError(f"{where} is an object array, which cannot be saved without pickling")
            key = f"a{len(self.arrays)}"
            self.arrays[key] = value
            return {"__array__": key}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise TypeError(f"{where} is a dict with keys that are not strings")
            return {"__dict__": {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
        if _is_module(value):
            self.modules[where] = value
            return {"__module__": where}
        raise TypeError(f"{where} is a {type(value).__name__}, which a saved hasher cannot hold")


def _decode(value: Any, arrays: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__scalar__" in value:
        return np.dtype(value["__scalar__"]).type(value["value"])
    if "__array__" in value:
        return arrays[value["__array__"]]
    if "__tuple__" in value:
        return tuple(_decode(v, arrays) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _decode(v, arrays) for k, v in value["__dict__"].items()}
    raise ValueError(f"unknown entry {sorted(value)} in a saved hasher")


def save_hasher(hasher: Hasher, path: str | Path) -> Path:
    """Write fitted ``hasher`` into the folder ``path`` (created; files in it are overwritten).

    Returns the folder. Raises `NotFittedError` for an unfitted hasher and `TypeError` when a fitted
    attribute is neither plain data, a numpy array nor a torch module (a method that keeps such state
    must convert it).
    """
    hasher._check_fitted()
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    enc = _Encoder()
    params = enc.encode(hasher.get_params(deep=False), "params")
    state = {name: enc.encode(value, name) for name, value in hasher._fitted_attributes().items()}
    manifest = {"format": FORMAT_VERSION, "method": hasher.name, "class": type(hasher).__qualname__,
                "params": params, "state": state, "modules": sorted(enc.modules)}
    np.savez(folder / ARRAYS, **enc.arrays)
    if enc.modules:
        import torch

        (folder / MODULES).mkdir(exist_ok=True)
        for name, module in enc.modules.items():
            weights = {k: v.detach().cpu() for k, v in module.state_dict().items()}
            torch.save(weights, folder / MODULES / f"{name}.pt")
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return folder


def load_hasher(path: str | Path, cls: type[Hasher] | None = None) -> Hasher:
    """The fitted hasher saved in folder ``path`` by `save_hasher`, ready to encode; an instance of ``cls``
    when given (a class not in the registry, such as a test's variant), else of the registered method.

    Raises `InputError` (one line) for a folder that holds no saved hasher or one of a newer format;
    `hashbench.methods.UnknownMethodError` when its method is not installed.
    """
    from hashbench.methods.registry import get_method

    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder} holds no saved hasher ({MANIFEST}: {exc})") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise InputError(f"{folder} holds a saved hasher of format {manifest.get('format')!r}; "
                         f"this hashbench reads format {FORMAT_VERSION}")
    cls = cls or get_method(manifest["method"])
    with np.load(folder / ARRAYS, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    hasher = cls(**_decode(manifest["params"], arrays))
    modules = set(manifest.get("modules", []))
    state = {name: _decode(value, arrays) for name, value in manifest["state"].items() if name not in modules}
    for name, value in state.items():
        setattr(hasher, name, value)
    if modules:
        import torch

        for name in sorted(modules):
            weights = torch.load(folder / MODULES / f"{name}.pt", map_location="cpu", weights_only=True)
            setattr(hasher, name, hasher._load_module(name, weights))
    return hasher
