"""The frozen networks' runtime (ONNX Runtime by default on CPU, torch on request) and the harness's one
thread setting (`bench.threads`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from hashbench.datasets import DataError, Dataset, load_dataset  # noqa: E402
from hashbench.datasets.features import compute_features, compute_side, inherited_side_settings  # noqa: E402
from hashbench.datasets.features import onnx_runtime  # noqa: E402
from hashbench.datasets.features.backbone import Backbone, resolve_runtime  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def real_images():
    """24 real photographs' worth of texture: Fashion-MNIST test images (the default dataset's own)."""
    data = load_dataset("fashion-mnist")
    rows = np.arange(60000, 60024)
    return Dataset(name="fmnist-24", labels=data.labels[rows], images=np.asarray(data.images[rows]),
                   source="fashion-mnist test images 0-23")


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_both_runtimes_give_the_same_features_tags_and_views_on_real_images(data_home, real_images):
    ort_feats, ort_info = compute_features(real_images, "effnet-lite0", input_size=SIZE, runtime="onnxruntime")
    pt_feats, pt_info = compute_features(real_images, "effnet-lite0", input_size=SIZE, runtime="torch")
    assert ort_info["runtime"] == "onnxruntime" and pt_info["runtime"] == "torch"
    assert _relative(ort_feats, pt_feats) < 1e-4
    assert not np.array_equal(ort_feats, pt_feats)  # not byte-identical: hence separate caches
    assert ort_info["cache"] != pt_info["cache"]
    # the default on a CPU is ONNX Runtime, served from that cache
    default, default_info = compute_features(real_images, "effnet-lite0", input_size=SIZE)
    assert default_info["runtime"] == "onnxruntime" and default_info["cache"] == ort_info["cache"]
    np.testing.assert_array_equal(default, ort_feats)
    # side inputs follow the features' runtime (one setting for every frozen network of a run)
    for info in (ort_info, pt_info):
        for name in ("views", "tags"):
            assert inherited_side_settings(name, info)["runtime"] == info["runtime"]
    ort_views, vi = compute_side(real_images, "views", angles=(0.0, 10.0), input_size=SIZE, runtime="onnxruntime")
    pt_views, _ = compute_side(real_images, "views", angles=(0.0, 10.0), input_size=SIZE, runtime="torch")
    assert vi["runtime"] == "onnxruntime" and _relative(ort_views, pt_views) < 1e-4
    np.testing.assert_array_equal(ort_views[:, 0], ort_feats)  # unrotated views are the same runtime's features
    # tags: the top-5 of the logits; a near-tie may swap, so compare the logits themselves too
    bb_ort = Backbone("efficientnet-lite0", SIZE, "cpu", "onnxruntime")
    bb_pt = Backbone("efficientnet-lite0", SIZE, "cpu", "torch")
    raw = np.asarray(real_images.images[:8])
    by_ort = bb_ort.logits(bb_ort.normalize(bb_ort.prepare(raw)))  # its graph normalises: normalize is the identity
    by_torch = bb_pt.logits(bb_pt.normalize(bb_pt.prepare(raw)))
    assert _relative(by_ort, by_torch) < 1e-4
    ort_tags, ti = compute_side(real_images, "tags", k=5, tag_model="efficientnet-lite0", input_size=SIZE,
                                runtime="onnxruntime")
    pt_tags, _ = compute_side(real_images, "tags", k=5, tag_model="efficientnet-lite0", input_size=SIZE,
                              runtime="torch")
    assert ti["runtime"] == "onnxruntime" and (ort_tags != pt_tags).sum() <= 4  # at most two swapped ties


def test_the_exported_graph_is_cached_reused_and_keyed(data_home, monkeypatch):
    first = Backbone("efficientnet-lite0", SIZE, "cpu", "onnxruntime")
    assert first._onnx.exported_now
    graph = Path(first._onnx.path)
    key = json.loads((graph.parent / "key.json").read_text())
    assert key["opset"] == onnx_runtime.OPSET and key["exporter"] == "torchscript" and key["torch"] == torch.__version__
    assert key["weights_sha256"] == first.describe()["weights_sha256"] and "onnx" in key
    mtime = graph.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("the cached graph must be reused, not exported again")

    monkeypatch.setattr(onnx_runtime, "_export", no_export)
    again = Backbone("efficientnet-lite0", SIZE, "cpu", "onnxruntime")
    assert not again._onnx.exported_now and Path(again._onnx.path) == graph and graph.stat().st_mtime_ns == mtime
    # another process reuses it too (nothing lives only in memory)
    code = ("from hashbench.datasets.features.backbone import Backbone; "
            f"print(Backbone('efficientnet-lite0', {SIZE}, 'cpu', 'onnxruntime')._onnx.exported_now)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip() == "False"
    # another input size, or a change of anything in the key, is another graph
    monkeypatch.undo()
    monkeypatch.setenv("HASHBENCH_DATA", str(data_home))
    assert Backbone("efficientnet-lite0", SIZE + 32, "cpu", "onnxruntime")._onnx.exported_now
    monkeypatch.setattr(onnx_runtime, "GRAPH_VERSION", "changed")
    changed = Backbone("efficientnet-lite0", SIZE, "cpu", "onnxruntime")
    assert changed._onnx.exported_now and Path(changed._onnx.path) != graph


def test_a_failed_export_leaves_nothing_behind_and_says_what_to_do(data_home, monkeypatch):
    def broken(model, size, path):
        Path(path).write_bytes(b"half a graph")
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_runtime, "_export", broken)
    with pytest.raises(DataError, match=r"exporting efficientnet-lite0 at 64 px to ONNX failed: RuntimeError: "
                                        r"exporter exploded; use the feature option runtime=torch"):
        Backbone("efficientnet-lite0", SIZE, "cpu", "onnxruntime")
    assert list((data_home / "onnx").iterdir()) == []  # no partial folder, no temporary folder


def test_a_folder_without_its_key_file_is_never_used(data_home):
    first = Backbone("efficientnet-lite0", SIZE, "cpu", "onnxruntime")
    folder = Path(first._onnx.path).parent
    (folder / "key.json").unlink()  # as if a copy had been cut short
    (folder / "model.onnx").write_bytes(b"garbage")
    again = Backbone("efficientnet-lite0", SIZE, "cpu", "onnxruntime")
    assert again._onnx.exported_now and (folder / "key.json").is_file()  # replaced by a whole export
    x = torch.zeros(2, 3, SIZE, SIZE)
    assert again.pooled(x).shape == (2, 1280)


def test_runtime_values_and_devices():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_runtime(None, cpu) == "onnxruntime" and resolve_runtime("auto", cpu) == "onnxruntime"
    assert resolve_runtime(None, cuda) == "torch" and resolve_runtime("torch", cpu) == "torch"
    with pytest.raises(DataError, match="runtime 'onnxruntime' runs on the CPU only here, but the device is cuda"):
        resolve_runtime("onnxruntime", cuda)
    for bad in ("tensorrt", 1, True, ""):
        with pytest.raises(DataError, match="runtime"):
            resolve_runtime(bad, cpu)


def test_torch_caches_keep_their_old_key(data_home):
    """Caches made before the runtime setting existed were made by torch: they stay valid for runtime=torch."""
    bb = Backbone("efficientnet-lite0", SIZE, "cpu", "torch")
    assert bb.cache_key() == {}
    assert Backbone("efficientnet-lite0", SIZE, "cpu", "onnxruntime").cache_key()["runtime"] == "onnxruntime"


# ------------------------------------------------------------------------------------------- threads

def test_set_threads_reaches_every_library():
    import faiss
    import numba
    from threadpoolctl import threadpool_info

    from bench.threads import set_threads

    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        assert faiss.omp_get_max_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
        bb = Backbone("efficientnet-lite0", 32, "cpu", "onnxruntime")
        session = onnx_runtime._session(bb._onnx.path, torch.get_num_threads())
        assert session.get_session_options().intra_op_num_threads == 1
    finally:
        set_threads(before)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_thread_counts_are_usage_errors(bad):
    from bench.errors import UsageError
    from bench.threads import check_threads

    with pytest.raises(UsageError, match=r"--threads must be an integer >= 1"):
        check_threads(bad)


@pytest.mark.parametrize("shape", [(5, 32, 32, 3), (4, 28, 28), (3, 40, 24, 3)])
def test_the_input_layout_changes_no_value(shape):
    """ONNX Runtime gets contiguous NCHW batches, torch channels-last ones: the same numbers either way."""
    from hashbench.datasets.features.images import to_input_batch

    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for size in (32, 64, 96):
        a, b = to_input_batch(images, size, "cpu", True), to_input_batch(images, size, "cpu", False)
        assert torch.equal(a, b)
        assert b.is_contiguous() or len(shape) == 3  # grey images: one channel expanded to three, a view


def test_a_missing_onnx_package_is_named_and_versions_are_read_once(monkeypatch):
    from importlib import metadata

    from hashbench.datasets.errors import DataError
    from hashbench.datasets.features import backbone, onnx_runtime

    real, reads = metadata.version, []

    def version(package):
        reads.append(package)
        if package == "onnx":
            raise metadata.PackageNotFoundError(package)
        return real(package)

    monkeypatch.setattr(metadata, "version", version)
    backbone.installed_version.cache_clear()
    try:
        with pytest.raises(DataError, match="needs the package 'onnx'"):
            onnx_runtime._versions()
        assert backbone.installed_version("onnxruntime") == real("onnxruntime")
        backbone.installed_version("onnxruntime")
        assert reads.count("onnxruntime") == 1 and reads.count("onnx") == 1
    finally:
        backbone.installed_version.cache_clear()
