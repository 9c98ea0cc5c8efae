"""Encoding throughput of every registered method (recorded, not gated).

For each method: fit it with its defaults (a torch method's schedule cut to a few epochs: encoding
costs the same) on synthetic CIFAR-10-shaped training data (`N_TRAIN` rows of
`training_epoch.N_FEATURES` features, 10 clusters, the synthetic side inputs of `training_epoch.inputs`),
then time ``encode`` of `N_ENCODE` rows (the method's encode-time side inputs included) at `N_BITS` bits,
one thread for torch, BLAS and OpenMP. The figure is items per second, the best of ``rounds`` timings
(the least disturbed by other processes); it is what a database of N items costs to encode, N / figure
seconds. How long the method took to train is not part of it: the fit only sets the weights.

    .venv/bin/python -m bench.benchmarks.encoding [METHOD ...]

The test suite records every registered method's figure in pytest-benchmark's report
(`tests/benchmarks/test_encoding_throughput.py`); nothing is gated: encoding costs differ by design
(a linear projection against LAGNH's anchor graph), so there is no common line to hold them to.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

N_TRAIN, N_ENCODE, N_BITS = 2000, 10_000, 64


def _inputs(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    from bench.benchmarks.training_epoch import inputs

    X, side = inputs(seed)
    return X[:n], {k: v[:n] for k, v in side.items()}


@contextmanager
def one_thread() -> Iterator[None]:
    """torch, faiss, BLAS and OpenMP limited to one thread, restored afterwards."""
    import torch

    from bench.benchmarks.evaluation import single_thread

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with single_thread():
            yield
    finally:
        torch.set_num_threads(before)


def short_fit(method: str) -> dict:
    """The few-epoch settings of the training-epoch benchmark (`training_epoch.FIT_PARAMS` and `FIT_FIXED`) for a torch
    method, none for the others: encoding costs the same after a short fit as after a full one."""
    from bench.benchmarks.training_epoch import FIT_FIXED, FIT_PARAMS, SAME_LOOP

    loop = SAME_LOOP.get(method, method)
    return {**FIT_FIXED.get(loop, {}), **FIT_PARAMS.get(loop, {})}


def fitted(method: str, seed: int = 0) -> tuple[Callable[[], np.ndarray], float]:
    """``(encode, fit_s)``: ``method`` fitted on `N_TRAIN` synthetic rows with its defaults, a torch
    method's schedule shortened by `short_fit` (one thread,
    ``fit_s`` seconds), and a call that encodes `N_ENCODE` rows with it (side inputs included) and returns
    the ``uint8`` ``(N_ENCODE, ceil(N_BITS / 8))`` codes. Call it inside `one_thread` to time it."""
    from hashbench.methods import get_method

    cls = get_method(method)
    X, side = _inputs(N_TRAIN, seed)
    reps = -(-N_ENCODE // N_TRAIN)
    X_enc = np.tile(X, (reps, 1))[:N_ENCODE]
    enc_side = {k: np.tile(side[k], (reps,) + (1,) * (side[k].ndim - 1))[:N_ENCODE]
                for k in cls.side_inputs if k not in cls.fit_only_side_inputs}
    with one_thread():
        t0 = time.perf_counter()
        model = cls(n_bits=N_BITS, seed=seed, **short_fit(method)).fit(X, **{k: side[k] for k in cls.side_inputs})
        fit_s = time.perf_counter() - t0
        model.encode(X_enc[:100], **{k: v[:100] for k, v in enc_side.items()})  # first-call set-up

    def encode() -> np.ndarray:
        codes = model.encode(X_enc, **enc_side)
        if codes.shape != (N_ENCODE, -(-N_BITS // 8)) or codes.dtype != np.uint8:
            raise AssertionError(f"{method}: encode returned {codes.dtype} {codes.shape}")
        return codes

    return encode, fit_s


def measure(method: str, *, rounds: int = 3, seed: int = 0) -> dict:
    """Fit ``method`` (`fitted`) and time its ``encode`` of `N_ENCODE` rows on one thread.

    Returns ``{"items_per_s", "encode_s", "n_encode", "n_bits", "fit_s"}``: ``encode_s`` the best of
    ``rounds`` wall-clock timings of one ``encode`` call (seconds), ``items_per_s = n_encode / encode_s``;
    ``fit_s`` the fit's time (seconds, for orientation only).
    """
    encode, fit_s = fitted(method, seed)
    best = float("inf")
    with one_thread():
        for _ in range(rounds):
            t0 = time.perf_counter()
            encode()
            best = min(best, time.perf_counter() - t0)
    return {"items_per_s": N_ENCODE / best, "encode_s": best, "n_encode": N_ENCODE, "n_bits": N_BITS,
            "fit_s": fit_s}


def main(argv: list[str] | None = None) -> None:
    from hashbench.methods.registry import BUILTIN

    names = (argv if argv is not None else sys.argv[1:]) or sorted(BUILTIN)
    print(f"encoding {N_ENCODE} rows of {_inputs(1, 0)[0].shape[1]} features at {N_BITS} bits, one thread")
    for name in names:
        m = measure(name)
        print(f"{name:13s} {m['items_per_s']:12,.0f} items/s  ({m['encode_s'] * 1e3:8.1f} ms per {N_ENCODE} rows)",
              flush=True)


if __name__ == "__main__":
    main()
