"""Choose LAGNH's settings on the harness's validation split (training side only), never on the protocol's
queries or evaluation database.

Split: the harness's `hashbench.datasets.protocols.validation_split` of the protocol's training split
(`_training_validation.training_validation`): ``--val-fraction`` of the training items (default 10 %,
stratified by class where the count divides evenly, seed ``--val-seed``) become validation queries; the
other training items are both the set LAGNH is fitted on and the validation database. The protocol's
queries and evaluation database are never read for the choice (their features are not even computed
unless ``--report-test``). Features and tags are those ``bench run`` computes (same extractor, same tag
settings). Each configuration is scored with the harness's engine: mAP@K at the split's K
(`validation_topk`: the protocol's K scaled to the validation database) and mAP@all. One JSON line per
configuration goes to ``--out``.

With ``--report-test`` each configuration is also fitted as ``bench run`` fits it (on the protocol's whole
training split) and scored on the protocol's own queries and database (``test_map_at_<K>``, the protocol's
K): reported beside the validation score, never used to choose.

    HASHBENCH_DATA=... .venv/bin/python scripts/lagnh_validation_study.py --dataset cifar10 --bits 64 \\
        --config '{"sigma": 1.0, "rec_target": "raw"}' --config '{"sigma": "median", "median_fraction": 0.1}'

``"tags": "same"`` in a configuration replaces the default tags by the feature network's own top-k
ImageNet classes (``tag_model="same"``, as ``--side-option tags.tag_model=same`` gives them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _training_validation import add_split_arguments, emit, rule_from, training_validation  # noqa: E402
from bench.evaluation import evaluate  # noqa: E402
from bench.prepare import prepare  # noqa: E402
from hashbench.methods.registry import get_method  # noqa: E402

TAG_SETTINGS = {"default": {}, "same": {"tag_model": "same"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--protocol", default=None)
    ap.add_argument("--method", default="lagnh")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    add_split_arguments(ap)
    ap.add_argument("--config", action="append", default=[], help="JSON hyper-parameters (repeatable)")
    ap.add_argument("--out", default="lagnh_validation.jsonl")
    ap.add_argument("--report-test", action="store_true",
                    help="also fit on the protocol's training split and score the protocol's queries "
                         "(reported, never used to choose)")
    args = ap.parse_args()

    cls = get_method(args.method)
    uses_tags = "tags" in cls.side_inputs
    tv = training_validation(args.dataset, rule_from(args), protocol=args.protocol)
    X, y, k = tv.X, tv.y, tv.topk
    everything = np.arange(len(tv.rows))
    tags: dict[str, np.ndarray] = {}  # tags of every training row, by tag source
    protocol_runs: dict[str, object] = {}  # `prepare`d protocol, by tag source (--report-test only)
    for raw in args.config or ["{}"]:
        params = json.loads(raw)
        tag_source = params.pop("tags", "default")
        if tag_source not in TAG_SETTINGS:
            ap.error(f'"tags" in --config must be one of {sorted(TAG_SETTINGS)}, got {tag_source!r}')
        side_fit, side_db, side_q = {}, {}, {}
        if uses_tags:
            if tag_source not in tags:
                tags[tag_source] = np.asarray(tv.side("tags", everything, **TAG_SETTINGS[tag_source])[0])
            side_fit, side_db, side_q = ({"tags": tags[tag_source][p]} for p in (tv.fit, tv.database, tv.query))
        model = cls(args.bits, seed=args.seed, **params)
        start = time.perf_counter()
        model.fit(X[tv.fit], **side_fit)
        fit_s = time.perf_counter() - start
        scores = evaluate(model.encode(X[tv.query], **side_q), model.encode(X[tv.database], **side_db),
                          y[tv.query], y[tv.database], topk=k)
        info = model.run_info()
        row = {"dataset": args.dataset, "method": args.method, "bits": args.bits, "seed": args.seed,
               "tags": tag_source, "params": params, **tv.describe(), "fit_s": round(fit_s, 1),
               f"val_map_at_{k}": round(scores[f"map_at_{k}"], 4), "val_map_all": round(scores["map_all"], 4),
               **{key: info[key] for key in ("epochs_run", "graph_offdiag_mean", "graph_self_weight") if key in info}}
        hist = getattr(model, "history_", {})
        for key in ("loss_rec", "loss_cls", "loss_quant", "loss_adv"):
            if hist.get(key):
                row[f"last_{key}"] = round(hist[key][-1], 4)
        if args.report_test:
            row.update(test_scores(args, cls, params, tag_source, protocol_runs))
        emit(row, args.out)


def test_scores(args: argparse.Namespace, cls: type, params: dict, tag_source: str, protocol_runs: dict) -> dict:
    """``{"test_map_at_<K>": ..., "test_fit_s": ...}`` of a model with ``params`` fitted as ``bench run`` fits
    it (the protocol's training split) and scored on the protocol's queries and database at its K. Only
    reported: nothing here feeds a choice."""
    if tag_source not in protocol_runs:
        side_options = {"tags": TAG_SETTINGS[tag_source]} if "tags" in cls.side_inputs else None
        protocol_runs[tag_source] = prepare(args.dataset, protocol=args.protocol, side_inputs=tuple(cls.side_inputs),
                                            side_options=side_options)
    prep = protocol_runs[tag_source]
    model = cls(args.bits, seed=args.seed, **params)
    start = time.perf_counter()
    model.fit(prep.features["train"], **prep.side_for(cls, "train"))
    fit_s = time.perf_counter() - start
    topk = prep.protocol.topk
    test = evaluate(model.encode(prep.features["query"], **prep.side_for(cls, "query")),
                    model.encode(prep.features["database"], **prep.side_for(cls, "database")),
                    prep.labels["query"], prep.labels["database"], topk=topk)
    return {f"test_map_at_{topk}": round(test[f"map_at_{topk}"], 4), "test_fit_s": round(fit_s, 1)}


if __name__ == "__main__":
    main()
