"""Datasets, evaluation protocols and feature extraction. Never imports `bench` or `methods`."""
from hashbench.datasets.base import TEST, TRAIN, Dataset
from hashbench.datasets.errors import DataError, UnknownDatasetError
from hashbench.datasets.features import compute_features, extractor_names
from hashbench.datasets.protocols import PROTOCOLS, Protocol, Split, get_protocol, make_split, split_digest
from hashbench.datasets.registry import check_loader_options, dataset_names, load_dataset

__all__ = [
    "PROTOCOLS", "TEST", "TRAIN", "DataError", "Dataset", "Protocol", "Split", "UnknownDatasetError",
    "check_loader_options", "compute_features", "dataset_names", "extractor_names", "get_protocol",
    "load_dataset", "make_split", "split_digest",
]
