"""Measure SGH (ξ, standardisation), DeepBit (activation) and SGH-graph on CIFAR-10 EfficientNet-Lite0
features, and time their training.

Data: the shared JPEG copy of CIFAR-10 (lossy: numbers are close to, not equal to, the official
pixels'), 500 training images per class (5,000) = database, 100 test images per class (1,000) =
queries; features and DeepBit's rotated views from the project's extractor (effnet-lite0, default
input size), cached under ``$HASHBENCH_DATA``. Score: mAP over the whole database of a stable Hamming
ranking, relevance = same class. Run: ``.venv/bin/python scripts/deep_baselines_cifar_study.py
[--archive PATH] [--bits 64] [--only sgh,deepbit,sgh-graph]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hashbench.datasets.base import TEST, TRAIN  # noqa: E402
from hashbench.datasets.features.registry import compute_features  # noqa: E402
from hashbench.datasets.features.side import compute_side  # noqa: E402
from hashbench.datasets.registry import load_dataset  # noqa: E402
from hashbench.methods.registry import get_method  # noqa: E402
from scripts.sgh_xi_study import hamming_map  # noqa: E402


def subset(labels: np.ndarray, partition: np.ndarray, part: int, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero((labels == c) & (partition == part)), per_class,
                                              replace=False) for c in np.unique(labels)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive", default="/work/shared/data/cifar10-images.tar.gz")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--only", default="sgh,deepbit,sgh-graph")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("cifar10", data_root=args.archive)
    labels, partition = np.asarray(data.labels), np.asarray(data.partition)
    train = subset(labels, partition, TRAIN, 500, 0)
    query = subset(labels, partition, TEST, 100, 0)
    start = time.perf_counter()
    Xt, _ = compute_features(data, "effnet-lite0", indices=train)
    Xq, _ = compute_features(data, "effnet-lite0", indices=query)
    print(f"features {Xt.shape} {Xq.shape} in {time.perf_counter() - start:.0f}s", flush=True)
    yt, yq = labels[train], labels[query]
    print(f"feature stats: mean {Xt.mean():.3f} std {Xt.std():.3f} mean row norm {np.linalg.norm(Xt, axis=1).mean():.2f}")
    only = set(args.only.split(","))

    def score(model, side=None):
        return hamming_map(model.project(Xq) >= 0, model.project(Xt) >= 0, yq, yt)

    def run(name, **params):
        cls = get_method(name)
        side = {}
        if cls.side_inputs:
            start = time.perf_counter()
            side["views"], _ = compute_side(data, "views", indices=train)
            print(f"  views {side['views'].shape} in {time.perf_counter() - start:.0f}s", flush=True)
        results = []
        for seed in (0, 1):
            start = time.perf_counter()
            model = cls(args.bits, seed=seed, device="cpu", **params).fit(Xt, **side) if name != "sgh-graph" else \
                cls(args.bits, seed=seed, **params).fit(Xt)
            results.append((score(model), time.perf_counter() - start))
        maps, times = zip(*results)
        print(f"{name:9s} {params} mAP {np.mean(maps):.4f} ({', '.join(f'{m:.4f}' for m in maps)}) "
              f"fit {np.mean(times):.1f}s", flush=True)
        return model

    if "sgh" in only:
        for xi in ("stochastic", "deterministic"):
            for standardize in (True, False):
                run("sgh", xi=xi, standardize=standardize)
    if "deepbit" in only:
        for activation in ("sigmoid", "relu"):
            model = run("deepbit", activation=activation)
            h = model.history_
            print(f"  last losses: {[round(v, 4) for v in h['loss'][-4:]]}, rotation {h['rotation'][-1]:.5f}")
    if "sgh-graph" in only:
        run("sgh-graph")


if __name__ == "__main__":
    main()
