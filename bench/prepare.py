"""Turn a dataset name and protocol into the arrays every method sees: same data, same splits,
same features, same side inputs for everyone."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.errors import UsageError
from datasets import Protocol, Split, compute_features, get_protocol, load_dataset, make_split
from datasets.registry import get_loader

SPLITS = ("train", "database", "query")


@dataclass
class Prepared:
    dataset: str
    protocol: Protocol
    split: Split
    features: dict[str, np.ndarray]            # split name -> (n_split, d)
    labels: dict[str, np.ndarray]
    side: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)   # input -> split -> array
    info: dict[str, Any] = field(default_factory=dict)                      # logged as run parameters


def _finite_or_raise(X: np.ndarray, what: str) -> None:
    bad = int(X.size - np.count_nonzero(np.isfinite(X)))
    if bad:
        raise UsageError(f"{what} contain {bad} NaN or infinite values out of {X.size}; "
                         "fix the feature file or choose another --features")


def _side_settings(name: str, feat_info: dict[str, Any]) -> dict[str, Any]:
    """Views are features of rotated images: they must come from the same extractor at the same size.
    Tags from the feature network itself are read off the features' cache at their input size."""
    if name == "views" and feat_info.get("features") not in (None, "pixels", "precomputed"):
        return {"extractor": feat_info["features"], "input_size": feat_info["input_size"]}
    if name == "tags" and feat_info.get("features") == "effnet-lite0":
        return {"features_input_size": feat_info["input_size"]}
    return {}


def prepare(dataset: str, *, protocol: str | None = None, features: str | None = None,
            data_root: str | None = None, side_inputs: tuple[str, ...] = (),
            fit_only_side: tuple[str, ...] = (), allow_pickle: bool = False,
            data_options: dict[str, Any] | None = None,
            side_options: dict[str, dict[str, Any]] | None = None,
            feature_options: dict[str, Any] | None = None) -> Prepared:
    """Load, split and featurise ``dataset``; compute the named side inputs.

    ``side_options`` holds settings per side input (``{"tags": {"k": 5}}``); views always follow the
    features' extractor and input size. ``feature_options`` are the extractor's settings
    (``{"input_size": 128}``), over the dataset's defaults.

    Features are extracted only for the items the protocol uses (query, database, train).
    ``fit_only_side`` inputs (e.g. DeepBit's rotated ``views``) are computed for the training split only.
    """
    options = dict(data_options or {})
    if allow_pickle:
        options["allow_pickle"] = True
    try:
        inspect.signature(get_loader(dataset)).bind(data_root=data_root, **options)
    except TypeError as exc:  # an option the loader does not take
        raise UsageError(f"--data-option not accepted by {dataset}: {exc}") from None
    side_options = dict(side_options or {})
    unused = sorted(set(side_options) - set(side_inputs))
    if unused:
        raise UsageError(f"--side-option names {unused}, which no chosen method uses "
                         f"(side inputs used: {list(side_inputs) or 'none'})")
    data = load_dataset(dataset, data_root=data_root, **options)
    proto = get_protocol(dataset, protocol)
    split = make_split(proto, data)
    used = np.unique(np.concatenate([split.query, split.database, split.train]))
    feats, feat_info = compute_features(data, features, indices=used, **dict(feature_options or {}))
    feats = np.asarray(feats)
    if feats.ndim != 2 or feats.shape[0] != len(used):
        raise UsageError(f"features of {dataset} have shape {feats.shape}, expected ({len(used)}, d)")
    _finite_or_raise(feats, f"features of {dataset}")
    row = np.empty(len(data), dtype=np.int64)
    row[used] = np.arange(len(used))
    out = Prepared(
        dataset=dataset,
        protocol=proto,
        split=split,
        features={s: feats[row[getattr(split, s)]] for s in SPLITS},
        labels={s: data.labels[getattr(split, s)] for s in SPLITS},
        info={"data_source": data.source, **feat_info},
    )
    if side_inputs:
        from datasets.features.side import compute_side

        for name in side_inputs:
            wanted = ("train",) if name in fit_only_side else SPLITS
            idx = np.unique(np.concatenate([getattr(split, s) for s in wanted]))
            settings = {**side_options.get(name, {}), **_side_settings(name, feat_info)}
            values, side_info = compute_side(data, name, indices=idx, **settings)
            pos = {s: np.searchsorted(idx, getattr(split, s)) for s in wanted}
            out.side[name] = {s: np.asarray(values)[pos[s]] for s in wanted}
            out.info.update({f"{name}_{k}" if not k.startswith(name) else k: v for k, v in side_info.items()})
    return out
