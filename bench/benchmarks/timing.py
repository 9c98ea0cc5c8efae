"""Timing one call the way `timeit` does, for the benchmarks' ratio gates."""
from __future__ import annotations

import gc
import time
from typing import Any, Callable


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)`` by `time.perf_counter`, with Python's garbage collector collected before and off
    during the call (and on again after it if it was on), as `timeit` does: a collection of a large heap (the
    whole test suite's, under pytest) would otherwise land on whichever side of a ratio happens to allocate
    when it falls due. Exceptions from ``fn`` propagate."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0
    finally:
        if was_enabled:
            gc.enable()
