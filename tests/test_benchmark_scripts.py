"""The scale benchmark scripts: the whole-sweep memory benchmark (`bench.benchmarks.sweep_memory`) measures what
its child processes hold; both scripts refuse bad arguments with one line and status 2."""
from __future__ import annotations

import sys

import pytest

from bench.benchmarks import evaluation_scale, sweep_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

_HOLD = """
import sys, time
import numpy as np
block = np.ones(int(sys.argv[1]) * 2**20, dtype=np.uint8)   # touched: resident
time.sleep(1.0)
"""

_PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], "300"])
import numpy as np, time
block = np.ones(200 * 2**20, dtype=np.uint8)
time.sleep(1.0)
child.wait()
"""


@pytest.fixture()
def large_parent():
    """This process made large first (as under a long test session): the child's figures must be its own."""
    import numpy as np

    block = np.ones(600 * 2**20, dtype=np.uint8)
    yield
    del block


def test_largest_process_and_tree_peak_of_a_child_that_holds_memory(large_parent):
    result = sweep_memory.measure([sys.executable, "-c", _HOLD, "400"], interval=0.05)
    assert result["returncode"] == 0
    assert 400 <= result["max_process_mb"] < 600
    assert 400 <= result["tree_peak_mb"] < 600


def test_the_tree_peak_adds_up_a_grandchild_the_largest_process_does_not(large_parent):
    result = sweep_memory.measure([sys.executable, "-c", _PARENT, _HOLD], interval=0.05)
    assert result["returncode"] == 0
    assert 300 <= result["max_process_mb"] < 450         # the grandchild's 300 MB (plus the interpreter)
    assert result["tree_peak_mb"] >= 500                  # both at once: 200 + 300 MB


def test_a_failing_sweep_is_reported_with_its_status():
    assert sweep_memory.measure([sys.executable, "-c", "raise SystemExit(3)"], interval=0.05)["returncode"] == 3


def test_a_usage_error_of_the_sweep_is_one_here(capsys):
    with pytest.raises(SystemExit) as stop:
        sweep_memory.main(["--dataset", "digits", "--methods", "nosuch", "--bits", "16"])
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "the sweep failed with exit status 2; nothing measured" in captured.err


@pytest.mark.parametrize("argv", [["--interval", "-1"], ["--interval", "0"], ["--limit-mb", "0"]])
def test_sweep_memory_refuses_bad_settings_before_starting_anything(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        sweep_memory.main(argv)
    assert stop.value.code == 2
    assert "running:" not in capsys.readouterr().err


def test_measure_refuses_an_interval_that_is_not_positive():
    with pytest.raises(ValueError, match="interval must be positive"):
        sweep_memory.measure([sys.executable, "-c", "pass"], interval=0)


@pytest.mark.parametrize("argv, message", [
    (["--n-db", "0"], "--n-db must be at least 1"), (["--repeat", "0"], "--repeat must be at least 1"),
    (["--n-db", "2", "--shards", "3"], "--shards must be between 0 (none) and --n-db (2)"),
    (["--shards", "-1"], "--shards must be between"), (["--tmp", "/nonexistent/folder"], "--tmp must be an existing folder"),
])
def test_evaluation_scale_refuses_bad_arguments_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        evaluation_scale.main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
