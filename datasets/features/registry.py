"""Registry of feature extractors.

An extractor maps a `Dataset` to ``(features, info)``: ``features`` is ``(n, d)`` float32 and
``info`` is a flat dict of what produced them (name, settings, weights hash) that the harness logs.
An extractor that takes an ``indices`` keyword computes only those rows (and caches them); others
are given a view of the dataset restricted to the requested rows.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

import numpy as np

from datasets.base import Dataset
from datasets.errors import DataError, UnknownDatasetError
from datasets.features.cache import as_rows
from datasets.features.defaults import default_settings

# name -> "module:function(data, **settings) -> (features, info)"
EXTRACTORS: dict[str, str] = {
    "pixels": "datasets.features.pixels:extract_pixels",
    "effnet-lite0": "datasets.features.effnet:extract_effnet_lite0",
}


# Image datasets get ImageNet CNN features unless told otherwise (``--features pixels`` for raw pixels).
DEFAULT_EXTRACTOR = "effnet-lite0"

def extractor_names() -> list[str]:
    return sorted(EXTRACTORS)


def compute_features(data: Dataset, extractor: str | None = None, indices: Any = None,
                     **settings: Any) -> tuple[np.ndarray, dict]:
    """Features of the items ``indices`` of ``data`` (every item when None), rows in that order.

    Pre-extracted datasets return their own features.
    """
    rows = None if indices is None else as_rows(indices, len(data))
    if data.features is not None and extractor in (None, "precomputed"):
        feats = np.asarray(data.features, dtype=np.float32)
        return (feats if rows is None else feats[rows]), {"features": "precomputed"}
    extractor = extractor or DEFAULT_EXTRACTOR
    if extractor == "precomputed":
        raise DataError(f"{data.name} has no pre-extracted features; choose one of {extractor_names()}")
    target = EXTRACTORS.get(extractor)
    if target is None:
        raise UnknownDatasetError(extractor, extractor_names(), what="feature extractor")
    if data.images is None:
        raise DataError(f"{data.name} has no images to extract {extractor!r} features from")
    module_name, _, func = target.partition(":")
    fn = getattr(importlib.import_module(module_name), func)
    settings = {**default_settings(data.name, extractor), **settings}
    allowed = [p for p in inspect.signature(fn).parameters if p not in ("data", "indices")]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise DataError(f"unknown setting(s) {unknown} for the {extractor!r} extractor; allowed: {allowed}")
    if rows is None:
        return fn(data, **settings)
    if "indices" in inspect.signature(fn).parameters:
        return fn(data, indices=rows, **settings)
    return fn(_restricted(data, rows), **settings)


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
