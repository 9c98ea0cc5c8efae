"""Registry of feature extractors.

An extractor maps a `Dataset` to ``(features, info)``: ``features`` is ``(n, d)`` float32 and
``info`` is a flat dict of what produced them (name, settings, weights hash) that the harness logs.
"""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from datasets.base import Dataset
from datasets.errors import DataError, UnknownDatasetError

# name -> "module:function(data, **settings) -> (features, info)"
EXTRACTORS: dict[str, str] = {
    "pixels": "datasets.features.pixels:extract_pixels",
}


def extractor_names() -> list[str]:
    return sorted(EXTRACTORS)


def compute_features(data: Dataset, extractor: str | None = None, **settings: Any) -> tuple[np.ndarray, dict]:
    """Features of every item of ``data``. Pre-extracted datasets return their own features."""
    if data.features is not None and extractor in (None, "precomputed"):
        return np.asarray(data.features, dtype=np.float32), {"features": "precomputed"}
    extractor = extractor or "pixels"
    if extractor == "precomputed":
        raise DataError(f"{data.name} has no pre-extracted features; choose one of {extractor_names()}")
    target = EXTRACTORS.get(extractor)
    if target is None:
        raise UnknownDatasetError(extractor, extractor_names(), what="feature extractor")
    if data.images is None:
        raise DataError(f"{data.name} has no images to extract {extractor!r} features from")
    module_name, _, func = target.partition(":")
    return getattr(importlib.import_module(module_name), func)(data, **settings)
