"""Registry of feature extractors, and the early check of feature-layer settings.

An extractor maps a `Dataset` to ``(features, info)``: ``features`` is ``(n, d)`` float32 and
``info`` a flat dict describing what produced them. Its keys carry no prefix (the harness puts
every extractor's and side input's keys under its own namespace): ``name`` (the extractor, or
``"precomputed"``), ``dim``, and per extractor its settings, weights hash and library versions.
The keys in `LOCAL_KEYS` (a cache path, the device, the batch size) are facts of the machine that
computed the values, not of the values: they are logged but identify nothing.

An extractor that takes an ``indices`` keyword computes only those rows (and caches them); others
are given a view of the dataset restricted to the requested rows.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any, Callable

import numpy as np

from hashbench.datasets.base import Dataset
from hashbench.datasets.errors import DataError, UnknownDatasetError
from hashbench.datasets.features.cache import as_rows
from hashbench.datasets.features.defaults import default_settings

# name -> "module:function(data, **settings) -> (features, info)"
EXTRACTORS: dict[str, str] = {
    "pixels": "hashbench.datasets.features.pixels:extract_pixels",
    "effnet-lite0": "hashbench.datasets.features.effnet:extract_effnet_lite0",
}

# Image datasets get ImageNet CNN features unless told otherwise (``--features pixels`` for raw pixels).
DEFAULT_EXTRACTOR = "effnet-lite0"

# Info keys, of extractors and side inputs alike, that describe the machine rather than the data.
LOCAL_KEYS: frozenset[str] = frozenset({"cache", "device", "batch_size"})


def extractor_names() -> list[str]:
    """Names of the feature extractors, sorted (``"precomputed"`` is not one: it reads a dataset's own)."""
    return sorted(EXTRACTORS)


def extractor_function(name: str) -> Callable[..., tuple[np.ndarray, dict]]:
    """The function of extractor ``name``; its module is imported (no torch: networks load on first use).

    Raises:
        UnknownDatasetError: (a `DataError`) ``name`` is not in `EXTRACTORS`.
    """
    target = EXTRACTORS.get(name)
    if target is None:
        raise UnknownDatasetError(name, extractor_names(), what="feature extractor")
    module_name, _, func = target.partition(":")
    return getattr(importlib.import_module(module_name), func)


def setting_names(fn: Callable[..., Any], skip: tuple[str, ...]) -> list[str]:
    """The keyword settings ``fn`` takes: its parameters other than ``skip``."""
    return [p for p in inspect.signature(fn).parameters if p not in skip]


def check_setting_values(fn: Callable[..., Any], given: dict[str, Any]) -> None:
    """Check the values of ``given`` against the constraints ``fn`` declares beside it
    (`datasets.features.constraints.declare_settings`); a device must exist on this machine.

    Raises:
        DataError: one line naming the extractor or side input, the setting, the value and what is
            allowed (or why the device is not available).
        TypeError: ``fn`` declares no constraints (every registered function must).
    """
    from hashbench.datasets.features.constraints import check_values

    table = getattr(fn, "setting_constraints", None)
    if table is None:
        raise TypeError(f"{getattr(fn, '__qualname__', fn)} declares no setting constraints "
                        "(datasets.features.constraints.declare_settings)")
    check_values(table, given, fn.setting_owner)


def check_setting_names(given: dict[str, Any] | Any, allowed: list[str], what: str) -> None:
    """Raises `DataError` naming the keys of ``given`` not in ``allowed``, and what takes ``allowed``."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise DataError(f"unknown setting(s) {unknown} for {what}; allowed: {allowed}")


_EXTRACTOR_ARGS = ("data", "indices")


def compute_features(data: Dataset, extractor: str | None = None, indices: Any = None,
                     **settings: Any) -> tuple[np.ndarray, dict]:
    """Features of the items ``indices`` of ``data`` (every item when None), rows in that order.

    Returns ``(features, info)``: ``features`` ``(len(indices), d)`` float32 (``(len(data), d)`` when
    ``indices`` is None), ``info`` as described in the module docstring. ``settings`` go to the
    extractor, over the dataset's defaults (`datasets.features.defaults`). Datasets with pre-extracted
    features return their own (``extractor`` None or ``"precomputed"``; info ``{"name": "precomputed"}``).

    Raises:
        UnknownDatasetError: (a `DataError`) unknown extractor.
        DataError: ``"precomputed"`` for a dataset without features, settings for pre-extracted
            features, a setting the extractor does not take or a value it does not allow (as
            `check_settings`), no images to extract from, bad ``indices``, or whatever the extractor
            refuses (e.g. non-uint8 images).
    """
    rows = None if indices is None else as_rows(indices, len(data))
    if data.features is not None and extractor in (None, "precomputed"):
        if settings:
            raise DataError(f"{data.name} has pre-extracted features, which take no settings; got {sorted(settings)}")
        feats = np.asarray(data.features, dtype=np.float32)
        return (feats if rows is None else feats[rows]), {"name": "precomputed"}
    extractor = extractor or DEFAULT_EXTRACTOR
    if extractor == "precomputed":
        raise DataError(f"{data.name} has no pre-extracted features; choose one of {extractor_names()}")
    fn = extractor_function(extractor)
    if data.images is None:
        raise DataError(f"{data.name} has no images to extract {extractor!r} features from")
    settings = {**default_settings(data.name, extractor), **settings}
    check_setting_names(settings, setting_names(fn, _EXTRACTOR_ARGS), f"the {extractor!r} extractor")
    if rows is None:
        return fn(data, **settings)
    if "indices" in inspect.signature(fn).parameters:
        return fn(data, indices=rows, **settings)
    return fn(_restricted(data, rows), **settings)


def check_settings(dataset: str, extractor: str | None, feature_settings: dict[str, Any],
                   side_settings: dict[str, dict[str, Any]]) -> None:
    """Check a run's feature-layer settings, names and values, before anything is loaded or computed.

    ``dataset`` is a registry name (`datasets.registry`), ``extractor`` as for `compute_features`
    (None: the dataset's own features for a dataset of pre-extracted features, else `DEFAULT_EXTRACTOR`),
    ``feature_settings`` the extractor's settings and ``side_settings`` the settings per side input
    (``{"tags": {"k": 5}}``). Every given value is checked against the constraints declared beside its
    extractor or side-input function (`datasets.features.constraints`; e.g. ``input_size`` an int in
    [32, 1024], ``k`` an int in [1, 20], ``device`` one this machine has); the functions check the same
    constraints again when called. Loads no data and imports no torch unless a CUDA or MPS ``device``
    is asked for (to see whether this machine has it).

    Raises:
        UnknownDatasetError: (a `DataError`) unknown extractor.
        DataError: an extractor other than ``"precomputed"`` for a dataset of pre-extracted features,
            ``"precomputed"`` for a dataset of images, a setting the extractor or a side input does not
            take, an unknown side input, or a value a setting does not allow (one line naming the
            extractor or side input, the setting, the value and what is allowed).
    """
    from hashbench.datasets.features.side import side_function
    from hashbench.datasets.registry import PRECOMPUTED_FEATURES

    if dataset in PRECOMPUTED_FEATURES:
        if extractor not in (None, "precomputed"):
            raise DataError(f"{dataset} holds pre-extracted features and no images, so it cannot be given "
                            f"{extractor!r} features; leave the extractor unset (or 'precomputed')")
        if feature_settings:
            raise DataError(f"{dataset} holds pre-extracted features, which take no settings; "
                            f"got {sorted(feature_settings)}")
    else:
        name = extractor or DEFAULT_EXTRACTOR
        if name == "precomputed":
            raise DataError(f"{dataset} has no pre-extracted features; choose one of {extractor_names()}")
        fn = extractor_function(name)
        check_setting_names(feature_settings, setting_names(fn, _EXTRACTOR_ARGS), f"the {name!r} extractor")
        check_setting_values(fn, feature_settings)
    for side, settings in side_settings.items():
        fn = side_function(side)
        check_setting_names(settings, setting_names(fn, ("data", "rows")), f"side input {side!r}")
        check_setting_values(fn, settings)


class _Rows:
    """The images ``rows`` of a lazy image sequence, read on access."""

    def __init__(self, images: Any, rows: np.ndarray):
        self.images, self.rows = images, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images[int(self.rows[i])]


def _restricted(data: Dataset, rows: np.ndarray) -> Dataset:
    images = data.images[rows] if isinstance(data.images, np.ndarray) else _Rows(data.images, rows)
    return dataclasses.replace(data, labels=np.asarray(data.labels)[rows], images=images, features=None,
                               partition=None, splits={}, side={})
