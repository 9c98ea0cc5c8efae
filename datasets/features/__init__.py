"""Feature extractors: images -> fixed-length float32 vectors, chosen by name; side inputs (tags, views)."""
from datasets.features.registry import compute_features, extractor_names
from datasets.features.side import compute_side, side_names

__all__ = ["compute_features", "compute_side", "extractor_names", "side_names"]
