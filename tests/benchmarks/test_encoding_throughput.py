"""Encoding throughput of every registered method: recorded in pytest-benchmark's report, not gated.

`bench.benchmarks.encoding` fits each method with its defaults on synthetic CIFAR-10-shaped data; the
benchmark times ``encode`` of 10,000 rows at 64 bits on one thread (best of its rounds in the report) and
``extra_info`` holds items per second.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")

from bench.benchmarks import encoding  # noqa: E402
from hashbench.methods.registry import BUILTIN  # noqa: E402


@pytest.mark.parametrize("method", sorted(BUILTIN))
def test_record_encoding_throughput(benchmark, method):
    encode, fit_s = encoding.fitted(method)
    with encoding.one_thread():
        codes = benchmark.pedantic(encode, rounds=3, iterations=1)
    assert codes.shape == (encoding.N_ENCODE, encoding.N_BITS // 8)
    if benchmark.stats is not None:  # None under --benchmark-disable
        best = benchmark.stats.stats.min
        benchmark.extra_info.update({"items_per_s": encoding.N_ENCODE / best, "n_encode": encoding.N_ENCODE,
                                     "n_bits": encoding.N_BITS, "fit_s": fit_s})
        print(f"\n{method}: {encoding.N_ENCODE / best:,.0f} items/s")
