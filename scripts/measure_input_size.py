"""Input size of `effnet-lite0` for one dataset: extraction time and ITQ retrieval quality per size.

Uses the dataset's official test part only (Fashion-MNIST: 10,000 images): 1,000 class-stratified
queries, the other images are the database, ITQ trained on 5,000 of them; mAP@1000 by the harness's
engine, mean of ``--seeds``. Features go through the project's cache (``$HASHBENCH_DATA``), so the
timing of a size whose features are already cached is not a cold timing (it says so).

    HASHBENCH_DATA=... .venv/bin/python scripts/measure_input_size.py --dataset fashion-mnist --sizes 64 96 128
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.evaluation import evaluate  # noqa: E402
from hashbench.datasets.base import TEST  # noqa: E402
from hashbench.datasets.features.effnet import extract_effnet_lite0  # noqa: E402
from hashbench.datasets.registry import load_dataset  # noqa: E402
from hashbench.methods.registry import get_method  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    ap.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()

    data = load_dataset(args.dataset)
    rows = np.flatnonzero(np.asarray(data.partition) == TEST)
    y = np.asarray(data.labels)[rows]
    itq = get_method("itq")
    for size in args.sizes:
        start = time.perf_counter()
        X, info = extract_effnet_lite0(data, indices=rows, input_size=size)
        seconds = time.perf_counter() - start
        scores = {b: [] for b in args.bits}
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            q = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), 100, replace=False) for c in np.unique(y)]))
            db = np.setdiff1d(np.arange(len(rows)), q)
            train = rng.choice(db, 5000, replace=False)
            for b in args.bits:
                model = itq(b, seed=seed).fit(X[train])
                scores[b].append(evaluate(model.encode(X[q]), model.encode(X[db]), y[q], y[db], topk=1000)["map_at_1000"])
        cells = "  ".join(f"ITQ-{b} {np.mean(v):.4f}" for b, v in scores.items())
        print(f"{args.dataset} {size:4d} px: {len(rows)} images in {seconds:6.1f} s "
              f"({len(rows) / seconds:6.1f} img/s wall, cache {info['features_cache']})  {cells}", flush=True)


if __name__ == "__main__":
    main()
