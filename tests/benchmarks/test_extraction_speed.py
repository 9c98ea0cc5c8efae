"""Throughput of `effnet-lite0` extraction (cold cache, disk writes included) against a bare torch loop.

Both run the same network object on the same 512 images at the default input size and batch size;
the bare loop does only what any extraction must (uint8 -> float, resize, normalise, forward, pool).
The ratio of their best-of-3 times, measured here in one run, must show at most 10 % overhead.
"""
from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from hashbench.datasets.base import Dataset  # noqa: E402
from hashbench.datasets.features import compute_features  # noqa: E402
from hashbench.datasets.features.backbone import Backbone, auto_batch_size  # noqa: E402
from hashbench.datasets.features.effnet import DEFAULT_INPUT_SIZE  # noqa: E402

N_IMAGES = 512
ROUNDS = 3


def test_extraction_throughput_is_within_10_percent_of_a_bare_loop(benchmark, tmp_path, monkeypatch):
    import torch.nn.functional as F

    size = DEFAULT_INPUT_SIZE
    bs = auto_batch_size(size, "cpu")  # the extractor's default batch on CPU
    images = np.random.default_rng(0).integers(0, 256, (N_IMAGES, 32, 32, 3), dtype=np.uint8)
    data = Dataset(name="speed", labels=np.zeros(N_IMAGES, np.int64), images=images, source="benchmark")
    model = Backbone("efficientnet-lite0", size, "cpu").model  # the very network object the extractor uses

    def bare() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for lo in range(0, N_IMAGES, bs):
                x = torch.from_numpy(images[lo:lo + bs]).permute(0, 3, 1, 2).float()
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
                out.append(model.extract_features((x - 127) / 128).mean((2, 3)).numpy())
        return np.concatenate(out)

    cold = itertools.count()
    times = {"bare": [], "ours": []}

    def ours() -> np.ndarray:
        monkeypatch.setenv("HASHBENCH_DATA", str(tmp_path / f"cache-{next(cold)}"))  # cold cache every round
        t0 = time.perf_counter()
        feats = compute_features(data, "effnet-lite0", input_size=size, device="cpu")[0]
        times["ours"].append(time.perf_counter() - t0)
        return feats

    with torch.inference_mode():  # warm-up: first-call allocations of both paths
        model.extract_features(torch.zeros(bs, 3, size, size))
    for _ in range(ROUNDS - 1):
        t0 = time.perf_counter()
        reference = bare()
        times["bare"].append(time.perf_counter() - t0)
        ours()
    t0 = time.perf_counter()
    bare()
    times["bare"].append(time.perf_counter() - t0)
    got = benchmark.pedantic(ours, rounds=1, iterations=1)

    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)
    ratio = min(times["bare"]) / min(times["ours"])  # our throughput as a fraction of the bare loop's
    benchmark.extra_info.update({"throughput_ratio": ratio, "bare_img_per_s": N_IMAGES / min(times["bare"]),
                                 "ours_img_per_s": N_IMAGES / min(times["ours"]), "input_size": size,
                                 "batch_size": bs, "torch_threads": torch.get_num_threads()})
    print(f"\nextraction {N_IMAGES / min(times['ours']):.0f} img/s, bare loop {N_IMAGES / min(times['bare']):.0f} "
          f"img/s, ratio {ratio:.3f} (size {size}, batch {bs}, {torch.get_num_threads()} threads)")
    assert ratio >= 0.9, f"extraction reaches {ratio:.1%} of a bare torch loop's throughput: {times}"
