"""Each torch method's training epoch against a bare torch loop of the same layers, losses and batch.

`bench.benchmarks.training_epoch` measures both in this run (per-epoch costs from a short and a long fit,
paired rounds, one torch thread); the gate is the speed issue's: at most 1.3x. A registered method that
trains with torch needs a bare loop there: the test of a torch method without one fails.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")

from bench.benchmarks import training_epoch as te  # noqa: E402
from hashbench.methods.registry import BUILTIN, get_method  # noqa: E402


def torch_methods() -> list[str]:
    """Built-in methods whose module trains with torch (their family is ``deep`` or ``graph``)."""
    return sorted(name for name in BUILTIN if get_method(name).family in ("deep", "graph"))


def test_every_torch_method_has_a_bare_loop():
    missing = [m for m in torch_methods() if te.SAME_LOOP.get(m, m) not in te.BARE_LOOPS]
    assert not missing, f"torch methods without a bare loop in bench/benchmarks/training_epoch.py: {missing}"


@pytest.mark.parametrize("method", sorted(te.BARE_LOOPS))
def test_training_epoch_within_1_3x_of_a_bare_torch_loop(benchmark, method):
    m = te.measure(method)
    benchmark.extra_info.update({k: v for k, v in m.items() if k != "steps"})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the figures live in extra_info
    print(f"\n{method}: epoch {m['fit_epoch_s']:.3f} s vs bare {m['bare_epoch_s']:.3f} s, ratio {m['ratio']:.3f}, "
          f"fixed cost {m['fixed_s']:.2f} s")
    assert m["ratio"] <= te.MAX_RATIO, (f"{method}'s training epoch costs {m['ratio']:.2f}x a bare torch loop "
                                        f"of the same layers (at most {te.MAX_RATIO}x): {m}")
