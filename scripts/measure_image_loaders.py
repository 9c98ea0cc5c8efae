"""Cold and warm load times of the image loaders, in one run (a fresh private cache).

Cold = first load of the CIFAR-10 source (decode every image, write the decoded cache);
warm = the same call again (read the decoded cache). Also times Fashion-MNIST from the system
package when installed, and the raw work the cold load cannot avoid (stream-decoding every
image of the archive) so that the loader's overhead shows as a ratio.

    .venv/bin/python scripts/measure_image_loaders.py --cifar10 ../shared/data/cifar10-images.tar.gz
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import tarfile
import tempfile
import time
from pathlib import Path


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _raw_decode(archive: Path) -> int:
    import numpy as np
    from PIL import Image

    n = 0
    with tarfile.open(archive, "r:*") as tf:
        for m in tf:
            if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png")):
                with Image.open(io.BytesIO(tf.extractfile(m).read())) as im:
                    np.asarray(im.convert("RGB"))
                n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar10", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                                 / "cifar10-images.tar.gz"))
    parser.add_argument("--warm-repeats", type=int, default=3)
    args = parser.parse_args()

    os.environ["HASHBENCH_DATA"] = tempfile.mkdtemp(prefix="hashbench-measure-")
    from hashbench.datasets import load_dataset

    try:
        t, d = _timed(lambda: load_dataset("fashion-mnist"))
        print(f"fashion-mnist: {t:.2f} s, {d.images.shape}, from {d.source}")
    except Exception as exc:  # noqa: BLE001 - report and go on to CIFAR-10
        print(f"fashion-mnist: not measured ({exc})")

    src = Path(args.cifar10)
    t_raw, n = _timed(lambda: _raw_decode(src)) if src.is_file() else (float("nan"), 0)
    t_cold, d = _timed(lambda: load_dataset("cifar10", data_root=str(src)))
    warm = [_timed(lambda: load_dataset("cifar10", data_root=str(src)))[0] for _ in range(args.warm_repeats)]
    t_warm = statistics.median(warm)
    print(f"cifar10 {src}: {d.images.shape} {d.images.dtype}")
    print(f"  raw stream decode of {n} images: {t_raw:.2f} s")
    print(f"  cold load: {t_cold:.2f} s  (cold / raw decode = {t_cold / t_raw:.2f})")
    print(f"  warm load: {t_warm:.2f} s  (median of {len(warm)}; cold / warm = {t_cold / t_warm:.1f}x)")


if __name__ == "__main__":
    main()
