"""Choose the rotation of DeepBit's views on the harness's validation split (training side only).

``inscribed-crop`` (rotate, crop the largest same-aspect rectangle without empty corners, resize back: a
zoom of 1.08 at 5 degrees, 1.16 at 10) against the authors' ``black-corners`` (rotate at the image's own
scale, corners black). Split: the harness's `hashbench.datasets.protocols.validation_split` of the
protocol's training split (``--val-fraction`` of it, default 10 %, as validation queries; the other training
rows are both the fitting set and the validation database; the protocol's queries and evaluation database
are never read), built by `_training_validation.training_validation`. DeepBit at its defaults, views (of the
fitting rows only) as ``bench run`` computes them but for ``rotation``. The choice is read on mAP@all over
the validation database (``val_map_all``); mAP@K at the split's K (`validation_topk`) is reported beside it.
One JSON line per (rotation, bits, seed) to ``--out``, then the means per rotation.

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
from _training_validation import add_split_arguments, emit, rule_from, training_validation  # noqa: E402
from bench.evaluation import evaluate  # noqa: E402
from hashbench.methods.deepbit import DeepBit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--bits", type=int, nargs="+", default=[64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_split_arguments(ap)
    ap.add_argument("--out", default="deepbit_rotation_study.jsonl")
    args = ap.parse_args()

    tv = training_validation(args.dataset, rule_from(args))
    X, y, k = tv.X, tv.y, tv.topk
    scores: dict[str, list[float]] = {}
    for rotation in ("inscribed-crop", "black-corners"):
        start = time.perf_counter()
        views = np.asarray(tv.side("views", tv.fit, rotation=rotation)[0])
        views_s = time.perf_counter() - start
        for bits in args.bits:
            for seed in args.seeds:
                model = DeepBit(bits, seed=seed, device="cpu")
                start = time.perf_counter()
                model.fit(X[tv.fit], views=views)
                fit_s = time.perf_counter() - start
                res = evaluate(model.encode(X[tv.query]), model.encode(X[tv.database]), y[tv.query], y[tv.database],
                               topk=k)
                row = {"dataset": args.dataset, "rotation": rotation, "bits": bits, "seed": seed, **tv.describe(),
                       "views_s": round(views_s, 1), "fit_s": round(fit_s, 1),
                       "val_map_all": round(res["map_all"], 4), f"val_map_at_{k}": round(res[f"map_at_{k}"], 4)}
                scores.setdefault(rotation, []).append(res["map_all"])
                emit(row, args.out)
    for rotation, values in scores.items():
        row = {"dataset": args.dataset, "rotation": rotation, "mean_val_map_all": round(float(np.mean(values)), 4),
               "runs": len(values), **tv.describe()}
        emit(row, args.out)


if __name__ == "__main__":
    main()
