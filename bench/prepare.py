"""Turn a dataset name and protocol into the arrays every method sees: same data, same splits,
same features, same side inputs for everyone; with the facts the record keeps about them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.errors import UsageError
from bench.record import DataDigests, data_digests, data_setting
from hashbench.datasets import Protocol, Split, compute_features, get_protocol, load_dataset, make_split
from hashbench.datasets.protocols import VALIDATION_RULE, split_digest, validation_split, validation_topk

SPLITS = ("train", "database", "query")


@dataclass
class Prepared:
    """What every method of a sweep is given, and what the record says about it.

    * ``features[split]``: ``(n_split, d)`` float32; ``labels[split]``: ``(n_split,)`` class ids or
      ``(n_split, C)`` multi-hot; ``side[input][split]``: side inputs (``fit``-only inputs: ``"train"``
      only). Splits are ``"train"``, ``"database"``, ``"query"``.
    * ``data``: facts of the data and split (logged as ``data.<name>``): dataset, protocol and its digest,
      the split's content digest, sizes, K, overlap counts, where the data came from, loader options.
    * ``features_info``: the extractor's facts (``features.<name>``); ``side_info[input]``: a side
      input's facts (``side.<input>.<name>``).
    * ``digests``: hashes of the arrays above, for the data fingerprint of each run (`bench.record`).
    """

    dataset: str
    protocol: Protocol
    split: Split
    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    side: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    features_info: dict[str, Any] = field(default_factory=dict)
    side_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    digests: DataDigests | None = None

    def sizes(self) -> dict[str, int]:
        return {f"n_{s}": int(self.features[s].shape[0]) for s in ("query", "database", "train")}

    def side_for(self, cls: type, split: str) -> dict[str, np.ndarray]:
        """The side inputs ``cls`` reads for ``split``: all of them for training, the non-fit-only ones else."""
        names = cls.side_inputs if split == "train" else [n for n in cls.side_inputs
                                                          if n not in cls.fit_only_side_inputs]
        return {n: self.side[n][split] for n in names}

    def fingerprint(self, cls: type) -> str:
        """The data fingerprint of a run of ``cls``: the base arrays and the side-input splits it reads."""
        reads = {n: [s for s in SPLITS if s == "train" or n not in cls.fit_only_side_inputs]
                 for n in cls.side_inputs}
        return self.digests.fingerprint(reads)

    def data_setting(self, cls: type) -> str:
        """What the data of a run of ``cls`` are apart from the split (`bench.record.data_setting`)."""
        return data_setting(self.data, self.features_info, {n: self.side_info[n] for n in cls.side_inputs})


def _finite_or_raise(X: np.ndarray, what: str) -> None:
    bad = int(X.size - np.count_nonzero(np.isfinite(X)))
    if bad:
        raise UsageError(f"{what} contain {bad} NaN or infinite values out of {X.size}; "
                         "fix the feature file or choose another --features")


def prepare(dataset: str, *, protocol: str | None = None, features: str | None = None,
            data_root: str | None = None, side_inputs: tuple[str, ...] = (),
            fit_only_side: tuple[str, ...] = (), allow_pickle: bool = False,
            data_options: dict[str, Any] | None = None,
            side_options: dict[str, dict[str, Any]] | None = None,
            feature_options: dict[str, Any] | None = None,
            allow_query_overlap: bool = False, split_seed: int | None = None,
            validation: bool = False) -> Prepared:
    """Load, split and featurise ``dataset``; compute the named side inputs; hash what was prepared.

    ``side_options`` holds settings per side input (``{"tags": {"k": 5}}``); settings a side input
    takes from the features (views follow the extractor and its input size) are the feature layer's
    (`datasets.features.inherited_side_settings`). ``feature_options`` are the extractor's settings
    (``{"input_size": 128}``), over the dataset's defaults. Features are extracted only for the items
    the protocol uses. ``fit_only_side`` inputs (e.g. DeepBit's rotated ``views``) are computed for the
    training split only. Queries that are also database or training items are refused unless
    ``allow_query_overlap``. ``split_seed`` draws the protocol's split with another seed (None: the
    protocol's own seed); it is recorded as ``data.split_seed`` and changes the split's digest.
    ``validation`` replaces the split by its validation split (`datasets.protocols.validation_split`:
    queries and database carved from the training split only; the protocol's queries and evaluation
    database are never featurised nor returned) and the protocol by ``<name>-validation`` whose K is
    `datasets.protocols.validation_topk`; the rule is recorded as ``data.validation.*``.

    Raises `datasets.DataError` (missing or malformed data, overlapping splits) or `UsageError` (NaN
    features; a split seed for a protocol that uses the dataset's own split).
    """
    from hashbench.datasets.features import compute_side, inherited_side_settings

    options = dict(data_options or {})
    if allow_pickle:
        options["allow_pickle"] = True
    data = load_dataset(dataset, data_root=data_root, **options)
    proto = get_protocol(dataset, protocol)
    if split_seed is not None and split_seed != proto.seed:
        if proto.predefined:
            raise UsageError(f"protocol {proto.name!r} uses the dataset's own split; --split-seeds does not apply")
        proto = dataclasses.replace(proto, seed=int(split_seed))
    split = make_split(proto, data, allow_query_overlap=allow_query_overlap)
    validation_info: dict[str, Any] = {}
    if validation:
        parent, parent_split = proto, split
        split = validation_split(parent, parent_split, data, VALIDATION_RULE)
        proto = dataclasses.replace(parent, name=f"{parent.name}-validation",
                                    topk=validation_topk(parent, parent_split, split),
                                    description=f"validation split of protocol {parent.name!r}")
        validation_info = {"validation.of": parent.name, "validation.of_digest": parent.digest(),
                           **{f"validation.{k}": v for k, v in VALIDATION_RULE.as_dict().items()}}
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
        features_info=dict(feat_info),
    )
    for name in side_inputs:
        wanted = ("train",) if name in fit_only_side else SPLITS
        idx = np.unique(np.concatenate([getattr(split, s) for s in wanted]))
        settings = {**dict((side_options or {}).get(name, {})), **inherited_side_settings(name, feat_info)}
        values, info = compute_side(data, name, indices=idx, **settings)
        pos = {s: np.searchsorted(idx, getattr(split, s)) for s in wanted}
        out.side[name] = {s: np.asarray(values)[pos[s]] for s in wanted}
        out.side_info[name] = dict(info)
    out.data = {
        "dataset": dataset, "protocol": proto.name, "protocol_digest": proto.digest(),
        "protocol_spec": proto.as_dict(), "split_digest": split_digest(split, data), "topk": proto.topk,
        "split_seed": proto.seed,
        **out.sizes(), "source": data.source, "allow_query_overlap": bool(allow_query_overlap),
        **{f"overlap.{k}": int(v) for k, v in split.overlap.items()},
        **{f"option.{k}": v for k, v in options.items()}, **validation_info,
    }
    out.digests = data_digests(out.features, out.labels, {s: getattr(split, s) for s in SPLITS}, out.side)
    return out
