"""Accuracy regression guard: fixed small sweeps whose scores are committed in `results/reference/`.

``python -m bench.regression`` recomputes every reference sweep and compares it with the committed
values; ``--update`` rewrites them (do that only for a change that is meant to move the numbers, and say
why in the commit). The test suite runs the comparison, so CI fails when a change moves a score.
Scores are the tie-aware mAP, which does not depend on how ties are ordered.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

def _reference_dir():
    """``results/reference/`` of a checkout (where ``--update`` writes), else the copy installed as the
    package data ``hashbench.reference`` (a `importlib.resources` Traversable: joined with ``/`` and read
    like a Path)."""
    checkout = Path(__file__).resolve().parent.parent / "results" / "reference"
    if checkout.is_dir():
        return checkout
    from importlib.resources import files

    return files("hashbench.reference")


REFERENCE_DIR = _reference_dir()
METRICS = ("map_tie_aware", "map_all")
# Different BLAS builds move a PCA basis by rounding; scores move by far less than this, real regressions
# (a wrong update rule, a changed split) by far more.
TOLERANCE = 0.005


@dataclass(frozen=True)
class ReferenceSweep:
    name: str
    dataset: str
    methods: tuple[str, ...]
    bits: tuple[int, ...]
    seeds: tuple[int, ...] = (0,)
    protocol: str | None = None
    features: str | None = None
    overrides: tuple[tuple[str, str, object], ...] = ()

    @property
    def path(self):
        return REFERENCE_DIR / f"{self.name}.json"


SWEEPS = [
    ReferenceSweep("digits-shallow", "digits", ("lsh", "pcah", "itq", "sh"), (16, 32), features="pixels"),
]


def compute(sweep: ReferenceSweep) -> dict[str, dict[str, float]]:
    from bench.prepare import prepare
    from bench.runner import run_one
    from bench.sweep import side_inputs_needed
    from hashbench.methods import get_method

    classes = {m: get_method(m) for m in sweep.methods}
    side, fit_only = side_inputs_needed(classes.values())
    prep = prepare(sweep.dataset, protocol=sweep.protocol, features=sweep.features, side_inputs=side,
                   fit_only_side=fit_only)
    out = {}
    for method, cls in classes.items():
        extra = {k: v for m, k, v in sweep.overrides if m == method}
        for bits in sweep.bits:
            for seed in sweep.seeds:
                params = cls(n_bits=bits, seed=seed, **extra).get_params()
                metrics, _, _ = run_one(cls, params, prep)
                out[f"{method}/{bits}/{seed}"] = {k: round(float(metrics[k]), 6) for k in METRICS}
    return out


def compare(sweep: ReferenceSweep, got: dict[str, dict[str, float]]) -> list[str]:
    """Differences beyond `TOLERANCE` between ``got`` and the committed reference, as messages."""
    if not sweep.path.is_file():
        return [f"{sweep.path} is missing: run `python -m bench.regression --update`"]
    want = json.loads(sweep.path.read_text())["scores"]
    problems = []
    for key in sorted(set(want) | set(got)):
        if key not in got or key not in want:
            problems.append(f"{sweep.name}: {key} is {'missing' if key not in got else 'new'}")
            continue
        for metric, value in want[key].items():
            if abs(got[key][metric] - value) > TOLERANCE:
                problems.append(f"{sweep.name}: {key} {metric} {got[key][metric]:.4f}, reference {value:.4f}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.regression", description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite the committed reference scores")
    args = parser.parse_args(argv)
    if args.update and not isinstance(REFERENCE_DIR, Path):
        print("error: --update rewrites results/reference/ of a hashbench checkout; this is an installed copy",
              file=sys.stderr)
        return 2
    failed = False
    for sweep in SWEEPS:
        got = compute(sweep)
        if args.update:
            REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
            from bench.environment import git_commit, package_versions

            sweep.path.write_text(json.dumps({
                "sweep": {k: v for k, v in sweep.__dict__.items()}, "tolerance": TOLERANCE,
                "produced_with": {"git_commit": git_commit(), **package_versions()}, "scores": got,
            }, indent=2, sort_keys=True, default=list) + "\n")
            print(f"wrote {sweep.path}")
            continue
        problems = compare(sweep, got)
        failed |= bool(problems)
        print("\n".join(problems) if problems else f"{sweep.name}: matches the reference")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
