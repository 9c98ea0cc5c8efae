"""Registry of datasets: name -> loader, imported only when the dataset is chosen."""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

import numpy as np

from hashbench.datasets.base import Dataset
from hashbench.datasets.errors import DataError, UnknownDatasetError

# name -> "module:function"; the function returns a `Dataset`. Loaders that read files take
# ``data_root`` (str | None); the keyword parameters of a loader are the options it reads.
LOADERS: dict[str, str] = {
    "digits": "hashbench.datasets.digits:load_digits",
    "fashion-mnist": "hashbench.datasets.fashion_mnist:load_fashion_mnist",
    "cifar10": "hashbench.datasets.cifar10:load_cifar10",
    "listfile": "hashbench.datasets.listfile:load_listfile",
    "nus-wide-21": "hashbench.datasets.listfile:load_nus_wide_21",
    "coco": "hashbench.datasets.listfile:load_coco",
    "mirflickr25k": "hashbench.datasets.listfile:load_mirflickr25k",
    "features": "hashbench.datasets.feature_file:load_feature_file",
}
# Why a loader without a ``data_root`` parameter reads no files (said when one is given anyway).
NO_FILES: dict[str, str] = {"digits": "it ships with scikit-learn"}
# Datasets of pre-extracted features (no images): features are read, not extracted.
PRECOMPUTED_FEATURES: frozenset[str] = frozenset({"features"})
# Command-line spelling of the options that have their own flag; any other is ``--data-option NAME=VALUE``.
_FLAGS = {"data_root": "--data-root", "allow_pickle": "--allow-pickle"}


def dataset_names() -> list[str]:
    """Names `load_dataset` accepts, sorted."""
    return sorted(LOADERS)


def get_loader(name: str) -> Callable[..., Dataset]:
    """The loader function of dataset ``name`` (its module is imported now).

    Raises:
        UnknownDatasetError: ``name`` is not in `LOADERS`.
    """
    target = LOADERS.get(name)
    if target is None:
        raise UnknownDatasetError(name, dataset_names())
    module_name, _, func = target.partition(":")
    return getattr(importlib.import_module(module_name), func)


def _flag(option: str) -> str:
    return _FLAGS.get(option, f"--data-option {option}=...")


def check_bool_option(name: str, option: str, value: Any) -> None:
    """Refuse, with one line, a ``value`` of an on/off option that is not a boolean: the string
    ``"False"`` (or ``0``, ``None``) must not pass for true or false by its truth value."""
    if not isinstance(value, (bool, np.bool_)):
        raise DataError(f"option {option} ({_flag(option)}) of {name} must be True or False, got {value!r}")


def _is_plain_bool(annotation: Any) -> bool:
    # loaders' modules use ``from __future__ import annotations``: their annotations are strings
    return annotation is bool or annotation == "bool"


def check_loader_options(name: str, data_root: str | None, options: dict[str, Any]) -> None:
    """Check, before anything is read, that the loader of ``name`` reads ``data_root`` (when given)
    and every option in ``options``, by name, and the value of every option the loader annotates as a
    plain ``bool`` (True or False, `check_bool_option`); other values are the loader's to check.

    Raises:
        UnknownDatasetError: ``name`` is not a known dataset.
        DataError: ``data_root`` given to a loader that reads no files, an option the loader does not
            read, or a value other than True / False for a ``bool`` option; the message names the
            option, its command-line flag and the dataset.
    """
    params = inspect.signature(get_loader(name)).parameters
    if data_root is not None and "data_root" not in params:
        why = f" ({NO_FILES[name]})" if name in NO_FILES else ""
        raise DataError(f"{name} reads no files{why}: data_root ({_flag('data_root')}) is not used by it")
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # a loader taking **options checks them itself
    accepted = [p for p, v in params.items() if p != "data_root" and v.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = [o for o in options if o not in accepted]
    if unknown:
        listed = ", ".join(f"{o} ({_flag(o)})" for o in unknown)
        takes = f"it reads: {', '.join(accepted)}" if accepted else "it takes no options"
        raise DataError(f"{name} does not read the option(s) {listed}; {takes}")
    for option, value in options.items():
        if _is_plain_bool(params[option].annotation):
            check_bool_option(name, option, value)


def load_dataset(name: str, data_root: str | None = None, **options: Any) -> Dataset:
    """Load dataset ``name``; ``data_root`` points at a user's copy of its files.

    The options are checked first (`check_loader_options`); ``data_root`` is passed only to loaders that
    read files. What the result holds (shapes, dtypes) is described on `Dataset` and on each loader.

    Raises:
        UnknownDatasetError: ``name`` is not a known dataset.
        DataError: an option the loader does not read, or data missing, malformed or unverifiable
            (the message says where the loader looked).
    """
    check_loader_options(name, data_root, options)
    loader = get_loader(name)
    if "data_root" in inspect.signature(loader).parameters:
        return loader(data_root=data_root, **options)
    return loader(**options)
