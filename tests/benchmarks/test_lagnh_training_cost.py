"""Cost of LAGNH's default training schedule against the authors', as a ratio measured in this run.

The issue's target is "at most 2 minutes at 64 bits on 5,000 points on two CPU cores"; on this project's
two-core machine the authors' schedule takes 32 minutes for the same data (6.46 s per epoch x 300 with two
threads, ``python -m bench.benchmarks.lagnh_training --threads 2``), so the target is a ratio of at most
120 / 1938 = 0.062 between the two schedules, which holds on any machine where both run at the same speed.
The ratio comes from one epoch of each schedule (the per-epoch cost is constant; early stopping can only
shorten the default), timed here with the same code, data and thread count.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from bench.benchmarks import lagnh_training  # noqa: E402

TARGET_RATIO = 120 / 1938


def test_default_schedule_costs_at_most_the_two_minute_share_of_the_authors(benchmark):
    result = benchmark.pedantic(lagnh_training.measure, kwargs={"repeat": 2}, rounds=1, iterations=1)
    assert result["epoch_ratio"] <= TARGET_RATIO, (
        f"default {result['fast_epoch_s']:.2f} s/epoch x {result['fast_epochs']} vs authors' "
        f"{result['authors_epoch_s']:.2f} s/epoch x {result['authors_epochs']}: ratio {result['epoch_ratio']:.4f}")
