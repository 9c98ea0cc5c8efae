"""Cost of loading a NUS-WIDE-sized list-file dataset, and of checking that every image exists.

Builds a synthetic set in a temporary folder (N empty image files in one folder, as NUS-WIDE ships
them; test / database / train lists with 21 labels, train ⊂ database), then reports the best of
``--repeat`` runs of: parsing only, parsing + the existence check, and one ``os.stat`` per path (the
naive check), as seconds and as ratios to the parse-only time. Timings on a shared machine vary;
compare the ratios of one run.

    .venv/bin/python scripts/measure_listfile_load.py --n 200000
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hashbench.datasets import load_dataset  # noqa: E402


def _build(root: Path, n: int, n_labels: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir()
    paths = [f"images/{i}_{rng.integers(1 << 30)}_m.jpg" for i in range(n)]
    for p in paths:
        open(root / p, "wb").close()
    labels = (rng.random((n, n_labels)) < 0.15).astype(np.uint8)
    lines = [p + " " + " ".join(map(str, row)) for p, row in zip(paths, labels)]
    order = rng.permutation(n)
    n_query, n_train = max(1, n // 95), max(1, n // 19)
    parts = {"test.txt": order[:n_query], "database.txt": order[n_query:],
             "train.txt": order[n_query:n_query + n_train]}
    for name, idx in parts.items():
        (root / name).write_text("\n".join(lines[i] for i in idx) + "\n")
    return paths


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        paths = _build(root, args.n, 21, seed=0)
        print(f"built {args.n} images + lists in {time.perf_counter() - t:.1f} s")
        parse = _best(lambda: load_dataset("nus-wide-21", data_root=str(root), check_images=False), args.repeat)
        checked = _best(lambda: load_dataset("nus-wide-21", data_root=str(root)), args.repeat)
        stat = _best(lambda: [os.stat(os.path.join(tmp, p)) for p in paths], args.repeat)
        print(f"parse only            {parse:7.3f} s   1.00")
        print(f"parse + listdir check {checked:7.3f} s   {checked / parse:4.2f}")
        print(f"one stat per path     {stat:7.3f} s   {stat / parse:4.2f}  (naive check alone, for comparison)")


if __name__ == "__main__":
    main()
