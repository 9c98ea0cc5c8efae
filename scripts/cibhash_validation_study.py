"""Choose CIBHash's CPU schedule on the harness's validation split (training side only).

Split: the harness's `hashbench.datasets.protocols.validation_split` of the protocol's training rows
(`_training_validation.training_validation`): ``--val-fraction`` of them (default 10 %, seed ``--val-seed``)
become validation queries, the other rows are what CIBHash is fitted on and the validation database.
Neither the protocol's queries nor its evaluation database is read (their features are not even
computed). The side input ``aug_views`` is computed (or read from the cache) for the fitting rows with the
same settings ``bench run`` uses; its wall and CPU time are printed (the one-off cost of the pool). One JSON
line per configuration goes to ``--out``, with the fit time (wall and CPU) and the validation mAP@K at the
split's K (`validation_topk`) and mAP@all by the harness's engine.

    HASHBENCH_DATA=... .venv/bin/python scripts/cibhash_validation_study.py --bits 64 \\
        --config '{"epochs": 10}' --config '{"schedule": "authors"}'
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _training_validation import add_split_arguments, emit, rule_from, training_validation  # noqa: E402
from bench.evaluation import evaluate  # noqa: E402
from hashbench.methods.registry import get_method  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    add_split_arguments(ap)
    ap.add_argument("--config", action="append", default=[], help="JSON hyper-parameters (repeatable)")
    ap.add_argument("--baseline", action="append", default=[], help="another method scored the same way, e.g. itq")
    ap.add_argument("--out", default="cibhash_validation.jsonl")
    ap.add_argument("--threads", type=int, default=None, help="torch (and ONNX Runtime) threads; default torch's")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    tv = training_validation(args.dataset, rule_from(args))
    print(f"features of {len(tv.rows)} training rows: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    X, y, k = tv.X, tv.y, tv.topk
    start, cpu = time.perf_counter(), time.process_time()
    views, views_info = tv.side("aug_views", tv.fit)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"aug_views": list(views.shape), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                      "cache": views_info["cache"]}), flush=True)
    runs = [("cibhash", json.loads(c)) for c in args.config or ["{}"]]
    runs += [(name, {}) for name in args.baseline]
    for name, params in runs:
        cls = get_method(name)
        model = cls(args.bits, seed=args.seed, **params)
        side = {"aug_views": views} if "aug_views" in cls.side_inputs else {}
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(X[tv.fit], **side)
        fit_s, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
        scores = evaluate(model.encode(X[tv.query]), model.encode(X[tv.database]), y[tv.query], y[tv.database],
                          topk=k)
        row = {"dataset": args.dataset, "method": name, "bits": args.bits, "seed": args.seed, "params": params,
               **tv.describe(),
               "resolved": model.resolved_params(), "fit_s": round(fit_s, 1), "fit_cpu_s": round(fit_cpu, 1),
               f"val_map_at_{k}": round(scores[f"map_at_{k}"], 4), "val_map_all": round(scores["map_all"], 4)}
        hist = getattr(model, "history_", {})
        for key in ("loss", "contrastive", "kl"):
            if hist.get(key):
                row[f"last_{key}"] = round(hist[key][-1], 4)
        emit(row, args.out)


if __name__ == "__main__":
    main()
