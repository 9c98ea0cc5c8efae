"""Throughput of `effnet-lite0` extraction against a bare torch loop.

Both use the same weights on the same 512 images at the default input size and batch size; the bare
loop does only what any extraction must (uint8 -> float, resize, normalise, forward, pool) with torch's
eager network; the harness's side is `compute_features` without its on-disk cache (whose fixed cost per
call is timed once apart and reported, see below). The images are cut into chunks of 64; every round
times each chunk once on each side, the (chunk, side) pairs in a fresh shuffled order, and each side's cost
is the sum over chunks of the chunk's best time over the rounds (7 rounds on one thread, 3 on two). The
ratio of the two sums is measured here in one run for each runtime of the frozen network: with
``runtime=torch`` the harness's overhead must stay within 10 % (ratio >= 0.9); with the CPU default, ONNX
Runtime, extraction must be at least 2.5x the bare torch loop (the speed issue's target). Gated on one
thread, reported on two.

Why best times of shuffled chunks: a shared two-core VM is slowed now and then by ~1 s at a time, and
such a pause can recur with the period of a round. CI measured whole-pass pairs of 7 rounds at one thread
in which the harness's pass was ~1 s slower in 5 rounds and the bare loop's in 1 (paired ratios 0.74-1.25
for two paths that run the same operations), failing the gate at a median of 0.81. A pause only ever adds
time, so the best of several timings of the same half-second of work estimates its cost; shuffling keeps
a periodic pause from landing on the same side every round. The harness's fixed cost per call (settings,
the backbone's description) is paid once per chunk here, 8 times per pass instead of once, so the gate is
stricter than a real extraction of 60,000 images.
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
CHUNK_IMAGES = 64  # a multiple of the CPU batch (16), so both sides run the same batches
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
    chunks = [np.arange(lo, min(lo + CHUNK_IMAGES, N_IMAGES)) for lo in range(0, N_IMAGES, CHUNK_IMAGES)]

    def bare(rows: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for lo in range(rows[0], rows[-1] + 1, bs):
                x = torch.from_numpy(images[lo:min(lo + bs, rows[-1] + 1)]).permute(0, 3, 1, 2).float()
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
                out.append(model.extract_features((x - 127) / 128).mean((2, 3)).numpy())
        return np.concatenate(out)

    cache = tmp_path / "graphs" / "features"

    def ours(rows: np.ndarray | None = None, store: bool = False) -> np.ndarray:
        """The harness's extraction of ``rows`` (all images when None); with ``store``, into a cold on-disk cache."""
        if cache.exists():
            shutil.rmtree(cache)
        return compute_features(data, "effnet-lite0", indices=rows, input_size=size, device="cpu",
                                runtime=runtime, cache=store)[0]

    monkeypatch.setenv("HASHBENCH_DATA", str(tmp_path / "graphs"))
    Backbone("efficientnet-lite0", size, "cpu", runtime)  # export the ONNX graph once, outside the timing
    with torch.inference_mode():  # warm-up: first-call allocations of both paths
        model.extract_features(torch.zeros(bs, 3, size, size))
    ours(chunks[0])
    sides = {"bare": bare, "ours": ours}
    best = {name: [np.inf] * len(chunks) for name in sides}
    round_s = {name: [] for name in sides}  # each round's total per side, for information
    outputs = {name: [None] * len(chunks) for name in sides}
    jobs = [(name, c) for c in range(len(chunks)) for name in sides]
    order = np.random.default_rng(1)
    rounds = ROUNDS if threads in GATED_THREADS else 3
    for _ in range(rounds):
        took = {name: 0.0 for name in sides}
        for j in order.permutation(len(jobs)):
            name, c = jobs[j]
            t0 = time.perf_counter()
            outputs[name][c] = sides[name](chunks[c])
            dt = time.perf_counter() - t0
            took[name] += dt
            best[name][c] = min(best[name][c], dt)
        for name in sides:
            round_s[name].append(took[name])
    # The cold-cache call (block files written and fsync'ed, a lock, two small JSON files) is timed once,
    # apart: its disk cost is a constant per call, ~0.01 s here but up to ~0.5 s on a slow CI disk (inferred:
    # CI once measured a steady 0.5 s gap between this path and the bare loop at 512 images that the
    # development machine does not show), which 512 images would weigh ~100x more than a real 60,000-image
    # extraction does. The gate compares the per-image work: fetching, resizing, the network, pooling.
    t0 = time.perf_counter()
    got = benchmark.pedantic(ours, kwargs={"store": True}, rounds=1, iterations=1)
    cold_cache_s = time.perf_counter() - t0

    reference = np.concatenate(outputs["bare"])
    np.testing.assert_allclose(np.concatenate(outputs["ours"]), reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)
    bare_s, ours_s = sum(best["bare"]), sum(best["ours"])
    ratio = bare_s / ours_s
    round_ratios = [b / o for b, o in zip(round_s["bare"], round_s["ours"])]
    benchmark.extra_info.update({"throughput_ratio": ratio, "round_ratios": round_ratios,
                                 "bare_best_chunks_s": bare_s, "ours_best_chunks_s": ours_s,
                                 "round_s": round_s, "bare_img_per_s": N_IMAGES / bare_s,
                                 "ours_img_per_s": N_IMAGES / ours_s, "cold_cache_call_s": cold_cache_s,
                                 "input_size": size, "batch_size": bs, "chunk_images": CHUNK_IMAGES,
                                 "rounds": rounds, "threads": threads, "runtime": runtime})
    print(f"\nextraction ({runtime}) {N_IMAGES / ours_s:.0f} img/s, bare torch loop {N_IMAGES / bare_s:.0f} img/s, "
          f"ratio {ratio:.3f} (per round {', '.join(f'{r:.2f}' for r in round_ratios)}; size {size}, batch {bs}, "
          f"{threads} threads); a cold-cache call of all {N_IMAGES} images {cold_cache_s:.2f} s")
    if threads not in GATED_THREADS:
        return
    assert ratio >= MIN_RATIO[runtime], (f"extraction with {runtime} reaches {ratio:.2f}x a bare torch loop's "
                                         f"throughput (at least {MIN_RATIO[runtime]}x expected): best chunk "
                                         f"times {best}, round totals {round_s}")
