"""The `effnet-lite0` extractor: ImageNet-trained EfficientNet-Lite0, global-average-pooled, 1280-d.

``f(I) = mean_{h,w} Phi((resize_s(I) - 127) / 128)[:, h, w]`` where ``Phi`` is the network's last
convolutional map and ``resize_s`` the bilinear resize to ``s x s`` of `datasets.features.images`
(grey images repeated on 3 channels). Computed once per (dataset, network, input size, weights) and
cached on disk (`datasets.features.cache`); any subset of rows can be asked for.

These are not the papers' VGG-16 fc7 features (no offline VGG-16 weights exist): every report says
"EfficientNet-Lite0 features".

Default input size, chosen by measurement (``scripts/measure_feature_defaults.py``; CIFAR-10 test
images, 2,000 = 200 per class from the JPEG copy, 2 shared CPU cores, batch 64, best of 3 timings):

    ======  =======  =========  ===================  ====================
    size    img/s    P@100 cos  mAP, 32-bit PCA sign  mAP, 64-bit PCA sign
    ======  =======  =========  ===================  ====================
    (filled in by the measurement)
    ======  =======  =========  ===================  ====================
"""
from __future__ import annotations

from typing import Any

import numpy as np

from datasets.base import Dataset
from datasets.features.backbone import Backbone
from datasets.features.cache import as_rows, cached_rows
from datasets.features.images import fetch_images

DEFAULT_INPUT_SIZE = 96
DEFAULT_BATCH_SIZE = 64
# Part of every cache key: bump when the preprocessing changes so old caches are not reused.
PREPROCESSING = "squash-bilinear-antialias|grey-repeat|(x-127)/128|global-average"


def pooled_features(data: Dataset, network: str, *, name: str, indices: Any = None,
                    input_size: int = DEFAULT_INPUT_SIZE, batch_size: int = DEFAULT_BATCH_SIZE,
                    device: Any = None, cache: bool = True) -> tuple[np.ndarray, dict]:
    """Pooled features of ``network`` for the rows ``indices`` (all rows when None), in that order."""
    backbone = Backbone(network, input_size, device)
    rows = np.arange(len(data)) if indices is None else as_rows(indices, len(data))
    dim = int(backbone.model._conv_head.out_channels)
    described = backbone.describe()
    info = {"features": name, "features_dim": dim, "pretrained": "ImageNet", "pooling": "global-average",
            "preprocessing": PREPROCESSING, **described}

    def compute(batch_rows: np.ndarray) -> np.ndarray:
        images = fetch_images(data.images, batch_rows)
        return backbone.pooled(backbone.normalize(backbone.prepare(images)))

    key = {"network": network, "input_size": backbone.input_size, "preprocessing": PREPROCESSING,
           "weights_sha256": described["weights_sha256"]}
    feats, path = cached_rows(data, rows, compute, kind=f"{name}-s{backbone.input_size}", key=key,
                              row_shape=(dim,), dtype=np.float32, info=info, batch_size=batch_size,
                              use_cache=cache)
    return feats, {**info, "features_cache": path, "device": str(backbone.device)}


def extract_effnet_lite0(data: Dataset, *, indices: Any = None, input_size: int = DEFAULT_INPUT_SIZE,
                         batch_size: int = DEFAULT_BATCH_SIZE, device: Any = None,
                         cache: bool = True) -> tuple[np.ndarray, dict]:
    """``(len(indices), 1280)`` float32 EfficientNet-Lite0 features (see the module docstring)."""
    return pooled_features(data, "efficientnet-lite0", name="effnet-lite0", indices=indices,
                           input_size=input_size, batch_size=batch_size, device=device, cache=cache)
