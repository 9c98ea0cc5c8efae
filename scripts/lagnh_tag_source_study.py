"""Which tags LAGNH gets on a dataset: EfficientNet-Lite2's (a second network pass) or the feature
network's own classifier (free once the features exist). Scored on the dataset's official *test* part only
(Fashion-MNIST: 10,000 images): 1,000 class-stratified queries, the rest is the database, LAGNH fitted on
5,000 database items; mAP@1000 by the harness's engine. The protocol's queries are never touched.

    HASHBENCH_DATA=... .venv/bin/python scripts/lagnh_tag_source_study.py --dataset fashion-mnist --input-size 96
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
from hashbench.datasets.base import TEST  # noqa: E402
from hashbench.datasets.features.effnet import extract_effnet_lite0  # noqa: E402
from hashbench.datasets.features.side import compute_side  # noqa: E402
from hashbench.datasets.registry import load_dataset  # noqa: E402
from hashbench.methods.registry import get_method  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag-models", nargs="+", default=["same", "efficientnet-lite2"])
    ap.add_argument("--params", default="{}", help="LAGNH hyper-parameters as JSON")
    args = ap.parse_args()

    data = load_dataset(args.dataset)
    rows = np.flatnonzero(np.asarray(data.partition) == TEST)
    y = np.asarray(data.labels)[rows]
    X, _ = extract_effnet_lite0(data, indices=rows, input_size=args.input_size)
    rng = np.random.default_rng(args.seed)
    q = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), 100, replace=False) for c in np.unique(y)]))
    db = np.setdiff1d(np.arange(len(rows)), q)
    train = np.sort(rng.choice(db, 5000, replace=False))
    for tag_model in args.tag_models:
        start = time.perf_counter()
        P, info = compute_side(data, "tags", indices=rows, tag_model=tag_model,
                               features_input_size=args.input_size)
        tag_s = time.perf_counter() - start
        model = get_method("lagnh")(args.bits, seed=args.seed, **json.loads(args.params))
        start = time.perf_counter()
        model.fit(X[train], tags=P[train])
        fit_s = time.perf_counter() - start
        score = evaluate(model.encode(X[q], tags=P[q]), model.encode(X[db], tags=P[db]), y[q], y[db], topk=1000)
        print(json.dumps({"dataset": args.dataset, "input_size": args.input_size, "tag_model": tag_model,
                          "tags_input_size": info["tags_input_size"], "tag_seconds": round(tag_s, 1),
                          "fit_s": round(fit_s, 1), "params": json.loads(args.params), "bits": args.bits,
                          "map_at_1000": round(score["map_at_1000"], 4)}), flush=True)


if __name__ == "__main__":
    main()
