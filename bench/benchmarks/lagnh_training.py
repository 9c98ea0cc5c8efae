"""Training cost of LAGNH's default schedule against the authors' schedule, measured in one run.

Data of the `cifar10` protocol's shape: 5,000 training items with 1,280-d features (EfficientNet-Lite0's
width, ReLU-like values) and 1,000-d multi-hot tags with 10 ones per row (ImageNet top-10), 64 bits.
Both schedules run the same code on the same data in the same process:

* ``epoch_ratio``: seconds per epoch of each schedule (best of ``repeat`` one-epoch fits, which also
  covers the fixed cost of building the model) times its epoch count, default over authors'. Early
  stopping can only shorten the default, so this bounds its cost from above;
* with ``full=True`` also the wall time of one complete default fit, and the authors' schedule projected
  from its per-epoch time (300 epochs, no early stopping in that preset).

    .venv/bin/python -m bench.benchmarks.lagnh_training [--threads 2] [--full]
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

SHAPE = {"n": 5000, "d": 1280, "n_tags": 1000, "tags_per_row": 10, "n_bits": 64}


def synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.maximum(rng.standard_normal((SHAPE["n"], SHAPE["d"])), 0).astype(np.float32)
    P = np.zeros((SHAPE["n"], SHAPE["n_tags"]), np.float32)
    cols = np.argsort(rng.random((SHAPE["n"], SHAPE["n_tags"])), axis=1)[:, :SHAPE["tags_per_row"]]
    np.put_along_axis(P, cols, 1.0, axis=1)
    return X, P


def _fit_seconds(X: np.ndarray, P: np.ndarray, **params: Any) -> float:
    from hashbench.methods.lagnh import LAGNH

    start = time.perf_counter()
    LAGNH(SHAPE["n_bits"], device="cpu", **params).fit(X, tags=P)
    return time.perf_counter() - start


def measure(repeat: int = 2, full: bool = False) -> dict[str, float]:
    from hashbench.methods.lagnh import SCHEDULES

    X, P = synthetic()
    out: dict[str, float] = {}
    for name in ("fast", "authors"):
        epochs = SCHEDULES[name]["epochs"]
        per_epoch = min(_fit_seconds(X, P, schedule=name, epochs=1) for _ in range(repeat))
        out[f"{name}_epochs"] = epochs
        out[f"{name}_epoch_s"] = per_epoch
        out[f"{name}_projected_s"] = per_epoch * epochs
    out["epoch_ratio"] = out["fast_projected_s"] / out["authors_projected_s"]
    if full:
        out["fast_full_fit_s"] = _fit_seconds(X, P, schedule="fast")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="also time one complete default fit")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    r = measure(args.repeat, args.full)
    print(f"threads={torch.get_num_threads()}  shape={SHAPE}")
    for name in ("fast", "authors"):
        print(f"{name:8s}: {r[f'{name}_epoch_s']:.2f} s/epoch x {r[f'{name}_epochs']} epochs "
              f"= {r[f'{name}_projected_s']:.0f} s")
    print(f"default / authors' schedule cost: {r['epoch_ratio']:.4f}")
    if args.full:
        print(f"one complete default fit: {r['fast_full_fit_s']:.1f} s")


if __name__ == "__main__":
    main()
