"""Choose GreedyHash's and BiHalf's CPU schedule on the harness's validation split (training side only).

Split: the harness's `hashbench.datasets.protocols.validation_split` of the protocol's training split
(`_training_validation.training_validation`; CIFAR-10: 5,000 rows, 500 per class): ``--val-fraction`` of
it (default 10 %, stratified by class where the count divides evenly, seed ``--val-seed``) become
validation queries, the rest is both the rows a configuration is fitted on and the validation database.
Neither the protocol's queries nor its evaluation database are read. Each configuration is fitted and
scored with the harness's engine (mAP@K at the split's K, `validation_topk`: the protocol's K scaled to
the validation database); one JSON line per configuration goes to ``--out``, with the fit time in seconds.

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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _training_validation import add_split_arguments, emit, fail, rule_from, training_validation  # noqa: E402
from bench.evaluation import evaluate  # noqa: E402
from bench.threads import set_threads  # noqa: E402
from hashbench.datasets.protocols import get_protocol  # noqa: E402
from hashbench.methods.registry import get_method  # noqa: E402

_CACHED = ("X", "y", "query", "database", "fit")


def load_split(args: argparse.Namespace) -> tuple[dict[str, np.ndarray], dict]:
    """The validation split's arrays (``_CACHED``) and its description (`TrainingValidation.describe`),
    from ``--train-cache`` when it holds this split, else computed (and written there when given).
    A cache made for another dataset, protocol or rule is a user error: one line on stderr, exit 2."""
    rule = rule_from(args)
    wanted = {"dataset": args.dataset, "protocol": get_protocol(args.dataset, args.protocol).name,
              "validation_rule": rule.as_dict()}
    cache = Path(args.train_cache) if args.train_cache else None
    if cache is not None and cache.exists():
        with np.load(cache) as cached:
            if "describe" not in cached:
                fail(f"--train-cache {cache} was written before the harness's validation split was used; "
                     "pass another path")
            describe = json.loads(str(cached["describe"]))
            found = {key: describe.get(key) for key in wanted}
            if found != wanted:
                fail(f"--train-cache {cache} holds the split {found}, not {wanted}; pass another path")
            return {key: cached[key] for key in _CACHED}, describe
    tv = training_validation(args.dataset, rule, protocol=args.protocol)
    arrays = {"X": tv.X, "y": tv.y, "query": tv.query, "database": tv.database, "fit": tv.fit}
    describe = {"dataset": args.dataset, **tv.describe()}
    if cache is not None:
        np.savez(cache, describe=json.dumps(describe), **arrays)
    return arrays, describe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--protocol", default=None)
    ap.add_argument("--method", required=True)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    add_split_arguments(ap)
    ap.add_argument("--config", action="append", default=[], help="JSON hyper-parameters (repeatable)")
    ap.add_argument("--out", default="cosine_hash_validation.jsonl")
    ap.add_argument("--threads", type=int, default=None, help="one thread count for everything (bench.threads)")
    ap.add_argument("--train-cache", default=None,
                    help=".npz keeping the validation split's features, labels and positions between invocations")
    args = ap.parse_args()

    set_threads(args.threads)
    cls = get_method(args.method)
    split, describe = load_split(args)
    X, y, query, database, fit = (split[key] for key in _CACHED)
    k = int(describe["validation_topk"])
    for raw in args.config or ["{}"]:
        params = json.loads(raw)
        model = cls(args.bits, seed=args.seed, **params)
        start = time.perf_counter()
        model.fit(X[fit])
        fit_s = time.perf_counter() - start
        scores = evaluate(model.encode(X[query]), model.encode(X[database]), y[query], y[database], topk=k)
        history = model.training_history()
        row = {"method": args.method, "bits": args.bits, "seed": args.seed, "params": params, **describe,
               f"val_map_at_{k}": round(scores[f"map_at_{k}"], 4), "fit_s": round(fit_s, 2),
               **{f"last_{key}": round(values[-1], 5) for key, values in history.items() if values}}
        emit(row, args.out)


if __name__ == "__main__":
    main()
