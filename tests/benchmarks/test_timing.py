"""`bench.benchmarks.timing.timed`: the collector is off during the timed call and left as it was found."""
from __future__ import annotations

import gc

import pytest

from bench.benchmarks.timing import timed


def test_the_collector_is_off_during_the_call_and_on_again_after_it():
    assert gc.isenabled()
    out, seconds = timed(gc.isenabled)
    assert out is False and seconds >= 0.0
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off():
    gc.disable()
    try:
        timed(lambda: None)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_exception_propagates_and_the_collector_is_restored():
    def boom():
        raise ValueError("from the timed call")

    with pytest.raises(ValueError, match="from the timed call"):
        timed(boom)
    assert gc.isenabled()
