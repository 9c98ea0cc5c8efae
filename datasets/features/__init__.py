"""Feature extractors: images -> fixed-length float32 vectors, chosen by name."""
from datasets.features.registry import compute_features, extractor_names

__all__ = ["compute_features", "extractor_names"]
