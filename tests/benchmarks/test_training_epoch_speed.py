"""Each torch method's training epoch against a bare torch loop of the same layers, losses and batch.

`bench.benchmarks.training_epoch` measures both in this run (per-epoch costs from a short and a long run of
each side; the median of 5 rounds' ratios, each round's runs in shuffled order with the garbage collector off
while timing; one torch thread); the gate is the speed issue's: at most 1.3x. A registered method that
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
          f"fixed cost {m['fixed_s']:.2f} s; rounds {', '.join(f'{r:.3f}' for r in m['paired_ratios'])}, from the best "
          f"runs {m['best_ratio']:.3f}")
    assert m["ratio"] <= te.MAX_RATIO, (f"{method}'s training epoch costs {m['ratio']:.2f}x a bare torch loop "
                                        f"of the same layers (at most {te.MAX_RATIO}x): {m}")


def test_two_disturbed_rounds_of_five_do_not_decide_the_ratio():
    # a fit whose epoch costs 1.1x the bare loop's (1.1 s against 1.0 s, fixed costs 0.3 and 0.1 s); a
    # pause of 1 s lands on one round's long fit and another's short bare loop
    rounds = 5
    times = {"fit_short": [1.4] * rounds, "fit_long": [3.6] * rounds,
             "bare_short": [1.1] * rounds, "bare_long": [3.1] * rounds}
    times["fit_long"][1] += 1.0
    times["bare_short"][3] += 1.0
    m = te.estimate(times, span=2.0)
    assert m["ratio"] == pytest.approx(1.1)
    assert m["fit_epoch_s"] == pytest.approx(1.1) and m["bare_epoch_s"] == pytest.approx(1.0)
    assert m["fixed_s"] == pytest.approx(0.3)
    assert m["best_ratio"] == pytest.approx(1.1)
    assert m["paired_ratios"] == pytest.approx([1.1, 1.1, 1.1, 1.6, 2.2])  # rounds 1 and 3: 1.6 / 1.0, 1.1 / 0.5


def test_round_order_is_drawn_afresh_and_never_runs_a_bare_loop_before_its_schedule_is_known():
    import numpy as np

    rng = np.random.default_rng(0)
    first = te.round_order(rng, {})
    assert sorted(first) == sorted((w, n) for w in ("fit", "bare") for n in ("short", "long"))
    assert {run[0] for run in first[:2]} == {"fit"}
    half = te.round_order(np.random.default_rng(1), {"short": {}})
    assert half.index(("bare", "long")) > half.index(("fit", "long"))
    orders = {tuple(te.round_order(rng, {"short": {}, "long": {}})) for _ in range(200)}
    assert len(orders) == 24  # every order of the four runs occurs
