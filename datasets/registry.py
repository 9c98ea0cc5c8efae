"""Registry of datasets: name -> loader, imported only when the dataset is chosen."""
from __future__ import annotations

import importlib
from typing import Callable

from datasets.base import Dataset
from datasets.errors import UnknownDatasetError

# name -> "module:function"; the function takes ``data_root`` (str | None) and returns a `Dataset`.
LOADERS: dict[str, str] = {
    "digits": "datasets.digits:load_digits",
    "fashion-mnist": "datasets.fashion_mnist:load_fashion_mnist",
    "cifar10": "datasets.cifar10:load_cifar10",
    "listfile": "datasets.listfile:load_listfile",
    "nus-wide-21": "datasets.listfile:load_nus_wide_21",
    "coco": "datasets.listfile:load_coco",
    "mirflickr25k": "datasets.listfile:load_mirflickr25k",
    "features": "datasets.feature_file:load_feature_file",
}


def dataset_names() -> list[str]:
    return sorted(LOADERS)


def get_loader(name: str) -> Callable[..., Dataset]:
    target = LOADERS.get(name)
    if target is None:
        raise UnknownDatasetError(name, dataset_names())
    module_name, _, func = target.partition(":")
    return getattr(importlib.import_module(module_name), func)


def load_dataset(name: str, data_root: str | None = None, **options) -> Dataset:
    """Load dataset ``name``; ``data_root`` points at a user's copy of its files."""
    return get_loader(name)(data_root=data_root, **options)
