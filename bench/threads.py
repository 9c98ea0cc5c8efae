"""One thread setting for the whole harness (``--threads N``): torch, ONNX Runtime, BLAS/OpenMP, faiss,
numba.

Results should not depend on how many threads computed them, but float reductions split over more
threads can round differently, so the count is recorded with every run (``env.threads``) and a
sweep applies it before anything computes. The default is the number of cores this process may run on.

How each library gets it:

* torch: ``torch.set_num_threads`` (intra-op; the frozen networks and every torch method);
* ONNX Runtime: each session takes ``torch.get_num_threads()`` intra-op threads when it is created
  (`hashbench.datasets.features.onnx_runtime`, which must not import the harness);
* BLAS and OpenMP pools already loaded (numpy's OpenBLAS, scikit-learn, faiss's OpenMP):
  ``threadpoolctl.threadpool_limits``, plus ``faiss.omp_set_num_threads``;
* numba's parallel layer: ``numba.set_num_threads`` (capped at the pool numba started with);
* ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` for child processes (a
  distributed executor's workers start with the same setting).
"""
from __future__ import annotations

import os
from typing import Any

from bench.errors import UsageError

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_limits: list[Any] = []  # keeps threadpoolctl's limiter alive for the process


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_threads(threads: Any) -> int:
    """``threads`` as an int >= 1 (None: `available_cores`).

    Raises:
        UsageError: not an integer >= 1 (booleans and floats are refused).
    """
    if threads is None:
        return available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UsageError(f"--threads must be an integer >= 1, got {threads!r}")
    return threads


def parse_threads(text: str) -> int:
    """The value of ``--threads`` as an int; `UsageError` (as `check_threads`) unless it is one >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"--threads must be an integer >= 1, got {text!r}") from None
    return check_threads(value)


def set_threads(threads: Any = None) -> int:
    """Apply one thread count to every library the harness computes with (module docstring); returns it.

    Raises:
        UsageError: as `check_threads`.
    """
    n = check_threads(threads)
    for var in ENV_VARS:
        os.environ[var] = str(n)
    import faiss
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    # numba first: launching its threading layer resets OpenMP's thread count, which torch reads
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    faiss.omp_set_num_threads(n)
    _limits.clear()
    _limits.append(threadpool_limits(limits=n))
    torch.set_num_threads(n)
    return n
