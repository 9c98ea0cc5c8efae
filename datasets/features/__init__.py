"""Feature extractors: images -> fixed-length float32 vectors, chosen by name; side inputs (tags, views);
the feature-layer policy (settings checked before anything runs, settings side inputs inherit)."""
from hashbench.datasets.features.registry import LOCAL_KEYS, check_settings, compute_features, extractor_names
from hashbench.datasets.features.side import compute_side, inherited_side_settings, side_names

__all__ = ["LOCAL_KEYS", "check_settings", "compute_features", "compute_side", "extractor_names",
           "inherited_side_settings", "side_names"]
