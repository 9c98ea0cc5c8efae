"""A slow, independent retrieval score for method tests (never the harness's engine)."""
import numpy as np


def mean_average_precision(q_bits, db_bits, q_labels, db_labels):
    """Hamming ranking of unpacked 0/1 codes (stable), mAP over the whole database."""
    aps = []
    for bits, label in zip(q_bits, q_labels):
        dist = np.count_nonzero(db_bits != bits, axis=1)
        rel = db_labels[np.argsort(dist, kind="stable")] == label
        ranks = np.flatnonzero(rel) + 1
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    return float(np.mean(aps))
