"""Choose the rotation of DeepBit's views on a validation split drawn from a protocol's training split only.

``inscribed-crop`` (rotate, crop the largest same-aspect rectangle without empty corners, resize back: a
zoom of 1.08 at 5 degrees, 1.16 at 10) against the authors' ``black-corners`` (rotate at the image's own
scale, corners black). Split: `_training_validation.training_validation` (validation queries and fitting
set both from the training split). DeepBit at its defaults, views at the defaults but ``rotation``. One JSON
line per (rotation, bits, seed) to ``--out``, then the means per rotation.

    HASHBENCH_DATA=... .venv/bin/python scripts/deepbit_rotation_study.py --dataset cifar10 --bits 64 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _training_validation import emit, training_validation  # noqa: E402
from bench.evaluation import evaluate  # noqa: E402
from hashbench.datasets.features import compute_side  # noqa: E402
from hashbench.methods.deepbit import DeepBit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--bits", type=int, nargs="+", default=[64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--val-seed", type=int, default=12345)
    ap.add_argument("--out", default="deepbit_rotation_study.jsonl")
    args = ap.parse_args()

    data, train, X, y, fit, val = training_validation(args.dataset, args.n_val, args.val_seed)
    scores: dict[str, list[float]] = {}
    for rotation in ("inscribed-crop", "black-corners"):
        start = time.perf_counter()
        views = np.asarray(compute_side(data, "views", indices=train[fit], rotation=rotation)[0])
        views_s = time.perf_counter() - start
        for bits in args.bits:
            for seed in args.seeds:
                model = DeepBit(bits, seed=seed, device="cpu")
                start = time.perf_counter()
                model.fit(X[fit], views=views)
                fit_s = time.perf_counter() - start
                res = evaluate(model.encode(X[val]), model.encode(X[fit]), y[val], y[fit], topk=1000)
                row = {"dataset": args.dataset, "rotation": rotation, "bits": bits, "seed": seed,
                       "n_fit": len(fit), "n_val": len(val), "views_s": round(views_s, 1), "fit_s": round(fit_s, 1),
                       "val_map_all": round(res["map_all"], 4), "val_map_at_1000": round(res["map_at_1000"], 4)}
                scores.setdefault(rotation, []).append(res["map_all"])
                emit(row, args.out)
    for rotation, values in scores.items():
        row = {"dataset": args.dataset, "rotation": rotation, "mean_val_map_all": round(float(np.mean(values)), 4),
               "runs": len(values)}
        emit(row, args.out)


if __name__ == "__main__":
    main()
