"""Accuracy regression guard: fixed small sweeps whose scores are committed in `results/reference/`.

``python -m bench reference`` (or ``python -m bench.regression``) recomputes every reference sweep and
compares it with the committed values; ``--update`` rewrites them from a clean checkout, so each file
names the commit that produced it (do that only for a change that is meant to move the numbers, and
say why in the commit: the file's diff shows in review). The test suite runs the comparison, so CI fails
when a change moves a score by more than `TOLERANCE`.

Sweeps:

* ``digits-shallow``: the four shallow methods on the digits pixels, 16 and 32 bits (mAP@all and the
  tie-aware mAP, which does not depend on how ties are ordered).
* ``cifar10-ci``: every built-in method at 32 and 64 bits on CIFAR-10's ``ci`` protocol (500 test
  queries, 5,000 database images, 2,000 training images; the default features and side inputs), seed 0,
  mAP@1000 and the tie-aware mAP. A built-in method without an entry fails the comparison until
  ``--update`` adds it. Entries whose default fit would not fit CI's budget use the reduced settings in
  ``REDUCED`` (the same every run, recorded in the file).

Every sweep computes on one thread (`THREADS`: features, side inputs, training, encoding), so its values do
not depend on the machine's core count; ``--workers N`` (default: one per core, at most 4) spreads the
side inputs and the fits over N such single-threaded processes, which changes the wall time and no value.
They do depend on the CPU's instruction set: torch, ONNX Runtime and the BLAS pick their kernels by it, and
thousands of float32 training steps turn a last-bit difference into another model. So each file records
the machine it was computed on (`machine`: torch's CPU capability and the CPU's vector extensions), and a
machine-bound sweep (``cifar10-ci``; the shallow numpy methods of ``digits-shallow`` reproduce across
CPUs) keeps one file per kind of CPU,
``<sweep>.<kind>.json`` with ``<kind>`` from `machine_kind`. The test suite compares the file of the
machine's own kind; a machine of a kind without one skips, naming the kinds there are, and
``python -m bench reference --update`` there adds the file of that kind (the other kinds' files stay as
they are). The package versions are pinned by ``constraints.txt``.
"""
from __future__ import annotations

import argparse
import hashlib
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
METRICS = ("map_tie_aware", "map_all")  # of the digits sweep; each sweep names its own
# Different BLAS builds move a PCA basis by rounding; scores move by far less than this, real regressions
# (a wrong update rule, a changed split) by far more.
TOLERANCE = 0.005
THREADS = 1
# CPU vector extensions that decide which kernels torch, ONNX Runtime and the BLAS run.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class ReferenceSweep:
    """One reference sweep; ``methods=None`` means every built-in method (`methods.registry.BUILTIN`)."""

    name: str
    dataset: str
    methods: tuple[str, ...] | None
    bits: tuple[int, ...]
    seeds: tuple[int, ...] = (0,)
    protocol: str | None = None
    features: str | None = None
    overrides: tuple[tuple[str, str, object], ...] = ()
    metrics: tuple[str, ...] = METRICS
    # Retrained by the test suite (CI's accuracy gate); False: `python -m bench reference` only.
    gated: bool = True
    # Compared only on the kind of CPU that computed the reference (`machine_mismatch`): sweeps that train
    # torch models on ONNX Runtime features. The shallow numpy methods reproduce across CPUs.
    machine_bound: bool = False

    @property
    def path(self):
        """The reference file this machine reads and ``--update`` writes (of this machine's kind of CPU
        for a machine-bound sweep)."""
        if self.machine_bound:
            return REFERENCE_DIR / f"{self.name}.{machine_kind(machine())}.json"
        return REFERENCE_DIR / f"{self.name}.json"

    def kind_files(self) -> list:
        """A machine-bound sweep's reference files of every kind of CPU, sorted by name."""
        prefix = f"{self.name}."
        return sorted((f for f in REFERENCE_DIR.iterdir() if f.name.startswith(prefix) and f.name.endswith(".json")
                       and f.name.count(".") == self.name.count(".") + 2), key=lambda f: f.name)

    def method_names(self) -> tuple[str, ...]:
        from hashbench.methods.registry import BUILTIN

        return tuple(sorted(BUILTIN)) if self.methods is None else self.methods


# Reduced settings of the cifar10-ci sweep, (method, hyper-parameter, value): none yet, every method at its
# defaults fits CI's budget (each new entry: say why here and in the README's CI section).
REDUCED: tuple[tuple[str, str, object], ...] = ()

SWEEPS = [
    ReferenceSweep("digits-shallow", "digits", ("lsh", "pcah", "itq", "sh"), (16, 32), features="pixels"),
    # Written with --update from an empty feature cache (features, tags and views extracted on one thread,
    # as CI extracts them cold).
    ReferenceSweep("cifar10-ci", "cifar10", None, (32, 64), protocol="ci", overrides=REDUCED,
                   metrics=("map_at_1000", "map_tie_aware"), machine_bound=True),
]


def machine() -> dict[str, object]:
    """What decides the kernels a CPU machine computes with: torch's CPU capability (``"AVX512"``,
    ``"AVX2"``, ...) and the vector extensions of `ISA_FLAGS` the CPU reports (Linux ``/proc/cpuinfo``;
    an empty list elsewhere)."""
    import torch

    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "isa": [f for f in ISA_FLAGS if f in flags]}


def machine_kind(m: dict[str, object]) -> str:
    """Short name of a kind of CPU machine (a `machine` dict): the first 8 hex digits of the SHA-256 of its
    JSON with sorted keys."""
    return hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest()[:8]


def machine_mismatch(sweep: ReferenceSweep) -> str | None:
    """Why ``sweep``'s committed values cannot be expected here (a machine-bound sweep with references of
    other kinds of CPU only), else None (also when it has none at all: `compare` reports that)."""
    if not sweep.machine_bound or sweep.path.is_file():
        return None
    stored = [json.loads(f.read_text()).get("machine") for f in sweep.kind_files()]
    if not stored:
        return None
    here = machine()
    return (f"{sweep.name} has references computed on {' and '.join(map(str, stored))}; this machine is {here} "
            f"(kind {machine_kind(here)}): its values are compared on a machine of the same kind only "
            "(`python -m bench reference --update` adds one for this kind)")


def compute(sweep: ReferenceSweep, workers: int = 1) -> dict[str, dict[str, float]]:
    """``{"method/bits/seed": {metric: value}}`` of ``sweep``, computed on `THREADS` threads (the thread
    setting of the process is restored afterwards).

    With ``workers`` > 1 the work runs in that many spawned worker processes, each on `THREADS` threads:
    first each side input's cache is filled by one worker (with the features, which the first worker to
    need them extracts and the others then read), then every worker prepares the data from the caches and
    takes fits. Each feature store and each fit is the same single-threaded computation as in one process,
    so the values are identical whatever ``workers`` is (`tests/test_accuracy_regression.py` checks it);
    only the wall time changes.
    """
    from bench.threads import set_threads
    from hashbench.methods import get_method

    classes = {m: get_method(m) for m in sweep.method_names()}
    # torch-trained methods first, so that the quick shallow fits fill the workers' last minutes
    jobs = sorted(((method, bits, seed, {k: v for m, k, v in sweep.overrides if m == method})
                   for method in classes for bits in sweep.bits for seed in sweep.seeds),
                  key=lambda job: classes[job[0]].family not in ("deep", "graph"))
    before = torch_threads()
    set_threads(THREADS)
    try:
        if workers <= 1 or len(jobs) <= 1:
            prep = _prepare(sweep)
            scores = [_score(job, prep, sweep.metrics) for job in jobs]
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            side = _side_inputs(sweep)[0]
            # spawn, not fork: a forked child of a process whose OpenMP and torch pools have started can hang
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                                     initializer=set_threads, initargs=(THREADS,)) as pool:
                list(pool.map(_fill_caches, [sweep] * len(side), [(name,) for name in side]))
                scores = list(pool.map(_score_in_worker, [sweep] * len(jobs), jobs))
    finally:
        set_threads(before)
    return {f"{method}/{bits}/{seed}": values for (method, bits, seed, _), values in zip(jobs, scores)}


def _side_inputs(sweep: ReferenceSweep) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The side inputs the sweep's methods read, and which of them are for fitting only."""
    from bench.sweep import side_inputs_needed
    from hashbench.methods import get_method

    return side_inputs_needed([get_method(m) for m in sweep.method_names()])


def _prepare(sweep: ReferenceSweep, side: tuple[str, ...] | None = None):
    """`bench.prepare.prepare` of the sweep's data with the side inputs ``side`` (None: all it needs)."""
    from bench.prepare import prepare

    needed, fit_only = _side_inputs(sweep)
    side = needed if side is None else side
    return prepare(sweep.dataset, protocol=sweep.protocol, features=sweep.features, side_inputs=side,
                   fit_only_side=tuple(name for name in fit_only if name in side))


def _score(job: tuple, prep, metrics: tuple[str, ...]) -> dict[str, float]:
    """The rounded ``metrics`` of one fit ``(method, bits, seed, extra hyper-parameters)`` on ``prep``."""
    from bench.runner import run_one
    from hashbench.methods import get_method

    method, bits, seed, extra = job
    cls = get_method(method)
    values, _, _ = run_one(cls, cls(n_bits=bits, seed=seed, **extra).get_params(), prep)
    return {k: round(float(values[k]), 6) for k in metrics}


_WORKER_PREP: dict[str, object] = {}  # a worker process's prepared data, by sweep name


def _fill_caches(sweep: ReferenceSweep, side: tuple[str, ...]) -> None:
    _prepare(sweep, side)  # for its on-disk caches only: returning the arrays would pickle them back


def _score_in_worker(sweep: ReferenceSweep, job: tuple) -> dict[str, float]:
    if sweep.name not in _WORKER_PREP:
        _WORKER_PREP[sweep.name] = _prepare(sweep)
    return _score(job, _WORKER_PREP[sweep.name], sweep.metrics)


# Each worker holds the prepared data and trains a torch model: up to 1.4 GB resident (cifar10-ci, measured),
# so a many-core machine does not get one per core by default.
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """Worker processes for the reference sweeps: the CPU cores this process may use, at most
    `MAX_DEFAULT_WORKERS`."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def compare(sweep: ReferenceSweep, got: dict[str, dict[str, float]]) -> list[str]:
    """Differences beyond `TOLERANCE` between ``got`` and the committed reference, as messages."""
    if not sweep.path.is_file():
        return [f"{sweep.path} is missing: run `python -m bench reference --update`"]
    want = json.loads(sweep.path.read_text())["scores"]
    problems = []
    for key in sorted(set(want) | set(got)):
        if key not in got or key not in want:
            problems.append(f"{sweep.name}: {key} has no reference entry: run `python -m bench reference --update`"
                            if key not in want else f"{sweep.name}: {key} is in the reference but was not computed")
            continue
        for metric, value in want[key].items():
            if abs(got[key][metric] - value) > TOLERANCE:
                problems.append(f"{sweep.name}: {key} {metric} {got[key][metric]:.4f}, reference {value:.4f}")
    return problems


def dirty_tree() -> str | None:
    """Why ``--update`` must refuse to write (uncommitted changes to tracked files, or no checkout), else None."""
    from bench.environment import git_commit

    commit = git_commit()
    if commit is None:
        return "--update rewrites results/reference/ of a hashbench git checkout; this is not one"
    if commit.endswith("+dirty"):
        return ("--update needs a clean tree so that the reference names a real commit: commit or stash your "
                "changes first (git status)")
    return None


def main(argv: list[str] | None = None, prog: str = "python -m bench.regression") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true",
                        help="rewrite the committed reference scores (from a clean checkout only)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="fit in N single-threaded worker processes (default: one per CPU core, at most 4); "
                             "the values do not depend on it")
    parser.add_argument("--sweep", action="append", choices=[s.name for s in SWEEPS], default=None,
                        help="only this sweep (repeatable; default: all)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.update and not isinstance(REFERENCE_DIR, Path):
        print("error: --update rewrites results/reference/ of a hashbench checkout; this is an installed copy",
              file=sys.stderr)
        return 2
    if args.update and (why := dirty_tree()):
        print(f"error: {why}", file=sys.stderr)
        return 2
    from bench.environment import git_commit, package_versions

    commit = git_commit()  # the code that computes the scores, taken before the work starts
    failed = False
    for sweep in SWEEPS:
        if args.sweep and sweep.name not in args.sweep:
            continue
        if not args.update and (why := machine_mismatch(sweep)):
            # Nothing here to compare with: say so rather than train the whole sweep for nothing.
            print(f"{sweep.name}: not compared: {why}")
            continue
        got = compute(sweep, workers=args.workers or default_workers())
        if args.update:
            REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
            sweep.path.write_text(json.dumps({
                "sweep": {**{k: v for k, v in sweep.__dict__.items()}, "methods": list(sweep.method_names())},
                "tolerance": TOLERANCE,
                "produced_with": {"git_commit": commit, **package_versions()}, "machine": machine(),
                "threads": THREADS, "scores": got,
            }, indent=2, sort_keys=True, default=list) + "\n")
            print(f"wrote {sweep.path}", file=sys.stderr)
            continue
        problems = compare(sweep, got)
        failed |= bool(problems)
        print("\n".join(problems) if problems else f"{sweep.name}: matches the reference")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
