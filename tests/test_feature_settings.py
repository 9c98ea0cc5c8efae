"""Feature-layer policy that needs no network: settings checked before anything runs
(`check_settings`), settings side inputs inherit from their features (`inherited_side_settings`),
and the machine-local info keys (`LOCAL_KEYS`)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hashbench.datasets import DataError, Dataset, UnknownDatasetError, compute_features
from hashbench.datasets.features import LOCAL_KEYS, check_settings, compute_side, inherited_side_settings

REPO = Path(__file__).resolve().parents[1]


def test_valid_settings_pass():
    check_settings("cifar10", None, {"input_size": 160, "batch_size": 8, "device": "cpu", "cache": False},
                   {"tags": {"k": 5, "tag_model": "same", "features_input_size": 96, "provider": "imagenet-topk"},
                    "views": {"angles": (0,), "extractor": "effnet-lite0", "input_size": 96}})
    check_settings("digits", "pixels", {}, {})
    check_settings("features", None, {}, {"tags": {"provider": "dataset"}})
    check_settings("features", "precomputed", {}, {})
    check_settings("my-lists", "effnet-lite0", {}, {})  # a name of no registry dataset: no dataset facts


@pytest.mark.parametrize("args, message", [
    (("cifar10", "effnet-b7", {}, {}), r"unknown feature extractor 'effnet-b7'; known: effnet-lite0, pixels"),
    (("cifar10", None, {"input_sise": 96}, {}),
     r"unknown setting\(s\) \['input_sise'\] for the 'effnet-lite0' extractor; allowed: \['input_size', "),
    (("digits", "pixels", {"input_size": 32}, {}), r"unknown setting\(s\) \['input_size'\] for the 'pixels' extractor"),
    (("cifar10", None, {}, {"captions": {}}), r"unknown side input 'captions'; known: aug_views, tags, views"),
    (("cifar10", None, {}, {"tags": {"kk": 3}}), r"unknown setting\(s\) \['kk'\] for side input 'tags'"),
    (("cifar10", None, {}, {"tags": {}, "views": {"angle": 5}}), r"\['angle'\] for side input 'views'"),
    (("features", "effnet-lite0", {}, {}), r"features holds pre-extracted features and no images"),
    (("features", None, {"input_size": 96}, {}),
     r"pre-extracted features, which take no settings; got \['input_size'\]"),
    (("cifar10", "precomputed", {}, {}), r"cifar10 has no pre-extracted features; choose one of"),
])
def test_wrong_settings_are_data_errors_before_loading(args, message):
    with pytest.raises(DataError, match=message):
        check_settings(*args)


def test_unknown_extractor_is_the_unknown_name_error():
    with pytest.raises(UnknownDatasetError):
        check_settings("cifar10", "vgg16", {}, {})


def test_check_settings_loads_no_data_and_imports_no_torch():
    code = textwrap.dedent("""
        import sys
        from hashbench.datasets.features import check_settings
        check_settings("cifar10", None, {"input_size": 96}, {"tags": {"k": 3}, "views": {}})
        try:
            check_settings("cifar10", None, {}, {"tags": {"kk": 3}})
        except Exception as err:
            print(type(err).__name__)
        loaded = sorted(m for m in sys.modules if m in ("torch", "sklearn", "PIL", "h5py", "scipy")
                        or m in ("hashbench.datasets.cifar10", "hashbench.datasets.fashion_mnist", "hashbench.datasets.digits"))
        print(loaded)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["DataError", "[]"]


def test_compute_features_agrees_with_check_settings_on_precomputed_features():
    data = Dataset(name="pre", labels=np.zeros(3, int), features=np.ones((3, 2), np.float32))
    feats, info = compute_features(data)
    assert info == {"name": "precomputed"} and feats.shape == (3, 2)
    with pytest.raises(DataError, match="take no settings"):
        compute_features(data, input_size=96)


def test_pixels_of_images_of_different_sizes_are_a_data_error():
    data = Dataset(name="ragged", labels=np.zeros(2, int),
                   images=[np.zeros((4, 4), np.uint8), np.zeros((5, 4), np.uint8)])
    with pytest.raises(DataError, match="pixel features need images of one size"):
        compute_features(data, "pixels")


# ---------------------------------------------------------------- inherited settings

EFFNET_INFO = {"name": "effnet-lite0", "dim": 1280, "input_size": 96, "weights_sha256": "ab" * 32,
               "cache": "/tmp/x", "device": "cpu", "batch_size": 16}


@pytest.mark.parametrize("name", ["views", "aug_views"])
def test_views_follow_the_features_extractor_and_input_size(name):
    assert inherited_side_settings(name, EFFNET_INFO) == {"extractor": "effnet-lite0", "input_size": 96}
    assert inherited_side_settings(name, {**EFFNET_INFO, "input_size": 160})["input_size"] == 160
    assert inherited_side_settings(name, {**EFFNET_INFO, "runtime": "onnxruntime"})["runtime"] == "onnxruntime"
    for info in ({"name": "pixels", "dim": 64}, {"name": "precomputed"}, {}):
        assert inherited_side_settings(name, info) == {}


def test_own_network_tags_read_the_features_input_size():
    assert inherited_side_settings("tags", EFFNET_INFO) == {"features_input_size": 96}
    assert inherited_side_settings("tags", {"name": "pixels", "dim": 64}) == {}
    assert inherited_side_settings("tags", {"name": "precomputed"}) == {}
    assert inherited_side_settings("captions", EFFNET_INFO) == {}


def test_inherited_settings_are_settings_the_side_inputs_take():
    for name in ("tags", "views", "aug_views"):
        check_settings("cifar10", None, {}, {name: inherited_side_settings(name, EFFNET_INFO)})


def test_pixel_features_info_and_inheritance_end_to_end():
    data = Dataset(name="px", labels=np.zeros(3, int), images=np.zeros((3, 2, 2), np.uint8))
    _, info = compute_features(data, "pixels")
    assert info == {"name": "pixels", "dim": 4}
    assert inherited_side_settings("views", info) == {} and inherited_side_settings("tags", info) == {}


def test_local_keys_and_unprefixed_side_info():
    assert LOCAL_KEYS == frozenset({"cache", "device", "batch_size"})
    data = Dataset(name="shipped", labels=np.zeros(3, int), side={"tags": np.eye(3, 4)})
    _, info = compute_side(data, "tags", indices=[2, 0])
    assert info == {"provider": "dataset", "dim": 4}
