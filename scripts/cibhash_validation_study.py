"""Choose CIBHash's CPU schedule on a validation split drawn from the protocol's training split only.

The protocol's training rows are split in two (stratified by class, seed ``--val-seed``): ``--n-val``
rows become validation queries, the other rows are what CIBHash is fitted on and the validation
database. Neither the protocol's queries nor its database outside the training split is read (their
features are not even computed). The side input ``aug_views`` is computed (or read from the cache)
for the training rows with the same settings ``bench run`` uses; its wall and CPU time are printed
(the one-off cost of the pool). One JSON line per configuration goes to ``--out``, with the fit time
(wall and CPU) and the validation mAP@1000 by the harness's engine.

    HASHBENCH_DATA=... .venv/bin/python scripts/cibhash_validation_study.py --bits 64 \\
        --config '{"epochs": 10}' --config '{"schedule": "authors"}'
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
from hashbench.datasets.features import compute_features, compute_side, inherited_side_settings  # noqa: E402
from hashbench.datasets.protocols import get_protocol, make_split  # noqa: E402
from hashbench.datasets.registry import load_dataset  # noqa: E402
from hashbench.methods.registry import get_method  # noqa: E402


def split_training_rows(labels: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into the training rows) of the validation queries and of the rest."""
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    per = n_val // len(classes)
    val = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per, replace=False) for c in classes]))
    return val, np.setdiff1d(np.arange(len(labels)), val)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--val-seed", type=int, default=12345)
    ap.add_argument("--config", action="append", default=[], help="JSON hyper-parameters (repeatable)")
    ap.add_argument("--baseline", action="append", default=[], help="another method scored the same way, e.g. itq")
    ap.add_argument("--out", default="cibhash_validation.jsonl")
    ap.add_argument("--threads", type=int, default=None, help="torch (and ONNX Runtime) threads; default torch's")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    data = load_dataset(args.dataset)
    split = make_split(get_protocol(args.dataset), data)
    train = np.sort(split.train)
    start, cpu = time.perf_counter(), time.process_time()
    X, feat_info = compute_features(data, None, indices=train)
    print(f"features of {len(train)} training rows: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    start, cpu = time.perf_counter(), time.process_time()
    views, views_info = compute_side(data, "aug_views", indices=train,
                                     **inherited_side_settings("aug_views", feat_info))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"aug_views": list(views.shape), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                      "cache": views_info["cache"]}), flush=True)
    y = data.labels[train]
    val, rest = split_training_rows(y, args.n_val, args.val_seed)
    runs = [("cibhash", json.loads(c)) for c in args.config or ["{}"]]
    runs += [(name, {}) for name in args.baseline]
    for name, params in runs:
        cls = get_method(name)
        model = cls(args.bits, seed=args.seed, **params)
        side = {"aug_views": views[rest]} if "aug_views" in cls.side_inputs else {}
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(X[rest], **side)
        fit_s, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
        db = model.encode(X[rest])
        scores = evaluate(model.encode(X[val]), db, y[val], y[rest], topk=1000)
        row = {"method": name, "bits": args.bits, "seed": args.seed, "params": params,
               "resolved": model.resolved_params(), "fit_s": round(fit_s, 1), "fit_cpu_s": round(fit_cpu, 1),
               "val_map_at_1000": round(scores["map_at_1000"], 4), "val_map_all": round(scores["map_all"], 4)}
        hist = getattr(model, "history_", {})
        for key in ("loss", "contrastive", "kl"):
            if hist.get(key):
                row[f"last_{key}"] = round(hist[key][-1], 4)
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
