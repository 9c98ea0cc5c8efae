"""Side inputs of hashing methods, computed from a dataset's images and cached like features.

``compute_side(data, name, indices=..., **settings) -> (array, info)``, rows in the order of ``indices``;
``info`` is a flat dict whose keys carry neither the input's name nor a ``"side"`` entry (the harness
namespaces them); `datasets.features.LOCAL_KEYS` names those that describe the machine (``cache``):

* ``tags``: ``(n, T)`` uint8 0/1 multi-hot "semantic tags" (LAGNH's auxiliary input ``p_i``).
  - provider ``"imagenet-topk"`` (default): the ``k`` ImageNet classes with the highest logits of a
    pretrained classifier, so exactly ``k`` ones per row in ``T = 1000`` fixed columns (the ImageNet
    class order); the tag space never depends on the data, even when some classes are never predicted.
    LAGNH used 80 COCO detector categories; no offline detector exists, ImageNet top-k is the
    closest thing available and every report must say so. The default classifier is EfficientNet-Lite2,
    a network trained separately from the features' EfficientNet-Lite0, so its tags add more to the
    features than the feature network's own logits would (measured below); ``tag_model="same"`` uses
    those logits instead, read off the cached features (no second network pass), and is the default
    where `datasets.features.defaults` says so (Fashion-MNIST).
    The cache keeps each image's top-20 class ids, so any ``k <= 20`` reuses it.
  - provider ``"dataset"``: the dataset's own ``data.side["tags"]`` (e.g. MIRFlickr/NUS-WIDE tags); the
    default for a dataset that ships tags.
  - info: ``provider``, ``dim`` (T); predicted tags add ``model``, ``input_size``, ``weights_sha256``,
    ``columns``, ``k`` and ``cache`` (the store path; for ``tag_model="same"`` the features' store, and
    ``from`` saying the tags are the feature network's classifier on its pooled features).
* ``views``: ``(n, V, d)`` float32 features of rotated copies of each image (DeepBit), V = 4 angles
  -10, -5, +5, +10 degrees by default: the image is resized to the extractor's input size exactly as
  for its features, rotated about its centre at its own scale with the corners black, as the authors'
  augmentation leaves them (``rotation="black-corners"``, the default,
  `datasets.features.rotation.rotate_black_corners`), or centre-cropped to the largest same-aspect
  rectangle without empty corners and resized back (``rotation="inscribed-crop"``,
  `datasets.features.rotation.rotate_crop`), one bilinear resampling either way, then goes through the
  same network and pooling. Only training images need views. The default is the authors' way because
  the two are equal for DeepBit on a validation split of CIFAR-10's training split
  (``scripts/deepbit_rotation_study.py``: 64 bits, mAP@all, seeds 0-2: 0.3077 black corners, 0.3073
  crop; no seed differs by more than 0.0013).
  Info: ``extractor``, ``angles`` (e.g. ``"-10,-5,5,10"``), ``input_size``, ``weights_sha256``, ``dim``
  (d), ``rotation``, ``cache``.
* ``aug_views``: ``(n, V, d)`` float32 features of V randomly augmented copies of each image (CIBHash's
  views; V = 8 by default): the authors' random resized crop, horizontal flip, colour jitter, random
  grey and blur (`datasets.features.augment`), at the extractor's input size, through the same network
  and pooling. View ``v`` of row ``i`` is drawn from ``(seed, i, v)`` alone, so a seed gives the same pool
  whatever rows are asked for; the seed and V are part of the cache key. A method draws its pairs of
  views from this finite pool instead of fresh augmentations at every step. Only training images need
  them. Info: ``extractor``, ``n_views`` (V), ``seed``, ``augmentation`` (the parameters, one string),
  ``input_size``, ``weights_sha256``, ``runtime``, ``dim`` (d), ``cache``.

Which settings a side input takes from the features it accompanies is `inherited_side_settings`.

Tag defaults (EfficientNet-Lite2 at 160 px, k = 10) chosen by measurement
(``scripts/measure_feature_defaults.py``; 1,000 CIFAR-10 test images, 100 per class, JPEG copy). Over
all pairs of images, cells give: AUC of the tags' Jaccard overlap for "same class" / share of pairs with
a common tag / P(same class | common tag) (chance 0.099). img/s = per core of CPU time, default batch::

    model        size  img/s  k=1                  k=3                  k=5                  k=10                 k=20
    lite2          96   141   0.512/0.007/0.402    0.552/0.044/0.308    0.593/0.089/0.284    0.665/0.212/0.229    0.729/0.426/0.174
    lite2         128    85   0.515/0.008/0.420    0.564/0.046/0.346    0.611/0.096/0.304    0.689/0.227/0.237    0.753/0.456/0.174
    lite2         160    49   0.524/0.013/0.439    0.589/0.059/0.367    0.649/0.118/0.321    0.729/0.260/0.241    0.789/0.502/0.172
    lite2         224    25   0.535/0.020/0.401    0.614/0.091/0.322    0.669/0.164/0.278    0.742/0.335/0.212    0.787/0.606/0.150
    lite2         260    18   0.546/0.033/0.348    0.625/0.123/0.277    0.675/0.214/0.239    0.739/0.426/0.181    0.776/0.714/0.132
    same (lite0)  128   108   0.515/0.009/0.420    0.561/0.044/0.344    0.603/0.092/0.295    0.676/0.228/0.227    0.740/0.469/0.168

(For scale: the cosine similarity of the 128 px Lite0 features has AUC 0.728 on the same pairs. Summing
the z-scored feature cosine and k = 10 tag Jaccard gives 0.771 with Lite2 tags, 0.744 with the Lite0
network's own tags: the separately trained classifier adds more beyond the features.)
Size: 160 px reaches nearly the AUC of the loader's native 260 px (0.729 vs 0.739 at k = 10) in under
a third of the time; 60,000 images take ~20 min of one core. k: among 1, 3, 5, 10 the AUC grows with k
(single top-1 tags are shared by <2 % of pairs), so 10. k = 20 ranks pairs better still (0.789) but then
half of all pairs share a tag: the tags stop being a few labels per image, as LAGNH's detector tags
are, and become a dense descriptor; it stays one setting away (``k=20``) and reuses the same cache.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from hashbench.datasets.base import Dataset
from hashbench.datasets.errors import DataError
from hashbench.datasets.features.augment import AUGMENTATION_VERSION, augmentation_spec, augmented_batch
from hashbench.datasets.features.backbone import (BATCH_SIZE, CACHE, DEVICE, INPUT_SIZE, RUNTIME, Backbone,
                                                  auto_batch_size)
from hashbench.datasets.features.cache import as_rows, cached_rows
from hashbench.datasets.features.constraints import Choices, FiniteRealSequence, Integral, Interval, declare_settings
from hashbench.datasets.features.defaults import default_settings
from hashbench.datasets.features.effnet import DEFAULT_BATCH_SIZE, DEFAULT_INPUT_SIZE, PREPROCESSING
from hashbench.datasets.features.images import fetch_images
from hashbench.datasets.features.rotation import rotate_black_corners, rotate_crop

N_IMAGENET_CLASSES = 1000
TAG_CACHE_K = 20  # class ids kept per image in the cache: any k up to this reuses it
DEFAULT_TAG_K = 10
DEFAULT_TAG_MODEL = "efficientnet-lite2"
DEFAULT_TAG_INPUT_SIZE = 160
TAG_MODELS = ("efficientnet-lite2", "efficientnet-lite0", "same")
TAG_PROVIDERS = ("imagenet-topk", "dataset")
VIEW_ANGLES = (-10.0, -5.0, 5.0, 10.0)
# rotation setting of `views` -> (the rotation, its tag in the cache key: bump the version on any change)
VIEW_ROTATIONS = {"inscribed-crop": (rotate_crop, "inscribed-crop-v1"),
                  "black-corners": (rotate_black_corners, "black-corners-v1")}
DEFAULT_AUG_VIEWS = 8  # augmented views per image in the pool (CIBHash draws two per step)
DEFAULT_AUG_SEED = 0
# extractor name -> network, for the extractors whose features views can be computed with
VIEW_EXTRACTORS = {"effnet-lite0": "efficientnet-lite0"}
# the extractor whose network's own classifier gives the tags of ``tag_model="same"``
OWN_TAGS_EXTRACTOR = "effnet-lite0"


def side_names() -> list[str]:
    """Names of the side inputs, sorted."""
    return sorted(_SIDE)


def side_function(name: str) -> Callable[..., tuple[np.ndarray, dict]]:
    """The function computing side input ``name``: ``fn(data, rows, **settings) -> (array, info)``.

    Raises:
        DataError: ``name`` is not a side input.
    """
    fn = _SIDE.get(name)
    if fn is None:
        raise DataError(f"unknown side input {name!r}; known: {', '.join(side_names())}")
    return fn


def compute_side(data: Dataset, name: str, *, indices: Any = None, **settings: Any) -> tuple[np.ndarray, dict]:
    """Side input ``name`` for the rows ``indices`` of ``data`` (all rows when None), in that order.

    Returns ``(array, info)``: ``tags`` ``(len(indices), T)`` uint8 0/1, ``views`` ``(len(indices), V, d)``
    float32; ``info`` as in the module docstring. ``settings`` go over the dataset's defaults
    (`datasets.features.defaults`).

    Raises:
        DataError: unknown side input, a setting it does not take, bad ``indices``, no images (or no
            shipped tags) to compute it from, or a setting value it refuses (e.g. ``k`` out of range).
    """
    from hashbench.datasets.features.registry import check_setting_names, setting_names

    fn = side_function(name)
    check_setting_names(settings, setting_names(fn, ("data", "rows")), f"side input {name!r}")
    rows = np.arange(len(data)) if indices is None else as_rows(indices, len(data))
    return fn(data, rows, **{**default_settings(data.name, name), **settings})


def inherited_side_settings(name: str, feature_info: dict[str, Any]) -> dict[str, Any]:
    """The settings side input ``name`` takes from the features it accompanies, given their ``info``
    (as `compute_features` returns it: ``name``, ``input_size``, ...).

    * ``views`` (and ``aug_views``) are features of rotated (augmented) images: computed by the features'
      extractor at the features' input size (``{"extractor": ..., "input_size": ...}``), unless the
      features are pixels or pre-extracted (then the views' own defaults apply).
    * ``tags`` from the feature network itself (``tag_model="same"``) are read off the features' cache
      at the features' input size (``{"features_input_size": ...}``), when the features are that
      network's.
    * All three run their networks with the features' ``runtime`` when the features come from a network
      (one runtime setting for every frozen network of a run: ``--feature-option runtime=torch``).
    Anything else inherits nothing (``{}``). These settings override the user's for the same names.
    """
    features = feature_info.get("name")
    out: dict[str, Any] = {}
    if name in ("views", "aug_views", "tags") and feature_info.get("runtime"):
        out["runtime"] = feature_info["runtime"]
    if name in ("views", "aug_views") and features not in (None, "pixels", "precomputed"):
        out.update(extractor=features, input_size=feature_info["input_size"])
    if name == "tags" and features == OWN_TAGS_EXTRACTOR:
        out["features_input_size"] = feature_info["input_size"]
    return out


def _need_images(data: Dataset, what: str) -> None:
    if data.images is None:
        raise DataError(f"{data.name} has no images to compute {what} from")


def multi_hot(top_ids: np.ndarray, k: int, n_columns: int = N_IMAGENET_CLASSES) -> np.ndarray:
    """``(n, n_columns)`` uint8 with ones at the first ``k`` ids of each row of ``top_ids``."""
    out = np.zeros((len(top_ids), n_columns), np.uint8)
    np.put_along_axis(out, np.asarray(top_ids[:, :k], np.int64), 1, axis=1)
    return out


@declare_settings("side input 'tags'", {
    "provider": [None, Choices(TAG_PROVIDERS)],  # None: "dataset" when the data ship tags, else "imagenet-topk"
    "k": [Interval(Integral, 1, TAG_CACHE_K)],  # the cache keeps the top TAG_CACHE_K classes of each image
    "tag_model": [Choices(TAG_MODELS)],
    "input_size": [None, *INPUT_SIZE],  # None: the tag model's default size
    "features_input_size": [None, *INPUT_SIZE],  # inherited from the features (`inherited_side_settings`)
    "batch_size": BATCH_SIZE,
    "device": DEVICE,
    "runtime": RUNTIME,  # who runs the tag network; with tag_model="same", inherited from the features
    "cache": CACHE,
})
def tags(data: Dataset, rows: np.ndarray, *, provider: str | None = None, k: int = DEFAULT_TAG_K,
         tag_model: str = DEFAULT_TAG_MODEL, input_size: int | None = None,
         features_input_size: int | None = None, batch_size: int | None = DEFAULT_BATCH_SIZE,
         device: Any = None, runtime: Any = None, cache: bool = True) -> tuple[np.ndarray, dict]:
    """``(len(rows), T)`` uint8 0/1 tags of ``rows`` and their info (see the module docstring).

    Every setting is checked against the constraints declared above before anything runs, whatever
    the provider (`datasets.features.constraints`).

    Raises:
        DataError: a setting its constraints refuse (unknown ``provider`` or ``tag_model``, ``k`` not an
            integer in ``[1, 20]``, ...; a device this machine lacks), no images (or, for
            ``provider="dataset"``, no or malformed shipped tags), or a network error as
            `datasets.features.effnet.pooled_features`.
    """
    if provider is None:  # a dataset's own tags when it ships them, else predicted ones
        provider = "dataset" if data.side.get("tags") is not None else "imagenet-topk"
    if provider == "dataset":
        return _dataset_tags(data, rows)
    _need_images(data, "tags")
    if tag_model == "same":
        # the features' own input size, so that their cache is what the tags are computed from
        size = input_size or features_input_size or DEFAULT_INPUT_SIZE
        return _own_network_tags(data, rows, k=int(k), input_size=size,
                                 batch_size=batch_size, device=device, runtime=runtime, cache=cache)
    network, size = tag_model, input_size or DEFAULT_TAG_INPUT_SIZE
    backbone = Backbone(network, size, device, runtime)
    described = backbone.describe()
    if batch_size is None:
        batch_size = auto_batch_size(backbone.input_size, backbone.device)

    def compute(batch_rows: np.ndarray) -> np.ndarray:
        import torch

        logits = backbone.logits(backbone.normalize(backbone.prepare(fetch_images(data.images, batch_rows))))
        return torch.topk(torch.from_numpy(logits), TAG_CACHE_K, dim=1).indices.numpy().astype(np.int16)

    key = {"network": network, "input_size": backbone.input_size, "preprocessing": PREPROCESSING,
           "weights_sha256": described["weights_sha256"], "top": TAG_CACHE_K, **backbone.cache_key()}
    info = {"provider": "imagenet-topk", "model": network, "input_size": backbone.input_size,
            "weights_sha256": described["weights_sha256"], "runtime": backbone.runtime, "dim": N_IMAGENET_CLASSES,
            "columns": "ImageNet-1k classes (fixed)"}
    top, path = cached_rows(data, rows, compute, kind=f"tags-{network}-s{backbone.input_size}", key=key,
                            row_shape=(TAG_CACHE_K,), dtype=np.int16, info=info, batch_size=batch_size,
                            use_cache=cache)
    return multi_hot(top, int(k)), {**info, "k": int(k), "cache": path}


def _own_network_tags(data: Dataset, rows: np.ndarray, *, k: int, input_size: int, batch_size: int | None,
                      device: Any, runtime: Any, cache: bool) -> tuple[np.ndarray, dict]:
    """Top-k classes of the feature network's own classifier, applied to its (cached) pooled features.

    EfficientNet-Lite0's logits are ``fc(pooled)`` (its dropout is off in eval mode), so these tags cost
    one ``1280 x 1000`` product per image once the features exist, instead of a second network pass.
    """
    import torch

    from hashbench.datasets.features.effnet import extract_effnet_lite0

    network = VIEW_EXTRACTORS[OWN_TAGS_EXTRACTOR]
    feats, feat_info = extract_effnet_lite0(data, indices=rows, input_size=input_size, batch_size=batch_size,
                                            device=device, runtime=runtime, cache=cache)
    backbone = Backbone(network, input_size, "cpu", "torch")  # only its classifier layer is used
    fc = backbone.model._fc
    top = []
    with torch.inference_mode():
        for start in range(0, len(feats), 8192):
            block = torch.from_numpy(np.ascontiguousarray(feats[start:start + 8192], dtype=np.float32))
            top.append(torch.topk(fc(block), k, dim=1).indices.numpy())
    info = {"provider": "imagenet-topk", "model": network, "input_size": int(input_size),
            "weights_sha256": feat_info.get("weights_sha256"), "runtime": feat_info.get("runtime"),
            "dim": N_IMAGENET_CLASSES, "columns": "ImageNet-1k classes (fixed)",
            "from": "the feature network's classifier on its pooled features", "k": k,
            "cache": feat_info.get("cache", "")}
    top_ids = np.concatenate(top) if top else np.zeros((0, k), np.int64)
    return multi_hot(top_ids, k), info


def _dataset_tags(data: Dataset, rows: np.ndarray) -> tuple[np.ndarray, dict]:
    shipped = data.side.get("tags")
    if shipped is None:
        raise DataError(f"{data.name} ships no tags; use provider='imagenet-topk' to predict them from the images")
    shipped = np.asarray(shipped)
    if shipped.ndim != 2 or shipped.shape[0] != len(data):
        raise DataError(f"{data.name}: shipped tags must be an (n, T) array with n = {len(data)}, "
                        f"got shape {shipped.shape}")
    out = shipped[rows]
    if not np.isin(out, (0, 1)).all():
        raise DataError(f"{data.name}: shipped tags must be 0/1 multi-hot")
    return out.astype(np.uint8), {"provider": "dataset", "dim": int(shipped.shape[1])}


@declare_settings("side input 'views'", {
    "extractor": [Choices(VIEW_EXTRACTORS)],
    "input_size": INPUT_SIZE,
    "angles": [FiniteRealSequence()],  # degrees, counter-clockwise
    "rotation": [Choices(VIEW_ROTATIONS)],  # the authors' "black-corners" (default) or "inscribed-crop"
    "batch_size": BATCH_SIZE,
    "device": DEVICE,
    "runtime": RUNTIME,  # inherited from the features when they are the views' extractor's
    "cache": CACHE,
})
def views(data: Dataset, rows: np.ndarray, *, extractor: str = "effnet-lite0",
          input_size: int = DEFAULT_INPUT_SIZE, angles: tuple[float, ...] = VIEW_ANGLES,
          rotation: str = "black-corners", batch_size: int | None = DEFAULT_BATCH_SIZE, device: Any = None,
          runtime: Any = None, cache: bool = True) -> tuple[np.ndarray, dict]:
    """``(len(rows), len(angles), d)`` float32 features of rotated copies of ``rows`` and their info
    (see the module docstring).

    Every setting is checked against the constraints declared above before anything runs
    (`datasets.features.constraints`).

    Raises:
        DataError: a setting its constraints refuse (an ``extractor`` views cannot be computed with, not
            in `VIEW_EXTRACTORS`; ``angles`` not a non-empty sequence of finite reals; ...; a device this
            machine lacks), no images, or a network error as `datasets.features.effnet.pooled_features`.
    """
    network = VIEW_EXTRACTORS[extractor]
    rotate, rotation_key = VIEW_ROTATIONS[rotation]
    angles = tuple(float(a) for a in angles)
    _need_images(data, "views")
    backbone = Backbone(network, input_size, device, runtime)
    described = backbone.describe()
    if batch_size is None:
        batch_size = auto_batch_size(backbone.input_size, backbone.device)
    dim = int(backbone.model._conv_head.out_channels)

    def compute(batch_rows: np.ndarray) -> np.ndarray:
        x = backbone.prepare(fetch_images(data.images, batch_rows))
        return np.stack([backbone.pooled(backbone.normalize(rotate(x, a))) for a in angles], axis=1)

    key = {"network": network, "input_size": backbone.input_size, "preprocessing": PREPROCESSING,
           "weights_sha256": described["weights_sha256"], "angles": angles, "rotation": rotation_key,
           **backbone.cache_key()}
    info = {"extractor": extractor, "angles": ",".join(f"{a:g}" for a in angles),
            "input_size": backbone.input_size, "weights_sha256": described["weights_sha256"],
            "runtime": backbone.runtime,
            "dim": dim, "rotation": rotation}
    out, path = cached_rows(data, rows, compute, kind=f"views-{extractor}-s{backbone.input_size}", key=key,
                            row_shape=(len(angles), dim), dtype=np.float32, info=info,
                            batch_size=batch_size, use_cache=cache)
    return out, {**info, "cache": path}


@declare_settings("side input 'aug_views'", {
    "extractor": [Choices(VIEW_EXTRACTORS)],
    "input_size": INPUT_SIZE,
    "n_views": [Interval(Integral, 2, None)],  # a method draws two different views of a row
    "seed": [Interval(Integral, 0, 2 ** 32 - 1)],
    "batch_size": BATCH_SIZE,
    "device": DEVICE,
    "runtime": RUNTIME,  # inherited from the features when they are the views' extractor's
    "cache": CACHE,
})
def aug_views(data: Dataset, rows: np.ndarray, *, extractor: str = "effnet-lite0",
              input_size: int = DEFAULT_INPUT_SIZE, n_views: int = DEFAULT_AUG_VIEWS, seed: int = DEFAULT_AUG_SEED,
              batch_size: int | None = DEFAULT_BATCH_SIZE, device: Any = None, runtime: Any = None,
              cache: bool = True) -> tuple[np.ndarray, dict]:
    """``(len(rows), n_views, d)`` float32 features of randomly augmented copies of ``rows`` and their
    info (see the module docstring and `datasets.features.augment`).

    Every setting is checked against the constraints declared above before anything runs
    (`datasets.features.constraints`).

    Raises:
        DataError: a setting its constraints refuse (an ``extractor`` not in `VIEW_EXTRACTORS`,
            ``n_views`` not an integer >= 2, ``seed`` not an integer in [0, 2^32 - 1], ...; a device this
            machine lacks), no images, or a network error as `datasets.features.effnet.pooled_features`.
    """
    network = VIEW_EXTRACTORS[extractor]
    n_views, seed = int(n_views), int(seed)
    _need_images(data, "aug_views")
    backbone = Backbone(network, input_size, device, runtime)
    described = backbone.describe()
    if batch_size is None:
        batch_size = auto_batch_size(backbone.input_size, backbone.device)
    dim = int(backbone.model._conv_head.out_channels)
    spec = augmentation_spec()

    def compute(batch_rows: np.ndarray) -> np.ndarray:
        images = fetch_images(data.images, batch_rows)
        out = []
        for v in range(n_views):
            x = augmented_batch(images, batch_rows, v, seed, backbone.input_size).to(backbone.device)
            out.append(backbone.pooled(backbone.normalize(x)))
        return np.stack(out, axis=1)

    key = {"network": network, "input_size": backbone.input_size, "preprocessing": PREPROCESSING,
           "weights_sha256": described["weights_sha256"], "n_views": n_views, "seed": seed,
           "augmentation": spec, **backbone.cache_key()}
    info = {"extractor": extractor, "n_views": n_views, "seed": seed,
            "augmentation": ", ".join(f"{k}={v}" for k, v in spec.items()),
            "input_size": backbone.input_size, "weights_sha256": described["weights_sha256"],
            "runtime": backbone.runtime, "dim": dim}
    out, path = cached_rows(data, rows, compute,
                            kind=f"augviews-{extractor}-s{backbone.input_size}-v{n_views}-{AUGMENTATION_VERSION}",
                            key=key, row_shape=(n_views, dim), dtype=np.float32, info=info,
                            batch_size=batch_size, use_cache=cache)
    return out, {**info, "cache": path}


_SIDE: dict[str, Callable[..., tuple[np.ndarray, dict]]] = {"tags": tags, "views": views, "aug_views": aug_views}
