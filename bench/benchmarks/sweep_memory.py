"""Peak memory of a whole sweep: every registered method at four code lengths, as one figure.

Issue 17's scale figure: a full ``cifar10`` sweep (every method, 16/32/64/128 bits) must stay under 4 GB.
The sweep runs as ``python -m bench run`` in a child process, into a fresh sqlite store in a temporary folder
(nothing is reused; the child works in that folder, so saved models go there too), with the features from
the usual cache (``HASHBENCH_DATA``; a cold cache adds the extraction, which is part of a sweep too). Two
figures are printed:

* the largest resident memory of any single process of the sweep, from each process's high-water mark
  (``VmHWM``, read with the samples below; the local executor runs every fit in one process);
* the peak of the summed resident memory of the child and all its descendants, sampled every
  ``--interval`` seconds from ``/proc`` (it can miss a spike shorter than the interval; it covers helper
  processes such as data-loader workers, which the first figure does not add up).

It exits with status 1 when either figure reaches ``--limit-mb`` (4,096 by default); when the sweep fails it
prints one line and exits with the sweep's status 2 (a usage error, which the sweep has explained) or 1.
Run ``python -m bench.benchmarks.sweep_memory [--dataset cifar10] [--methods all] [--bits 16,32,64,128]
[--seeds 0] [-- extra bench run arguments]``; Linux only (``/proc``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT_MB = 4096.0
BITS = "16,32,64,128"


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process visible in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # the process ended while being listed
            continue
        # The command name (field 2) may hold spaces and parentheses: fields after the last ")".
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def tree_memory_mb(root: int) -> tuple[float, float]:
    """Of ``root`` and all its descendants now: the summed ``VmRSS`` and the largest ``VmHWM`` (each process's
    own peak so far), MB (processes gone meanwhile count 0)."""
    children = _children_map()
    stack, total_kb, peak_kb = [root], 0, 0
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak_kb = max(peak_kb, int(line.split()[1]))
    return total_kb / 1024.0, peak_kb / 1024.0


def measure(command: list[str], *, interval: float = 0.2, cwd: str | os.PathLike | None = None
            ) -> dict[str, float]:
    """Run ``command`` to completion and return its exit status, wall seconds, the largest single-process
    peak (``max_process_mb``) and the peak of the process tree's summed resident memory (``tree_peak_mb``),
    both read from ``/proc`` every ``interval`` seconds.

    A process's ``VmHWM`` is its own high-water mark (it starts afresh at ``exec``), so the first figure is
    exact but for growth in a process's last interval before it exits. (``ru_maxrss`` from ``wait4`` is not
    used: Linux carries the parent's resident size at the fork into the child's, so a large measuring
    process inflated it: 1,481 MB for a child that held 430 MB, under pytest.)

    Args:
        command: the argument vector of the child.
        interval: seconds between samples.
        cwd: the child's working folder (a sweep's default artifact folder lands there).

    Raises:
        ValueError: ``interval`` not positive.
    """
    if not interval > 0:
        raise ValueError(f"interval must be positive, got {interval}")
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd)
    tree_peak = max_process = 0.0
    try:
        while child.poll() is None:
            total, largest = tree_memory_mb(child.pid)
            tree_peak, max_process = max(tree_peak, total), max(max_process, largest)
            time.sleep(interval)
    except BaseException:
        child.kill()              # never leave the sweep running without its measurer
        child.wait()
        raise
    return {"returncode": child.returncode, "seconds": time.perf_counter() - start,
            "max_process_mb": max_process, "tree_peak_mb": tree_peak}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--methods", default="all", help="comma-separated, or 'all' registered methods")
    parser.add_argument("--bits", default=BITS)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", default=None, help="passed to bench run (default: its own)")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--limit-mb", type=float, default=LIMIT_MB)
    parser.add_argument("extra", nargs="*", help="further bench run arguments, after --")
    args = parser.parse_args(argv)
    if not args.interval > 0 or not args.limit_mb > 0:
        parser.error("--interval and --limit-mb must be positive")
    methods = args.methods
    if methods == "all":
        from hashbench.methods.registry import method_names

        methods = ",".join(method_names())
    with tempfile.TemporaryDirectory(prefix="hashbench-sweep-memory-") as tmp:
        command = [sys.executable, "-m", "bench", "run", "--dataset", args.dataset, "--methods", methods,
                   "--bits", args.bits, "--seeds", args.seeds, "--tracking-uri", str(Path(tmp) / "mlflow.db"),
                   *(["--threads", args.threads] if args.threads else []), *args.extra]
        print("running:", " ".join(command), file=sys.stderr)
        result = measure(command, interval=args.interval, cwd=tmp)
    if result["returncode"]:
        # The sweep printed its own error; a usage error there (status 2) is one here too.
        print(f"sweep_memory: the sweep failed with exit status {result['returncode']}; nothing measured",
              file=sys.stderr)
        sys.exit(2 if result["returncode"] == 2 else 1)
    print(f"sweep: {args.dataset}, methods {methods}, bits {args.bits}, seeds {args.seeds}")
    print(f"wall time {result['seconds']:.0f} s")
    print(f"largest process peak (VmHWM): {result['max_process_mb']:.0f} MB")
    print(f"process tree peak (sampled every {args.interval:g} s): {result['tree_peak_mb']:.0f} MB")
    print(f"limit: {args.limit_mb:.0f} MB")
    over = max(result["max_process_mb"], result["tree_peak_mb"]) >= args.limit_mb
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
