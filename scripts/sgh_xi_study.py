"""Measure SGH's training-time ξ (stochastic vs deterministic) and input standardisation.

Retrieval: 64-bit codes, Hamming ranking of the database for each query (stable sort), mAP over the whole
database, relevance = same class. Data: sklearn digits (1,797 8x8 images, 297 queries, 1,500 train =
database) and Fashion-MNIST pixels when the Debian package dataset-fashion-mnist is installed (5,000
train = part of a 10,000 database, 1,000 test queries). Run: ``.venv/bin/python scripts/sgh_xi_study.py``.
"""
from __future__ import annotations

import gzip
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hashbench.methods.registry import get_method  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")


def hamming_map(q_bits: np.ndarray, db_bits: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray) -> float:
    dist = (q_bits[:, None, :] != db_bits[None, :, :]).sum(-1) if q_bits.shape[0] * db_bits.shape[0] < 2e7 else None
    if dist is None:
        qa, da = q_bits.astype(np.float32) * 2 - 1, db_bits.astype(np.float32) * 2 - 1
        dist = (q_bits.shape[1] - qa @ da.T) / 2
    aps = []
    for i in range(q_bits.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        rel = db_labels[order] == q_labels[i]
        if not rel.any():
            continue
        hits = np.cumsum(rel)
        aps.append(float((hits[rel] / (np.flatnonzero(rel) + 1)).mean()))
    return float(np.mean(aps))


def idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(nd)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def datasets():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    X, y = X[perm].astype(np.float32) / 16, y[perm]
    yield "digits", X[297:], y[297:], X[:297], y[:297], X[297:], y[297:]
    if FASHION.exists():
        Xtr = idx(FASHION / "train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255
        ytr = idx(FASHION / "train-labels-idx1-ubyte.gz")
        Xte = idx(FASHION / "t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255
        yte = idx(FASHION / "t10k-labels-idx1-ubyte.gz")
        rng = np.random.default_rng(0)
        db = rng.choice(len(ytr), 10000, replace=False)
        q = rng.choice(len(yte), 1000, replace=False)
        yield "fashion-mnist", Xtr[db[:5000]], ytr[db[:5000]], Xte[q], yte[q], Xtr[db], ytr[db]


def main() -> None:
    torch.set_num_threads(1)
    sgh = get_method("sgh")
    for name, Xt, yt, Xq, yq, Xd, yd in datasets():
        for xi, standardize in itertools.product(("stochastic", "deterministic"), (True, False)):
            scores, times = [], []
            for seed in (0, 1):
                start = time.perf_counter()
                model = sgh(64, seed=seed, xi=xi, standardize=standardize, device="cpu").fit(Xt)
                times.append(time.perf_counter() - start)
                scores.append(hamming_map(model.project(Xq) >= 0, model.project(Xd) >= 0, yq, yd))
            print(
                f"{name:14s} xi={xi:13s} standardize={standardize!s:5s} mAP={np.mean(scores):.4f} "
                f"(seeds {', '.join(f'{s:.4f}' for s in scores)}) fit {np.mean(times):.1f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
