"""Sweep throughput with ``--executor ray`` against ``--executor local``, measured in one process.

The same sweep runs alternately on both executors, each time into a fresh copy of one empty sqlite store
(nothing is reused; creating MLflow's schema is not timed), after one untimed pair that caches the
features and warms the imports. ``local`` computes the runs one after the other in this process; ``ray``
starts a private local Ray instance with this process's cores (no dashboard), runs each (method, bits, seed) as a
task of ``--threads`` CPUs, and stops the instance: its time includes starting and stopping Ray, which is
also printed on its own. Both use the same ``--threads``, so every run computes the same numbers (checked
here too: the engine's metrics of the two sweeps must be equal run for run). The fastest of ``--repeats``
timed sweeps of each executor is kept (a busy machine only adds time).

Run ``python -m bench.benchmarks.executors`` (digits pixels; ITQ, SH, PCAH and GreedyHash with 20 epochs at
16/32/64 bits, seeds 0 and 1: 24 runs) or choose ``--dataset``, ``--features``, ``--methods``, ``--bits``,
``--seeds``, ``--param``.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

TIMINGS = {"fit_seconds", "encode_seconds", "encode_database_seconds", "encode_query_seconds", "save_seconds",
           "peak_rss_mb", "process_peak_rss_mb"}


def measure(spec, threads: int, repeats: int) -> dict:
    """Wall-clock seconds of ``spec`` (a `bench.sweep.SweepSpec`) per executor (best of ``repeats``), the
    seconds to start and stop the local Ray instance, and the number of runs.

    Raises AssertionError when the two executors' metrics differ for any run (they must not)."""
    import os

    from bench.ray_executor import RayExecutor
    from bench.runner import run_sweep
    from bench.threads import available_cores
    from bench.tracking import Tracker

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    best = {"local": float("inf"), "ray": float("inf")}
    metrics: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="hashbench-executors-") as tmp:
        template = Path(tmp) / "empty.db"
        Tracker(f"sqlite:///{template}").open()
        for repeat in range(repeats + 1):  # the first pair caches the features and warms imports; not counted
            for executor in ("local", "ray"):
                store = Path(tmp) / f"{repeat}-{executor}.db"
                shutil.copy(template, store)
                start = time.perf_counter()
                result = run_sweep(spec, tracking_uri=f"sqlite:///{store}", progress=lambda message: None,
                                   threads=threads, executor=executor)
                took = time.perf_counter() - start
                assert not result.failed, [r.error for r in result.failed]
                metrics[executor] = {(r.label, r.n_bits, r.seed): {k: v for k, v in r.metrics.items()
                                                                   if k not in TIMINGS} for r in result.results}
                if repeat:
                    best[executor] = min(best[executor], took)
            assert metrics["local"] == metrics["ray"], "the executors computed different metrics"
        start = time.perf_counter()
        RayExecutor(None, threads, cpus=available_cores(), say=lambda message: None).shutdown()
        ray_start_stop = time.perf_counter() - start
    return {"runs": len(metrics["local"]), **best, "ray_start_stop": ray_start_stop}


def main(argv: list[str] | None = None) -> None:
    import os

    from bench.sweep import SweepSpec, parse_overrides
    from bench.threads import available_cores

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--features", default="pixels")
    parser.add_argument("--methods", default="itq,sh,pcah,greedyhash")
    parser.add_argument("--bits", default="16,32,64")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--param", action="append", default=None, metavar="METHOD.NAME=VALUE",
                        help="default: greedyhash.epochs=20 and greedyhash.device=cpu when greedyhash is swept")
    parser.add_argument("--threads", type=int, default=1, help="threads of every run, on both executors")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    methods = tuple(args.methods.split(","))
    params = args.param if args.param is not None else (
        ["greedyhash.epochs=20", "greedyhash.device=cpu"] if "greedyhash" in methods else [])
    spec = SweepSpec(methods=methods, dataset=args.dataset, features=args.features,
                     bits=tuple(int(b) for b in args.bits.split(",")),
                     seeds=tuple(int(s) for s in args.seeds.split(",")), overrides=parse_overrides(params))
    out = measure(spec, args.threads, args.repeats)
    load = os.getloadavg()
    print(f"{args.dataset} ({args.features}), {args.methods}, bits {args.bits}, seeds {args.seeds}: {out['runs']} runs, "
          f"--threads {args.threads}; machine: {available_cores()} cores, load average {load[0]:.1f} at the end")
    print(f"--executor local {out['local']:.2f} s ({out['runs'] / out['local']:.2f} runs/s); --executor ray on "
          f"{available_cores()} CPUs {out['ray']:.2f} s ({out['runs'] / out['ray']:.2f} runs/s), of which starting and "
          f"stopping Ray about {out['ray_start_stop']:.2f} s; throughput ray/local {out['local'] / out['ray']:.2f}; "
          f"metrics equal run for run")


if __name__ == "__main__":
    main()
