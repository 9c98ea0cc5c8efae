"""The `effnet-lite0` extractor: ImageNet-trained EfficientNet-Lite0, global-average-pooled, 1280-d.

``f(I) = mean_{h,w} Phi((resize_s(I) - 127) / 128)[:, h, w]`` where ``Phi`` is the network's last
convolutional map and ``resize_s`` the bilinear resize to ``s x s`` of `datasets.features.images`
(grey images repeated on 3 channels). Computed once per (dataset, network, input size, weights) and
cached on disk (`datasets.features.cache`); any subset of rows can be asked for.

These are not the papers' VGG-16 fc7 features (no offline VGG-16 weights exist): every report says
"EfficientNet-Lite0 features".

Default input size 128 px, chosen by measurement (``scripts/measure_feature_defaults.py --threads 1``)
on 2,000 CIFAR-10 test images (200 per class, from the lossy JPEG copy), native 32 px upscaled.
Speed: images per second of CPU time on one thread at the default batch size (`auto_batch_size`),
best of 5 rounds timed round-robin on a busy shared 2-core machine (+-20 % between runs). Quality:
P@100 = mean precision of the 100 cosine nearest neighbours; mAP PCA-b = mAP of Hamming ranking by
``sign(PCA_b(x - mean))`` codes over all other images (a training-free stand-in for the hashing
methods fed with these features); AUC = how well the cosine similarity of a pair predicts "same
class" (on 1,000 of the images)::

    size   img/s/core   P@100    mAP PCA-32   mAP PCA-64   AUC
      64      419       0.297      0.159        0.150      0.669
      96      188       0.383      0.198        0.174      0.726
     128      109       0.398      0.213        0.188      0.728
     160       80       0.414      0.216        0.189      0.743
     224       41       0.407      0.211        0.185      0.751

Hash-code quality (mAP PCA-32/64) rises up to 128 px and is flat beyond (within +-0.005 at 160 and
224); 160 px adds 4 % to P@100 for 36 % more time (``input_size=160`` when that matters). Cold
extraction of all 60,000 CIFAR-10 images at 128 px: about 9 min on one core (measured 106-116 img/s
wall with one thread, disk cache included); each (dataset, size) is extracted only once.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hashbench.datasets.base import Dataset
from hashbench.datasets.features.backbone import (BATCH_SIZE, CACHE, DEVICE, INPUT_SIZE, RUNTIME, Backbone,
                                                  auto_batch_size)
from hashbench.datasets.features.cache import as_rows, cached_rows
from hashbench.datasets.features.constraints import declare_settings
from hashbench.datasets.features.images import fetch_images

DEFAULT_INPUT_SIZE = 128
DEFAULT_BATCH_SIZE = None  # None: `auto_batch_size` (16 at 128 px on CPU, 256 on a GPU)
# Part of every cache key: bump when the preprocessing changes so old caches are not reused.
PREPROCESSING = "squash-bilinear-antialias|grey-repeat|(x-127)/128|global-average"


def pooled_features(data: Dataset, network: str, *, name: str, indices: Any = None,
                    input_size: int = DEFAULT_INPUT_SIZE, batch_size: int | None = DEFAULT_BATCH_SIZE,
                    device: Any = None, runtime: Any = None, cache: bool = True) -> tuple[np.ndarray, dict]:
    """Pooled features of ``network`` for the rows ``indices`` (all rows when None), in that order.

    Returns ``(features, info)``: ``(len(indices), dim)`` float32 and the flat info ``name``, ``dim``,
    ``pretrained``, ``pooling``, ``preprocessing``, ``network``, ``input_size``, ``backbone_parameters``,
    ``weights_sha256``, the versions of torch and of the network packages (by package name), ``runtime``
    (``onnxruntime`` or ``torch``: who ran the network; with ONNX Runtime also the opset, exporter and
    onnx/onnxruntime versions), and the machine-local ``cache`` (store path, "" without cache), ``device``, ``batch_size``.

    Raises:
        DataError: ``input_size`` not allowed by `INPUT_SIZE` (an integer in [32, 1024]), a ``device``
            not allowed by `DEVICE` or absent from this machine, ``batch_size`` not None nor an integer
            >= 1, bad ``indices``, images that are not uint8 ``(H, W)`` / ``(H, W, 3)``, missing network
            packages, an unreadable cache, a ``runtime`` not allowed by `RUNTIME` or ``onnxruntime`` on a
            GPU device.
    """
    backbone = Backbone(network, input_size, device, runtime)
    if batch_size is None:
        batch_size = auto_batch_size(backbone.input_size, backbone.device)
    rows = np.arange(len(data)) if indices is None else as_rows(indices, len(data))
    dim = int(backbone.model._conv_head.out_channels)
    described = backbone.describe()
    info = {"name": name, "dim": dim, "pretrained": "ImageNet", "pooling": "global-average",
            "preprocessing": PREPROCESSING, **described}

    def compute(batch_rows: np.ndarray) -> np.ndarray:
        images = fetch_images(data.images, batch_rows)
        return backbone.pooled(backbone.normalize(backbone.prepare(images)))

    key = {"network": network, "input_size": backbone.input_size, "preprocessing": PREPROCESSING,
           "weights_sha256": described["weights_sha256"], **backbone.cache_key()}
    feats, path = cached_rows(data, rows, compute, kind=f"{name}-s{backbone.input_size}", key=key,
                              row_shape=(dim,), dtype=np.float32, info=info, batch_size=batch_size,
                              use_cache=cache)
    return feats, {**info, "cache": path, "device": str(backbone.device), "batch_size": batch_size}


@declare_settings("the 'effnet-lite0' extractor", {
    "input_size": INPUT_SIZE,  # pixels of the square network input: [32, 1024], see backbone.MAX_INPUT_SIZE
    "batch_size": BATCH_SIZE,  # None: `auto_batch_size`; else images per forward pass, >= 1
    "device": DEVICE,  # None / "auto" / "cpu" / "cuda" / "cuda:<k>" / "mps", one this machine has
    "runtime": RUNTIME,  # None / "auto" (ONNX Runtime on CPU, torch on GPU) / "onnxruntime" / "torch"
    "cache": CACHE,
})
def extract_effnet_lite0(data: Dataset, *, indices: Any = None, input_size: int = DEFAULT_INPUT_SIZE,
                         batch_size: int | None = DEFAULT_BATCH_SIZE, device: Any = None,
                         runtime: Any = None, cache: bool = True) -> tuple[np.ndarray, dict]:
    """``(len(indices), 1280)`` float32 EfficientNet-Lite0 features (see the module docstring); info and
    errors as `pooled_features`, with ``name`` ``"effnet-lite0"``; every setting is checked against the
    constraints declared above before anything runs (`datasets.features.constraints`)."""
    return pooled_features(data, "efficientnet-lite0", name="effnet-lite0", indices=indices,
                           input_size=input_size, batch_size=batch_size, device=device, runtime=runtime,
                           cache=cache)
