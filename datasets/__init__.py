"""Datasets, evaluation protocols and feature extraction. Never imports `bench` or `methods`."""
from datasets.base import TEST, TRAIN, Dataset
from datasets.errors import DataError, UnknownDatasetError
from datasets.features import compute_features, extractor_names
from datasets.protocols import PROTOCOLS, Protocol, Split, get_protocol, make_split, split_digest
from datasets.registry import check_loader_options, dataset_names, load_dataset

__all__ = [
    "PROTOCOLS", "TEST", "TRAIN", "DataError", "Dataset", "Protocol", "Split", "UnknownDatasetError",
    "check_loader_options", "compute_features", "dataset_names", "extractor_names", "get_protocol",
    "load_dataset", "make_split", "split_digest",
]
