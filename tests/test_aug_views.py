"""The ``aug_views`` side input: CIBHash's random augmentations (datasets.features.augment) and their
cached pool of features (datasets.features.side.aug_views).

The augmentation tests need torch only; the side-input tests run the real network at a 32 px input on
a few synthetic images, each with a private cache.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hashbench.datasets.base import Dataset  # noqa: E402
from hashbench.datasets.features import LOCAL_KEYS, compute_features, compute_side  # noqa: E402
from hashbench.datasets.features import augment  # noqa: E402
from hashbench.datasets.features.images import to_input_batch  # noqa: E402

SIZE = 32


def _rgb(n=12, seed=0, hw=(32, 32)) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(name="synthetic-rgb", labels=rng.integers(0, 4, n),
                   images=rng.integers(0, 256, (n, *hw, 3), dtype=np.uint8), source="test")


IDENTITY = {"crop": (0, 0, 32, 32), "flip": False, "jitter": None, "grey": False, "blur_sigma": None}


# ----------------------------------------------------------------------------- random choices


@pytest.fixture(scope="module")
def draws():
    return [augment.draw_augmentation(augment.view_rng(0, row, v), 32, 32) for row in range(1000) for v in range(4)]


def test_each_random_choice_has_the_authors_probability(draws):
    n = len(draws)

    def near(share, p):  # four standard errors of a binomial share
        return abs(share - p) < 4 * math.sqrt(p * (1 - p) / n)

    assert near(np.mean([d["flip"] for d in draws]), augment.FLIP_P)
    assert near(np.mean([d["jitter"] is not None for d in draws]), augment.JITTER_P)
    assert near(np.mean([d["grey"] for d in draws]), augment.GREY_P)
    assert near(np.mean([d["blur_sigma"] is not None for d in draws]), augment.BLUR_P)


def test_crops_jitter_and_blur_stay_in_the_authors_ranges(draws):
    areas, ratios = [], []
    for d in draws:
        top, left, h, w = d["crop"]
        assert 0 <= top and top + h <= 32 and 0 <= left and left + w <= 32
        areas.append(h * w / 1024)
        ratios.append(w / h)
    areas, ratios = np.array(areas), np.array(ratios)
    # rounding the sides to whole pixels of a 32 px image moves the area and ratio a little
    assert areas.min() >= 0.45 and areas.max() <= 1.0 and 0.70 < areas.mean() < 0.80
    assert ratios.min() >= 0.7 and ratios.max() <= 1.4 / 0.97
    factors = {k: [] for k in ("brightness", "contrast", "saturation", "hue")}
    for d in draws:
        if d["jitter"]:
            assert sorted(name for name, _ in d["jitter"]) == sorted(factors)
            for name, value in d["jitter"]:
                factors[name].append(value)
    for name in ("brightness", "contrast", "saturation"):
        assert min(factors[name]) >= 0.6 and max(factors[name]) <= 1.4 and abs(np.mean(factors[name]) - 1) < 0.02
    assert min(factors["hue"]) >= -0.1 and max(factors["hue"]) <= 0.1 and abs(np.mean(factors["hue"])) < 0.005
    orders = {tuple(name for name, _ in d["jitter"]) for d in draws if d["jitter"]}
    assert len(orders) == 24  # every order of the four operations occurs
    sigmas = [d["blur_sigma"] for d in draws if d["blur_sigma"] is not None]
    assert min(sigmas) >= 0.1 and max(sigmas) <= 2.0


def test_draws_depend_on_seed_row_and_view_only():
    a = augment.draw_augmentation(augment.view_rng(3, 17, 2), 32, 32)
    assert a == augment.draw_augmentation(augment.view_rng(3, 17, 2), 32, 32)
    others = [augment.draw_augmentation(augment.view_rng(*key), 32, 32) for key in ((4, 17, 2), (3, 18, 2), (3, 17, 1))]
    assert all(o != a for o in others)


def test_a_crop_that_cannot_fit_falls_back_to_the_centre():
    class Never:  # an aspect ratio far outside the image's: every draw misses
        def uniform(self, lo, hi):
            return hi

        def integers(self, lo, hi):
            raise AssertionError("no position is drawn for the fallback")

    assert augment.draw_crop(Never(), 4, 100) == (0, (100 - 5) // 2, 4, 5)  # 4 x round(4 * 4/3)


# ----------------------------------------------------------------------------- operations


def test_identity_choices_give_the_resized_image():
    img = _rgb(1).images[0]
    out = augment.augment_image(img, 48, IDENTITY)
    expected = to_input_batch(img[None], 48, "cpu", channels_last=False)[0]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_crop_and_flip():
    img = _rgb(1).images[0]
    out = augment.augment_image(img, 16, {**IDENTITY, "crop": (4, 8, 16, 16), "flip": True})
    expected = torch.from_numpy(img[4:20, 8:24].astype(np.float32)).permute(2, 0, 1).flip(2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)


def test_colour_operations_follow_torchvision_definitions():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 5, 5, generator=g) * 255
    grey = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    torch.testing.assert_close(augment.colour_op(x, "brightness", 0.5), x * 0.5)
    torch.testing.assert_close(augment.colour_op(x, "contrast", 0.0), grey.mean().expand(3, 5, 5))
    torch.testing.assert_close(augment.colour_op(x, "saturation", 0.0), grey.expand(3, 5, 5))
    for name in ("brightness", "contrast", "saturation"):
        torch.testing.assert_close(augment.colour_op(x, name, 1.0), x)
    assert augment.colour_op(x, "brightness", 1.4).max() <= 255.0  # clipped
    torch.testing.assert_close(augment.colour_op(x, "hue", 0.0), x, rtol=0, atol=1e-3)
    red = torch.tensor([255.0, 0.0, 0.0]).view(3, 1, 1)
    torch.testing.assert_close(augment.adjust_hue(red, 1 / 3), torch.tensor([0.0, 255.0, 0.0]).view(3, 1, 1),
                               rtol=0, atol=1e-3)
    torch.testing.assert_close(augment.adjust_hue(red, -1 / 3), torch.tensor([0.0, 0.0, 255.0]).view(3, 1, 1),
                               rtol=0, atol=1e-3)
    # a hue shift keeps each pixel's value (max) and its grey pixels grey
    shifted = augment.adjust_hue(x, 0.07)
    torch.testing.assert_close(shifted.max(0).values, x.max(0).values, rtol=0, atol=1e-3)
    flat = torch.full((3, 2, 2), 77.0)
    torch.testing.assert_close(augment.adjust_hue(flat, 0.05), flat, rtol=0, atol=1e-3)


def test_grey_and_blur():
    img = _rgb(1).images[0]
    out = augment.augment_image(img, 32, {**IDENTITY, "grey": True})
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    flat = torch.full((3, 6, 6), 100.0)
    torch.testing.assert_close(augment.gaussian_blur(flat, 1.5), flat)
    x = torch.zeros(3, 5, 5)
    x[:, 2, 2] = 1.0
    blurred = augment.gaussian_blur(x, 1.0)
    w = math.exp(-0.5)
    total = (1 + 2 * w) ** 2
    assert blurred[0, 2, 2].item() == pytest.approx(1 / total, rel=1e-6)
    assert blurred[0, 1, 2].item() == pytest.approx(w / total, rel=1e-6)
    assert blurred[0, 1, 1].item() == pytest.approx(w * w / total, rel=1e-6)
    assert blurred.sum().item() == pytest.approx(3.0, rel=1e-6)


def test_views_of_a_grey_image_have_three_equal_channels():
    img = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    out = augment.augmented_batch([img], np.array([0]), 0, 0, 32)
    assert out.shape == (1, 3, 32, 32) and torch.equal(out[0, 0], out[0, 1])


# ----------------------------------------------------------------------------- the side input


def test_aug_views_shape_determinism_cache_and_provenance(data_home):
    data = _rgb(8)
    rows = np.array([6, 1, 3])
    views, info = compute_side(data, "aug_views", indices=rows, input_size=SIZE, n_views=3, seed=7)
    assert views.shape == (3, 3, 1280) and views.dtype == np.float32 and np.isfinite(views).all()
    assert info["n_views"] == 3 and info["seed"] == 7 and info["extractor"] == "effnet-lite0"
    assert "crop_scale=(0.5, 1.0)" in info["augmentation"] and info["input_size"] == SIZE
    assert Path(info["cache"]).is_relative_to(data_home / "features")
    # another order of the rows and no cache: the same numbers (each view depends on seed, row, view)
    uncached, uncached_info = compute_side(data, "aug_views", indices=rows[::-1], input_size=SIZE, n_views=3,
                                           seed=7, cache=False, batch_size=1)
    np.testing.assert_allclose(uncached[::-1], views, rtol=1e-5, atol=1e-5)
    assert {k for k in info if info[k] != uncached_info[k]} <= LOCAL_KEYS
    # views differ from each other and from the plain features
    feats, _ = compute_features(data, "effnet-lite0", indices=rows, input_size=SIZE)
    assert not np.allclose(views[:, 0], views[:, 1], atol=1e-3)
    assert not np.allclose(views[:, 0], feats, atol=1e-3)
    # another seed: other views in another store
    other, other_info = compute_side(data, "aug_views", indices=rows, input_size=SIZE, n_views=3, seed=8)
    assert other_info["cache"] != info["cache"] and not np.allclose(other, views, atol=1e-3)


def test_aug_views_are_read_back_from_the_cache_without_the_network(data_home, monkeypatch):
    data = _rgb(6)
    first, _ = compute_side(data, "aug_views", indices=[0, 2], input_size=SIZE, n_views=2)
    from hashbench.datasets.features.backbone import Backbone

    def refuse(self, x):
        raise AssertionError("the network ran although the views are cached")

    monkeypatch.setattr(Backbone, "pooled", refuse)
    again, _ = compute_side(data, "aug_views", indices=[2, 0], input_size=SIZE, n_views=2)
    np.testing.assert_array_equal(again, first[::-1])


def test_views_are_the_network_on_the_augmented_images(data_home):
    data = _rgb(4)
    rows = np.array([2, 0])
    views, _ = compute_side(data, "aug_views", indices=rows, input_size=SIZE, n_views=2, seed=1, cache=False,
                            runtime="torch")
    from hashbench.datasets.features.backbone import Backbone

    net = Backbone("efficientnet-lite0", SIZE, "cpu", "torch")
    x = augment.augmented_batch(data.images[rows], rows, 1, 1, SIZE)
    np.testing.assert_allclose(views[:, 1], net.pooled(net.normalize(x)), rtol=1e-5, atol=1e-5)
