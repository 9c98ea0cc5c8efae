"""Speed and memory targets of bench.evaluation, as ratios measured in this very run.

The timings are taken here with ``time.perf_counter`` (best of several, one thread), so the ratio
assertions hold whether or not pytest-benchmark is enabled; the ``benchmark`` fixture only records
`evaluate` for ``--benchmark-json`` / ``--benchmark-compare``.
"""
from __future__ import annotations

import pytest

from bench import evaluation
from bench.benchmarks import evaluation as bench_eval
from bench.benchmarks import evaluation_scale as bench_scale


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


@pytest.fixture(scope="module")
def scale_timings(tmp_path_factory):
    shape = bench_scale.CI_SHAPE
    return bench_scale.measure_interleaved(shape["n_query"], shape["n_db"], n_bits=shape["n_bits"],
                                           n_classes=shape["n_classes"], topk=shape["topk"], n_shards=4,
                                           folder=tmp_path_factory.mktemp("scale"))


def test_memory_mapped_million_codes_against_faiss(scale_timings, benchmark):
    t = scale_timings
    benchmark.extra_info.update(t)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)   # the figures live in extra_info
    print(f"\n200 x 1,000,000 memory-mapped codes: evaluate {t['evaluate_s']:.3f} s "
          f"({t['evaluate_comparisons_per_s'] / 1e9:.2f} G comparisons/s), faiss top-1000 {t['faiss_search_s']:.3f} s, "
          f"ratio {t['evaluate_over_faiss']:.2f}; 4 shards {t['sharded_s']:.3f} s ({t['sharded_over_evaluate']:.2f}x)")
    assert t["evaluate_over_faiss"] <= bench_scale.MAX_CI_OVER_FAISS, (
        f"evaluate {t['evaluate_s']:.3f} s vs faiss IndexBinaryFlat top-1000 {t['faiss_search_s']:.3f} s "
        "(200 x 1,000,000 memory-mapped 64-bit codes)")
    assert 0 < t["map_at_1000"] <= 1


def test_sharded_evaluation_equal_and_at_most_two_passes(scale_timings):
    t = scale_timings
    assert t["sharded_equals_one_pass"]
    assert t["sharded_over_evaluate"] <= bench_scale.MAX_SHARDED_OVER_ONE_PASS, (
        f"evaluate_sharded (4 memory-mapped shards) {t['sharded_s']:.3f} s vs evaluate {t['evaluate_s']:.3f} s")


@pytest.mark.slow
def test_nus_wide_shape_memory_under_500_mb():
    m = bench_eval.measure_nus_wide_memory()
    assert m["peak_mb"] <= 500, f"evaluate traced a {m['peak_mb']:.0f} MB peak beyond its inputs"
    assert 0 < m["map_at_5000"] <= 1
