"""`bench.evaluation` on a memory-mapped database of millions of codes, next to faiss, measured in one run.

The scale case of issue 17: 1,000 queries against 10,000,000 synthetic 64-bit codes (10 classes drawn
uniformly; an item's bits are its class prototype with each bit flipped with probability 0.3), the
database a ``.npy`` file opened with ``mmap_mode="r"``, everything on one thread. Printed figures:

* ``evaluate`` time and comparisons per second (queries x database items / seconds), with every metric
  and with ``map_all=False`` (mAP@1000, P@1000, tie-aware mAP and the radius metrics; only the items
  that can still reach the top 1,000 are recorded), whose metrics must equal the first's;
* faiss ``IndexBinaryFlat`` top-1,000 search of the same codes, and evaluate / faiss (target: <= 1.0);
* `evaluate_sharded` over ``--shards`` equal memory-mapped shards, run sequentially: its time and
  whether its metrics equal the one-pass ones (they must, to the last bit);
* the resident memory of each measurement's process just before it (imports, queries and labels
  loaded, kernel compiled) and its peak during the measurement (the kernel's peak mark is reset in
  between); each runs in a fresh process, and the database file's pages count once they are read.

Each figure is the fastest of ``--repeat`` rounds (3 by default; every measurement in a fresh process,
one of each per round in turn, so that a busy spell of a shared machine slows all of them alike; a
10,000,000-code round takes about a minute), and each peak the largest of its rounds. Ratios are only as
steady as the machine: run it on an idle one. ``--n-db`` and ``--n-query`` shrink the case (the CI gate in
``tests/benchmarks/test_evaluation_speed.py`` uses `measure_interleaved` at 200 x 1,000,000).

Run ``python -m bench.benchmarks.evaluation_scale [--n-db N] [--n-query Q] [--shards S] [--repeat R]``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench import evaluation
from bench.benchmarks.evaluation import single_thread

SCALE_SHAPE = {"n_query": 1000, "n_db": 10_000_000, "n_bits": 64, "n_classes": 10, "topk": 1000}
CI_SHAPE = {"n_query": 200, "n_db": 1_000_000, "n_bits": 64, "n_classes": 10, "topk": 1000}
# The targets for the scale case (one thread).
MIN_COMPARISONS_PER_S = 1.5e9
MAX_OVER_FAISS = 1.0
# The CI gates at CI_SHAPE (tests/benchmarks/test_evaluation_speed.py), both regression lines with room
# for the noise of a busy machine. The engine (every metric, map_all included) against faiss: 0.81-0.82x
# measured on the Intel development machine on 2026-12-02 (1.1x before that day's kernel changes); faiss
# is slower on the AMD machines, so the ratio is lower there. The sharded path scans each shard twice
# (histograms, then ranks): 1.39-1.47x one pass measured the same day, after its second pass stopped
# taking the class-list kernel when nothing can be pruned (2.2-2.6x before, under the former 2.5 line).
MAX_CI_OVER_FAISS = 1.2
MAX_SHARDED_OVER_ONE_PASS = 2.0


def write_database(folder: Path, n_query: int, n_db: int, n_bits: int, n_classes: int, *, flip: float = 0.3,
                   seed: int = 0) -> dict[str, Path]:
    """Write queries and a database of clustered packed codes and uniform class ids as ``.npy`` files,
    the database codes in chunks straight into a memory-mapped file (bounded memory)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((n_classes, n_bits)) < 0.5
    n_bytes = -(-n_bits // 8)
    paths = {name: folder / f"{name}.npy" for name in ("q", "db", "yq", "ydb")}
    for codes_name, labels_name, n in (("q", "yq", n_query), ("db", "ydb", n_db)):
        labels = rng.integers(0, n_classes, n)
        codes = np.lib.format.open_memmap(paths[codes_name], mode="w+", dtype=np.uint8, shape=(n, n_bytes))
        for start in range(0, n, 1 << 18):
            stop = min(n, start + (1 << 18))
            bits = prototypes[labels[start:stop]] ^ (rng.random((stop - start, n_bits)) < flip)
            codes[start:stop] = np.packbits(bits, axis=1, bitorder="little")
        codes.flush()
        del codes
        np.save(paths[labels_name], labels)
    return paths


def _load(paths: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (np.load(paths["q"]), np.load(paths["db"], mmap_mode="r"), np.load(paths["yq"]), np.load(paths["ydb"]))


def _status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak) of this process from ``/proc/self/status``, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux ``clear_refs`` 5), so that the next
    `_peak_rss_mb` is the peak of what runs in between rather than of the imports; returns the RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def _run_evaluate(paths: dict[str, Path], topk: int, map_all: bool = True) -> dict[str, Any]:
    q, db, yq, ydb = _load(paths)
    with single_thread():
        # Every query on a small database: compiles (or loads) each kernel the timed call takes.
        evaluation.evaluate(q, db[:5000], yq, ydb[:5000], topk=topk, map_all=map_all)
        base = _reset_peak_rss()
        start = time.perf_counter()
        metrics = evaluation.evaluate(q, db, yq, ydb, topk=topk, map_all=map_all)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "base_rss_mb": base, "metrics": metrics}


def _run_sharded(paths: dict[str, Path], topk: int, n_shards: int) -> dict[str, Any]:
    q, db, yq, ydb = _load(paths)
    edges = np.linspace(0, db.shape[0], n_shards + 1).astype(np.int64)
    shards = [(db[a:b], ydb[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    with single_thread():
        evaluation.evaluate_sharded(q, yq, [(db[:5000], ydb[:5000])], topk=topk)
        base = _reset_peak_rss()
        start = time.perf_counter()
        metrics = evaluation.evaluate_sharded(q, yq, shards, topk=topk)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "base_rss_mb": base, "metrics": metrics}


def _run_faiss(paths: dict[str, Path], topk: int) -> dict[str, Any]:
    import faiss

    q, db, _, _ = _load(paths)
    with single_thread():
        base = _reset_peak_rss()
        index = faiss.IndexBinaryFlat(8 * db.shape[1])
        index.add(np.ascontiguousarray(db))
        start = time.perf_counter()
        index.search(q, topk)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "base_rss_mb": base}


def _in_fresh_process(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``function(*args)`` in a new interpreter (spawn), so that its memory is its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def measure(n_query: int, n_db: int, *, n_bits: int = 64, n_classes: int = 10, topk: int = 1000,
            n_shards: int = 0, folder: Path | None = None, seed: int = 0, repeat: int = 1) -> dict[str, Any]:
    """Time (s), comparisons/s and peak RSS (MB) of `evaluate` (every metric), of ``evaluate(...,
    map_all=False)`` (``evaluate_topk_*``), of faiss's top-``topk`` search and, with ``n_shards``, of
    `evaluate_sharded`; ``evaluate_over_faiss`` and ``evaluate_topk_over_faiss`` are ratios of times.

    Each measurement runs in a fresh process; with ``repeat`` > 1 they run in ``repeat`` rounds, one of
    each per round in turn, and each keeps its fastest time (a busy machine only adds time) and its
    largest peak."""
    rounds: dict[str, list[dict[str, Any]]] = {"engine": [], "engine_topk": [], "faiss": [], "sharded": []}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        paths = write_database(Path(tmp), n_query, n_db, n_bits, n_classes, seed=seed)
        for _ in range(repeat):
            rounds["engine"].append(_in_fresh_process(_run_evaluate, paths, topk))
            rounds["engine_topk"].append(_in_fresh_process(_run_evaluate, paths, topk, False))
            rounds["faiss"].append(_in_fresh_process(_run_faiss, paths, topk))
            if n_shards:
                rounds["sharded"].append(_in_fresh_process(_run_sharded, paths, topk, n_shards))
    for runs in rounds.values():
        for run in runs[1:]:
            assert "metrics" not in run or run["metrics"] == runs[0]["metrics"], "a repeat changed the metrics"
    engine, engine_topk, faiss_run = (_best(rounds[name]) for name in ("engine", "engine_topk", "faiss"))
    sharded = _best(rounds["sharded"]) if n_shards else None
    comparisons = n_query * n_db
    out: dict[str, Any] = {
        "n_query": n_query, "n_db": n_db, "repeat": repeat, "database_mb": n_db * (-(-n_bits // 8)) / 2**20,
        "evaluate_s": engine["seconds"], "evaluate_comparisons_per_s": comparisons / engine["seconds"],
        "evaluate_rss_before_mb": engine["base_rss_mb"], "evaluate_peak_rss_mb": engine["peak_rss_mb"],
        "faiss_search_s": faiss_run["seconds"], "faiss_comparisons_per_s": comparisons / faiss_run["seconds"],
        "faiss_rss_before_mb": faiss_run["base_rss_mb"], "faiss_peak_rss_mb": faiss_run["peak_rss_mb"],
        "evaluate_over_faiss": engine["seconds"] / faiss_run["seconds"],
        "evaluate_topk_s": engine_topk["seconds"],
        "evaluate_topk_comparisons_per_s": comparisons / engine_topk["seconds"],
        "evaluate_topk_rss_before_mb": engine_topk["base_rss_mb"],
        "evaluate_topk_peak_rss_mb": engine_topk["peak_rss_mb"],
        "evaluate_topk_over_faiss": engine_topk["seconds"] / faiss_run["seconds"],
        "evaluate_topk_equals_evaluate": engine_topk["metrics"] == {
            k: v for k, v in engine["metrics"].items() if k != "map_all"},
        f"map_at_{topk}": engine["metrics"][f"map_at_{topk}"], "map_all": engine["metrics"]["map_all"],
    }
    if sharded is not None:
        out.update({"shards": n_shards, "sharded_s": sharded["seconds"],
                    "sharded_over_evaluate": sharded["seconds"] / engine["seconds"],
                    "sharded_rss_before_mb": sharded["base_rss_mb"], "sharded_peak_rss_mb": sharded["peak_rss_mb"],
                    "sharded_equals_one_pass": sharded["metrics"] == engine["metrics"]})
    return out


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of one measurement's rounds, with the largest peak of them all."""
    best = dict(min(runs, key=lambda run: run["seconds"]))
    best["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    return best


def measure_interleaved(n_query: int, n_db: int, *, n_bits: int = 64, n_classes: int = 10, topk: int = 1000,
                        n_shards: int = 4, repeat: int = 3, folder: Path | None = None, seed: int = 0
                        ) -> dict[str, Any]:
    """Best-of-``repeat`` times (s) of `evaluate`, faiss's top-``topk`` search and `evaluate_sharded`
    (``n_shards`` memory-mapped shards), taken in alternating rounds in this process so that a busy
    machine slows all three alike; their ratios, and whether the sharded metrics equal one pass."""
    import faiss

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        q, db, yq, ydb = _load(write_database(Path(tmp), n_query, n_db, n_bits, n_classes, seed=seed))
        edges = np.linspace(0, n_db, n_shards + 1).astype(np.int64)
        shards = [(db[a:b], ydb[a:b]) for a, b in zip(edges[:-1], edges[1:])]
        index = faiss.IndexBinaryFlat(n_bits)
        index.add(np.ascontiguousarray(db))
        runs = {"evaluate": lambda: evaluation.evaluate(q, db, yq, ydb, topk=topk),
                "faiss": lambda: index.search(q, topk),
                "sharded": lambda: evaluation.evaluate_sharded(q, yq, shards, topk=topk)}
        best = {name: float("inf") for name in runs}
        results: dict[str, Any] = {}
        with single_thread():
            evaluation.evaluate_sharded(q, yq, [(db[:5000], ydb[:5000])], topk=topk)   # compile/load
            for _ in range(repeat):
                for name, run in runs.items():
                    start = time.perf_counter()
                    results[name] = run()
                    best[name] = min(best[name], time.perf_counter() - start)
        del q, db, shards, index
    return {"evaluate_s": best["evaluate"], "faiss_search_s": best["faiss"], "sharded_s": best["sharded"],
            "evaluate_comparisons_per_s": n_query * n_db / best["evaluate"],
            "evaluate_over_faiss": best["evaluate"] / best["faiss"],
            "sharded_over_evaluate": best["sharded"] / best["evaluate"],
            "sharded_equals_one_pass": results["sharded"] == results["evaluate"],
            f"map_at_{topk}": results["evaluate"][f"map_at_{topk}"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-db", type=int, default=SCALE_SHAPE["n_db"], help="database codes (default 10,000,000)")
    parser.add_argument("--n-query", type=int, default=SCALE_SHAPE["n_query"], help="queries (default 1,000)")
    parser.add_argument("--shards", type=int, default=10, help="shards of evaluate_sharded; 0 skips it (default 10)")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the memory-mapped files")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of fresh-process measurements; the fastest of each is kept (default 3)")
    args = parser.parse_args(argv)
    for name in ("n_db", "n_query", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.shards <= args.n_db:
        parser.error(f"--shards must be between 0 (none) and --n-db ({args.n_db:,}), got {args.shards}")
    if args.tmp is not None and not args.tmp.is_dir():
        parser.error(f"--tmp must be an existing folder, got {args.tmp}")
    print(f"writing {args.n_query:,} queries and {args.n_db:,} 64-bit codes ...", file=sys.stderr)
    m = measure(args.n_query, args.n_db, n_shards=args.shards, folder=args.tmp, topk=SCALE_SHAPE["topk"],
                repeat=args.repeat)
    print(f"{m['n_query']:,} queries x {m['n_db']:,} codes (64 bits, 10 classes, memory-mapped), top 1,000, "
          f"one thread, fastest of {args.repeat} fresh-process rounds:")
    for key, value in m.items():
        print(f"  {key:28s} {value:,.4f}" if isinstance(value, float) else f"  {key:28s} {value}")
    for label, key in (("evaluate (every metric)", "evaluate"), ("evaluate(map_all=False)", "evaluate_topk")):
        speed_ok = m[f"{key}_comparisons_per_s"] >= MIN_COMPARISONS_PER_S
        ratio_ok = m[f"{key}_over_faiss"] <= MAX_OVER_FAISS
        print(f"  target for {label}: >= 1.5 G comparisons/s ({'met' if speed_ok else 'MISSED'}), "
              f"<= 1.0 x faiss ({'met' if ratio_ok else 'MISSED'})")


if __name__ == "__main__":
    main()
