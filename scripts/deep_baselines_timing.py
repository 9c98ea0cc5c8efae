"""Time fit and encode of sgh, sgh-graph and deepbit on 5,000 × 1280 clustered features at 64 bits.

Synthetic data: 10 Gaussian clusters (centres N(0, 4 I), unit noise, ReLU-like offset 1), DeepBit's
views = the row moved along a per-row random direction by 0.05·|θ| (θ = -10, -5, 5, 10). Default
hyper-parameters, CPU, one thread each for torch and BLAS (``--threads`` to change), best of
``--repeat`` runs. Run: ``.venv/bin/python scripts/deep_baselines_timing.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--d", type=int, default=1280)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    from hashbench.methods.registry import get_method

    torch.set_num_threads(args.threads)
    # threadpoolctl limits only the libraries loaded when its context opens: load scipy's BLAS first.
    classes = {name: get_method(name) for name in ("sgh", "sgh-graph", "deepbit")}
    rng = np.random.default_rng(0)
    centres = 2.0 * rng.standard_normal((10, args.d))
    X = (1.0 + centres[rng.integers(0, 10, args.n)] + rng.standard_normal((args.n, args.d))).astype(np.float32)
    drift = rng.standard_normal((args.n, args.d)).astype(np.float32)
    views = np.stack([X + 0.05 * abs(a) * drift for a in (-10, -5, 5, 10)], axis=1)
    print(f"load average {os.getloadavg()[0]:.1f}, {args.threads} thread(s), X {X.shape}, {args.bits} bits")
    with threadpool_limits(args.threads):
        for name in classes:
            cls = classes[name]
            side = {"views": views} if cls.side_inputs else {}
            kwargs = {} if name == "sgh-graph" else {"device": "cpu"}
            fits, encodes = [], []
            for _ in range(args.repeat):
                start = time.perf_counter()
                model = cls(args.bits, **kwargs).fit(X, **side)
                fits.append(time.perf_counter() - start)
                start = time.perf_counter()
                model.encode(X)
                encodes.append(time.perf_counter() - start)
            info = getattr(model, "n_iter_", None)
            print(f"{name:9s} fit {min(fits):6.1f}s  encode {min(encodes) * 1e3:7.1f} ms  "
                  f"n_parameters {model.n_parameters()}  iterations {info}", flush=True)


if __name__ == "__main__":
    main()
