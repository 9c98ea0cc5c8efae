"""Choose TBH's CPU schedule on the harness's validation split (training side only).

Split: the harness's `hashbench.datasets.protocols.validation_split` of the protocol's training rows
(`_training_validation.training_validation`): ``--val-fraction`` of them (default 10 %, stratified by class
where the count divides evenly, seed ``--val-seed``) become validation queries and the rest; TBH (and, for
reference, ITQ) is fitted on the rest, which is also the validation database, and scored with the harness's
engine (mAP@K at the split's K, `validation_topk`, and mAP over the whole validation database). Neither the
protocol's queries nor its evaluation database are read. One JSON line per configuration goes to ``--out``
(and stdout), with the fit's wall time in seconds.

    HASHBENCH_DATA=... .venv/bin/python scripts/tbh_validation_study.py --dataset cifar10 --bits 64 \\
        --config '{"iterations": 300, "lr": 1e-4}' --config '{"iterations": 300, "lr": 1e-3}'
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
from hashbench.methods.registry import get_method  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--method", default="tbh")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    add_split_arguments(ap)
    ap.add_argument("--config", action="append", default=[], help="JSON hyper-parameters (repeatable)")
    ap.add_argument("--out", default="tbh_validation.jsonl")
    args = ap.parse_args()

    tv = training_validation(args.dataset, rule_from(args))
    X, y, k = tv.X, tv.y, tv.topk
    cls = get_method(args.method)
    for raw in args.config or ["{}"]:
        params = json.loads(raw)
        model = cls(args.bits, seed=args.seed, **params)
        start = time.perf_counter()
        model.fit(X[tv.fit])
        fit_s = time.perf_counter() - start
        db_codes = model.encode(X[tv.database])
        scores = evaluate(model.encode(X[tv.query]), db_codes, y[tv.query], y[tv.database], topk=k)
        row = {"dataset": args.dataset, "method": args.method, "bits": args.bits, "seed": args.seed,
               "params": params, "fit_s": round(fit_s, 1), **tv.describe(),
               f"val_map_at_{k}": round(scores[f"map_at_{k}"], 4), "val_map_all": round(scores["map_all"], 4)}
        hist = getattr(model, "history_", {})
        for key in ("reconstruction", "critic", "adv_binary", "adv_continuous"):
            if hist.get(key):
                row[f"last_{key}"] = round(hist[key][-1], 4)
        codes = np.unpackbits(db_codes, axis=1, count=args.bits, bitorder="little")
        row["bit_mean_min_max"] = [round(float(codes.mean(0).min()), 3), round(float(codes.mean(0).max()), 3)]
        emit(row, args.out)


if __name__ == "__main__":
    main()
