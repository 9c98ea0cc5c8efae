"""Choose LAGNH's settings on a validation split of the training side of a protocol, never its queries.

The protocol's queries are set aside; from its database minus its training items, ``--n-val`` items
(stratified by class, seed ``--val-seed``) become validation queries, and the database minus those is
the validation database (training items included, as in the protocol). LAGNH is fitted on the
protocol's training split exactly as ``bench run`` would (same features, same tags) and scored with the
harness's engine (mAP@1000). One JSON line per configuration goes to ``--out``. With ``--report-test``
the protocol's own queries are encoded and scored too (``test_map_at_1000``): reported, never used to
choose (the schedule comparison of the issue is stated on the protocol's queries).

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
from bench.evaluation import evaluate  # noqa: E402
from bench.prepare import prepare  # noqa: E402
from hashbench.methods.registry import get_method  # noqa: E402


def validation_split(labels: dict, split, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into the protocol's database) of validation queries and of the validation database."""
    db, train = split.database, split.train
    pool = np.flatnonzero(~np.isin(db, train))
    y = labels["database"]
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    per = n_val // len(classes)
    val = np.sort(np.concatenate([rng.choice(pool[y[pool] == c], per, replace=False) for c in classes]))
    rest = np.setdiff1d(np.arange(len(db)), val)
    return val, rest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--protocol", default=None)
    ap.add_argument("--method", default="lagnh")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--val-seed", type=int, default=12345)
    ap.add_argument("--config", action="append", default=[], help="JSON hyper-parameters (repeatable)")
    ap.add_argument("--out", default="lagnh_validation.jsonl")
    ap.add_argument("--report-test", action="store_true", help="also score the protocol's queries")
    args = ap.parse_args()

    cls = get_method(args.method)
    prep = prepare(args.dataset, protocol=args.protocol, side_inputs=tuple(cls.side_inputs))
    val, rest = validation_split(prep.labels, prep.split, args.n_val, args.val_seed)
    Xtr, Xdb = prep.features["train"], prep.features["database"]
    ydb = prep.labels["database"]
    tags = prep.side.get("tags", {})
    same_tags = None
    for raw in args.config or ["{}"]:
        params = json.loads(raw)
        tag_source = params.pop("tags", "default")
        side_tr, side_db, side_q = {}, {}, {}
        if "tags" in cls.side_inputs:
            if tag_source == "same" and same_tags is None:
                same_tags = prepare(args.dataset, protocol=args.protocol, side_inputs=("tags",),
                                    side_options={"tags": {"tag_model": "same"}}).side["tags"]
            source = same_tags if tag_source == "same" else tags
            side_tr, side_db, side_q = ({"tags": source[s]} for s in ("train", "database", "query"))
        model = cls(args.bits, seed=args.seed, **params)
        start = time.perf_counter()
        model.fit(Xtr, **side_tr)
        fit_s = time.perf_counter() - start
        codes = model.encode(Xdb, **side_db)
        scores = evaluate(codes[val], codes[rest], ydb[val], ydb[rest], topk=1000)
        if args.report_test:
            qcodes = model.encode(prep.features["query"], **side_q)
            test = evaluate(qcodes, codes, prep.labels["query"], ydb, topk=1000)
        info = model.run_info()
        row = {"dataset": args.dataset, "method": args.method, "bits": args.bits, "seed": args.seed,
               "tags": tag_source, "params": params, "fit_s": round(fit_s, 1),
               "val_map_at_1000": round(scores["map_at_1000"], 4), "val_map_all": round(scores["map_all"], 4),
               **({"test_map_at_1000": round(test["map_at_1000"], 4)} if args.report_test else {}),
               **{k: info[k] for k in ("epochs_run", "graph_offdiag_mean", "graph_self_weight") if k in info}}
        hist = getattr(model, "history_", {})
        for key in ("loss_rec", "loss_cls", "loss_quant", "loss_adv"):
            if hist.get(key):
                row[f"last_{key}"] = round(hist[key][-1], 4)
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
