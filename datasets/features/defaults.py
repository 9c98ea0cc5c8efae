"""Per-dataset defaults of the feature layer's settings, one table for extractors and side inputs.

``DATASET_SETTINGS[dataset][name]`` holds the settings `compute_features` (``name`` = an extractor)
or `compute_side` (``name`` = a side input) applies on that dataset unless the caller gives them
(``--feature-option`` / ``--side-option`` on the command line). Every run logs what was used.

Fashion-MNIST, so that the README's main job (LAGNH and ITQ, all 70,000 images extracted cold) fits
its 10-minute budget on two cores:

* ``effnet-lite0`` at 96 px: the images are 28 px; against 128 px the extraction runs 1.7x faster and
  ITQ loses 0.007 mAP@1000 at 64 bits (0.6339 vs 0.6409; 0.6191 vs 0.6225 at 32; 64 px: 0.6043 /
  0.5962), measured by scripts/measure_input_size.py on its 10,000 test images.
* ``tags`` from the feature network itself (``tag_model="same"``): Lite2 tags for all 70,000 images
  cost ~25-30 min of one core, three times the whole budget; the own tags cost under a second once
  the features exist. Measured price (scripts/lagnh_tag_source_study.py, the 10,000 test images, 96 px
  features, LAGNH 64 bits, 40 epochs of batch 1024, seed 0): mAP@1000 0.5513 with the own tags, 0.5782
  with Lite2's (on CIFAR-10's validation split: 0.4755 vs 0.5011).
"""
from __future__ import annotations

from typing import Any

DATASET_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "fashion-mnist": {"effnet-lite0": {"input_size": 96}, "tags": {"tag_model": "same"}},
}


def default_settings(data_name: str, name: str) -> dict[str, Any]:
    """The settings applied for the extractor or side input ``name`` on the dataset ``data_name``."""
    return dict(DATASET_SETTINGS.get(data_name, {}).get(name, {}))
