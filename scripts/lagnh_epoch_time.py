"""Seconds per training epoch of LAGNH on synthetic data of the CIFAR protocol's size.

5,000 x 1280 float32 features (EfficientNet-Lite0 width), 1000-d multi-hot tags with about 5 ones per row,
64 bits; the authors' schedule settings (batch 1024, 1 discriminator + 5 generator steps per batch,
hidden 1024, embed 512). Prints one line per (threads, setting) with the mean seconds per epoch.

    .venv/bin/python scripts/lagnh_epoch_time.py --epochs 2 --threads 1 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic(n: int, d: int, n_tags: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.maximum(rng.standard_normal((n, d)), 0).astype(np.float32)  # ReLU-like, like CNN features
    P = (rng.random((n, n_tags)) < 5 / n_tags).astype(np.float32)
    return X, P


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=1280)
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--g-steps", type=int, nargs="+", default=[5])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from hashbench.methods.lagnh import LAGNH

    X, P = synthetic(args.n, args.d, args.tags)
    from torch.utils.flop_counter import FlopCounterMode

    for g_steps in args.g_steps:
        # one full batch (1 discriminator forward + g_steps generator steps): independent of machine load
        with FlopCounterMode(display=False) as counter:
            LAGNH(args.bits, schedule="authors", epochs=1, g_steps=g_steps, device=args.device).fit(
                X[:1024], tags=P[:1024]
            )
        print(f"g_steps={g_steps}: {counter.get_total_flops() / 1e9:.1f} GFLOP per training batch of 1024", flush=True)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for g_steps in args.g_steps:
            model = LAGNH(args.bits, schedule="authors", epochs=args.epochs, g_steps=g_steps, device=args.device)
            start = time.perf_counter()
            model.fit(X, tags=P)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            model.project(X, tags=P)
            anchored_s = time.perf_counter() - start
            model.set_params(encode_mode="transductive")
            start = time.perf_counter()
            model.project(X, tags=P)
            trans_s = time.perf_counter() - start
            print(
                f"threads={threads} g_steps={g_steps} epochs={args.epochs}: {fit_s / args.epochs:.2f} s/epoch "
                f"(fit {fit_s:.1f} s); encode {args.n} rows: anchored {anchored_s:.2f} s, "
                f"transductive {trans_s:.2f} s; "
                f"graph_offdiag_mean={model.history_['graph_offdiag_mean'][-1]:.3g}",
                flush=True,
            )


if __name__ == "__main__":
    main()
