"""What keeping each run's model and codes adds to a sweep's time, measured in one process.

The same sweep runs alternately without and with saving (``save_models``), each time into a fresh copy
of one empty sqlite store (so nothing is reused, and creating MLflow's schema is not timed) after the
features are cached: the difference of the wall-clock times is
what saving costs (writing the pyfunc model and the faiss index, then logging them as artifacts). Also
printed: the sum of the runs' ``save_seconds`` (the local writing alone) and the ratio of the times.

Run ``python -m bench.benchmarks.saving --dataset fashion-mnist --methods itq,lsh --bits 16,32,64,128``;
``--repeats`` pairs are measured and the fastest of each kind is kept (a busy machine only adds time).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def measure(methods: list[str], dataset: str, bits: list[int], features: str | None, repeats: int) -> dict:
    """Wall-clock seconds of the sweep without and with saving (best of ``repeats`` each), and the
    fastest saving sweep's sum of ``save_seconds``."""
    import shutil

    from bench.runner import run_sweep
    from bench.sweep import SweepSpec
    from bench.tracking import Tracker

    best = {False: float("inf"), True: float("inf")}
    save_sum = float("inf")
    with tempfile.TemporaryDirectory(prefix="hashbench-saving-") as tmp:
        template = Path(tmp) / "empty.db"
        Tracker(f"sqlite:///{template}").open()
        for repeat in range(repeats + 1):  # the first pair warms caches and imports; not counted
            for save in (False, True):
                spec = SweepSpec(methods=tuple(methods), dataset=dataset, bits=tuple(bits), features=features,
                                 save_models=save)
                store = Path(tmp) / f"{repeat}-{save}.db"
                shutil.copy(template, store)
                uri = f"sqlite:///{store}"
                start = time.perf_counter()
                result = run_sweep(spec, tracking_uri=uri, progress=lambda message: None)
                took = time.perf_counter() - start
                if repeat == 0:
                    continue
                best[save] = min(best[save], took)
                if save:
                    save_sum = min(save_sum, sum(r.metrics.get("save_seconds", 0.0) for r in result.results))
    return {"runs": len(methods) * len(bits), "without": best[False], "with": best[True], "save_seconds": save_sum}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="itq,lsh")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--features", default=None)
    parser.add_argument("--bits", default="16,32,64,128")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    out = measure(args.methods.split(","), args.dataset, [int(b) for b in args.bits.split(",")], args.features,
                  args.repeats)
    added = out["with"] - out["without"]
    print(f"{args.dataset}, {args.methods}, bits {args.bits}: {out['runs']} runs")
    print(f"sweep without saving {out['without']:.2f} s, with saving {out['with']:.2f} s: "
          f"+{added:.2f} s ({added / out['runs']:.3f} s per run, ratio {out['with'] / out['without']:.3f}); "
          f"writing the files locally: {out['save_seconds']:.2f} s in all")


if __name__ == "__main__":
    main()
