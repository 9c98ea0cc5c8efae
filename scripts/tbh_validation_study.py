"""Choose TBH's CPU schedule on a validation split of a protocol's training rows only.

The protocol's training rows are split, stratified by class with seed ``--val-seed``, into
``--n-val`` validation queries and the rest; TBH (and, for reference, ITQ) is fitted on the rest,
which is also the validation database, and scored with the harness's engine (mAP@1000 and mAP over
the whole validation database). Neither the protocol's queries nor its database are read. One JSON
line per configuration goes to ``--out`` (and stdout), with the fit's wall time in seconds.

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
from bench.evaluation import evaluate  # noqa: E402
from bench.prepare import prepare  # noqa: E402
from hashbench.methods.registry import get_method  # noqa: E402


def training_validation_split(y: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into the training rows) of the validation queries and of the rest, stratified by class."""
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    per = n_val // len(classes)
    val = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), per, replace=False) for c in classes]))
    return val, np.setdiff1d(np.arange(len(y)), val)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--method", default="tbh")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--val-seed", type=int, default=12345)
    ap.add_argument("--config", action="append", default=[], help="JSON hyper-parameters (repeatable)")
    ap.add_argument("--out", default="tbh_validation.jsonl")
    args = ap.parse_args()

    prep = prepare(args.dataset)
    X, y = prep.features["train"], prep.labels["train"]
    val, rest = training_validation_split(y, args.n_val, args.val_seed)
    cls = get_method(args.method)
    for raw in args.config or ["{}"]:
        params = json.loads(raw)
        model = cls(args.bits, seed=args.seed, **params)
        start = time.perf_counter()
        model.fit(X[rest])
        fit_s = time.perf_counter() - start
        scores = evaluate(model.encode(X[val]), model.encode(X[rest]), y[val], y[rest], topk=1000)
        row = {"dataset": args.dataset, "method": args.method, "bits": args.bits, "seed": args.seed,
               "params": params, "fit_s": round(fit_s, 1), "n_fit": len(rest), "n_val": len(val),
               "val_map_at_1000": round(scores["map_at_1000"], 4), "val_map_all": round(scores["map_all"], 4)}
        hist = getattr(model, "history_", {})
        for key in ("reconstruction", "critic", "adv_binary", "adv_continuous"):
            if hist.get(key):
                row[f"last_{key}"] = round(hist[key][-1], 4)
        codes = np.unpackbits(model.encode(X[rest]), axis=1, count=args.bits, bitorder="little")
        row["bit_mean_min_max"] = [round(float(codes.mean(0).min()), 3), round(float(codes.mean(0).max()), 3)]
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
