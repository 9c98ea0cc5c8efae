"""Speed and memory targets of bench.evaluation, as ratios measured in this very run.

The timings are taken here with ``time.perf_counter`` (best of several, one thread), so the ratio
assertions hold whether or not pytest-benchmark is enabled; the ``benchmark`` fixture only records
`evaluate` for ``--benchmark-json`` / ``--benchmark-compare``.
"""
from __future__ import annotations

import pytest

from bench import evaluation
from bench.benchmarks import evaluation as bench_eval


@pytest.fixture(scope="module")
def cifar_timings():
    return bench_eval.measure_cifar_shape(repeat=5, repeat_naive=2)


def test_evaluate_at_most_1x_a_faiss_top1000_search(cifar_timings):
    t = cifar_timings
    assert t["evaluate_over_faiss"] <= bench_eval.MAX_OVER_FAISS, (
        f"evaluate {t['evaluate_ms']:.1f} ms vs faiss IndexBinaryFlat top-1000 {t['faiss_search_ms']:.1f} ms")


def test_evaluate_20x_faster_than_calc_top_map(cifar_timings):
    t = cifar_timings
    assert t["speedup_over_calc_top_map"] >= bench_eval.MIN_SPEEDUP_OVER_ARGSORT, (
        f"evaluate {t['evaluate_ms']:.1f} ms vs CalcTopMap {t['calc_top_map_ms']:.1f} ms")
    # Same metric up to how the copied evaluator's unstable argsort orders ties.
    assert t["map_at_1000"] == pytest.approx(t["calc_top_map_at_1000"], abs=2e-3)


def test_record_evaluate_cifar_shape(benchmark):
    shape = bench_eval.CIFAR_SHAPE
    q, db, yq, ydb = bench_eval.clustered_codes(shape["n_query"], shape["n_db"], shape["n_bits"], shape["n_classes"])
    with bench_eval.single_thread():
        evaluation.evaluate(q[:2], db, yq[:2], ydb)
        metrics = benchmark.pedantic(evaluation.evaluate, args=(q, db, yq, ydb), kwargs={"topk": shape["topk"]},
                                     rounds=3, iterations=1)
    assert 0 < metrics["map_tie_aware"] <= metrics["map_at_1000"] <= 1


@pytest.mark.slow
def test_nus_wide_shape_memory_under_500_mb():
    m = bench_eval.measure_nus_wide_memory()
    assert m["peak_mb"] <= 500, f"evaluate traced a {m['peak_mb']:.0f} MB peak beyond its inputs"
    assert 0 < m["map_at_5000"] <= 1
