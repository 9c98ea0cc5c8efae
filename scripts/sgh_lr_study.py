"""Choose SGH's learning-rate schedule on the harness's validation split (training side only).

The released demo (``doubling/Stochastic_Generative_Hashing``) builds Adam with lr 1e-2 and afterwards
halves a Python float ``if i % 2000 == 0``, which never reaches the optimiser: the code trains at a
constant 1e-2. The halving's literal intent, counted from ``i = 0``, would start at 5e-3 and halve
every 2,000 iterations. The harness's former default applied the halving starting at 1e-2: neither.
This script scores the three on the training split alone, with the harness's
`hashbench.datasets.protocols.validation_split` (`_training_validation.training_validation`):
``--val-fraction`` of the protocol's training items (default 10 %; seed ``--val-seed``) become validation
queries, the other training items are the fitting set and the validation database; the protocol's queries
and evaluation database are never read (their features are not even computed). The choice is read on
mAP@all over the validation database (``val_map_all``); mAP@K at the split's K (`validation_topk`) is
reported beside it. One JSON line per (schedule, bits, seed) goes to ``--out``; the last lines are the
means per schedule. Rows of an earlier run in ``--out`` are reused only when they were made on the same
split (dataset, rule).

    HASHBENCH_DATA=... .venv/bin/python scripts/sgh_lr_study.py --dataset cifar10 --bits 32 64 --seeds 0 1 2
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
from bench.evaluation import evaluate  # noqa: E402
from _training_validation import add_split_arguments, emit, rule_from, training_validation  # noqa: E402
from hashbench.methods.sgh import DEMO_HALVE_EVERY_EPOCHS, SGH  # noqa: E402

SCHEDULES = {
    "released-constant": {"lr": 1e-2, "halve_every_epochs": None},
    "literal-intent": {"lr": 5e-3, "halve_every_epochs": DEMO_HALVE_EVERY_EPOCHS},
    "former-default": {"lr": 1e-2, "halve_every_epochs": DEMO_HALVE_EVERY_EPOCHS},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_split_arguments(ap)
    ap.add_argument("--schedules", nargs="+", choices=list(SCHEDULES), default=list(SCHEDULES))
    ap.add_argument("--out", default="sgh_lr_study.jsonl")
    args = ap.parse_args()

    tv = training_validation(args.dataset, rule_from(args))
    X, y, k = tv.X, tv.y, tv.topk
    same_split = {key: value for key, value in tv.describe().items() if key in ("split", "validation_rule", "protocol")}
    done = {}  # rows of an earlier, interrupted run on the same split with the same --out are kept, not recomputed
    if Path(args.out).exists():
        for line in Path(args.out).read_text().splitlines():
            row = json.loads(line)
            if "seed" in row and row.get("dataset") == args.dataset and all(
                    row.get(key) == value for key, value in same_split.items()):
                done[(row["schedule"], row["bits"], row["seed"])] = row["val_map_all"]
    scores: dict[str, list[float]] = {}
    for name, params in SCHEDULES.items():
        if name not in args.schedules:
            continue
        for bits in args.bits:
            for seed in args.seeds:
                if (name, bits, seed) in done:
                    scores.setdefault(name, []).append(done[(name, bits, seed)])
                    continue
                model = SGH(bits, seed=seed, device="cpu", **params)
                start = time.perf_counter()
                model.fit(X[tv.fit])
                fit_s = time.perf_counter() - start
                res = evaluate(model.encode(X[tv.query]), model.encode(X[tv.database]), y[tv.query], y[tv.database],
                               topk=k)
                row = {"dataset": args.dataset, "schedule": name, "params": params, "bits": bits, "seed": seed,
                       **tv.describe(), "fit_s": round(fit_s, 1),
                       "val_map_all": round(res["map_all"], 4), f"val_map_at_{k}": round(res[f"map_at_{k}"], 4)}
                scores.setdefault(name, []).append(res["map_all"])
                emit(row, args.out)
    for name, values in scores.items():
        row = {"dataset": args.dataset, "schedule": name, "mean_val_map_all": round(float(np.mean(values)), 4),
               "runs": len(values), **tv.describe()}
        emit(row, args.out)


if __name__ == "__main__":
    main()
