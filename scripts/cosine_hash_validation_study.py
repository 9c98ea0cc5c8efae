"""Choose GreedyHash's and BiHalf's CPU schedule on a validation split drawn from the training split only.

The protocol's training split (CIFAR-10: 5,000 rows, 500 per class) is divided, stratified by its own
labels (seed ``--val-seed``), into ``--n-val`` validation queries and the rest, which is both the rows
a configuration is fitted on and the validation database. Neither the protocol's queries nor its
database outside the training split are read. Each configuration is fitted and scored with the
harness's engine (mAP@1000, the protocol's K); one JSON line per configuration goes to ``--out``,
with the fit time in seconds.

    HASHBENCH_DATA=... .venv/bin/python scripts/cosine_hash_validation_study.py --method bihalf \\
        --bits 64 --config '{"epochs": 30}' --config '{"epochs": 30, "lr": 1e-3}'
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
from bench.threads import set_threads  # noqa: E402
from hashbench.methods.registry import get_method  # noqa: E402


def training_validation_split(labels: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into the training split) of the validation queries and of the rest, stratified."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = n_val // len(classes)
    val = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per, replace=False) for c in classes]))
    return val, np.setdiff1d(np.arange(len(labels)), val)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--protocol", default=None)
    ap.add_argument("--method", required=True)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--val-seed", type=int, default=12345)
    ap.add_argument("--config", action="append", default=[], help="JSON hyper-parameters (repeatable)")
    ap.add_argument("--out", default="cosine_hash_validation.jsonl")
    ap.add_argument("--threads", type=int, default=None, help="one thread count for everything (bench.threads)")
    ap.add_argument("--train-cache", default=None,
                    help=".npz keeping the training split's features, labels and K between invocations")
    args = ap.parse_args()

    set_threads(args.threads)
    cls = get_method(args.method)
    if args.train_cache and Path(args.train_cache).exists():
        with np.load(args.train_cache) as cached:
            X, y, k = cached["X"], cached["y"], int(cached["k"])
    else:
        prep = prepare(args.dataset, protocol=args.protocol)
        X, y, k = prep.features["train"], prep.labels["train"], int(prep.protocol.topk)
        if args.train_cache:
            np.savez(args.train_cache, X=X, y=y, k=k)
    val, rest = training_validation_split(y, args.n_val, args.val_seed)
    for raw in args.config or ["{}"]:
        params = json.loads(raw)
        model = cls(args.bits, seed=args.seed, **params)
        start = time.perf_counter()
        model.fit(X[rest])
        fit_s = time.perf_counter() - start
        scores = evaluate(model.encode(X[val]), model.encode(X[rest]), y[val], y[rest], topk=k)
        history = model.training_history()
        row = {"method": args.method, "bits": args.bits, "seed": args.seed, "params": params,
               f"val_map_at_{k}": round(scores[f"map_at_{k}"], 4), "fit_s": round(fit_s, 2),
               **{f"last_{key}": round(values[-1], 5) for key, values in history.items() if values}}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
