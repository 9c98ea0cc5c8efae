"""Is a lead real? Paired comparisons of two configurations query by query.

Each finished run keeps the AP@K of every query (``query_ap.csv``, keyed by the query's item id). Two
configurations are compared on the same split: per query, AP averaged over the method seeds of each;
then the mean of the differences with a 95 % bootstrap confidence interval over queries
(`scipy.stats.bootstrap`, BCa) and the two-sided Wilcoxon signed-rank test (`scipy.stats.wilcoxon`).
Queries differ between split seeds, so each split is tested on its own; several splits are combined
by the mean of their differences and Fisher's method on their p-values (`scipy.stats.combine_pvalues`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
N_RESAMPLES = 9999
BOOTSTRAP_SEED = 0  # the interval is reproducible: the same runs give the same bounds


@dataclass(frozen=True)
class PairedResult:
    """A vs B on one split: ``mean_difference`` of AP (A - B) over ``n_queries`` queries, its
    ``ci_low``/``ci_high`` bootstrap bounds, the Wilcoxon ``p_value``; ``split_seed`` the split."""

    split_seed: int
    n_queries: int
    mean_a: float
    mean_b: float
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float


def read_query_ap(text: str) -> pd.Series:
    """A run's ``query_ap.csv`` as a Series of AP indexed by query id."""
    frame = pd.read_csv(io.StringIO(text))
    column = next(c for c in frame.columns if c.startswith("ap_at_"))
    return frame.set_index("query_id")[column].astype(float)


def paired_test(ap_a: pd.Series, ap_b: pd.Series, *, split_seed: int = 0) -> PairedResult:
    """Compare two per-query AP series (indexed by query id; each already averaged over method seeds).

    Raises ValueError when the two do not hold the same queries (runs on different splits)."""
    from scipy import stats

    if set(ap_a.index) != set(ap_b.index):
        raise ValueError(f"the two configurations were evaluated on different queries ({len(ap_a)} and "
                         f"{len(ap_b)} queries, {len(set(ap_a.index) & set(ap_b.index))} shared)")
    a = ap_a.sort_index().to_numpy()
    b = ap_b.reindex(ap_a.sort_index().index).to_numpy()
    diff = a - b
    if np.all(diff == diff[0]):  # no spread: the interval is the difference itself
        low = high = float(diff[0])
    else:
        ci = stats.bootstrap((diff,), np.mean, confidence_level=CONFIDENCE, n_resamples=N_RESAMPLES,
                             method="BCa", random_state=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
        low, high = float(ci.low), float(ci.high)
    # Wilcoxon cannot rank zero differences only: identical AP everywhere is no evidence of a difference
    p = 1.0 if np.all(diff == 0) else float(stats.wilcoxon(a, b, alternative="two-sided").pvalue)
    return PairedResult(int(split_seed), len(diff), float(a.mean()), float(b.mean()), float(diff.mean()),
                        low, high, p)


def combine(results: list[PairedResult]) -> tuple[float, float]:
    """(mean of the per-split mean differences, Fisher's combined p-value) of several splits; a single
    split is returned as it is."""
    from scipy import stats

    if len(results) == 1:
        return results[0].mean_difference, results[0].p_value
    p = float(stats.combine_pvalues([max(r.p_value, 1e-300) for r in results], method="fisher").pvalue)
    return float(np.mean([r.mean_difference for r in results])), p


def seed_averaged(texts: list[str]) -> pd.Series:
    """Per-query AP averaged over the method seeds whose ``query_ap.csv`` texts are given."""
    series = [read_query_ap(t) for t in texts]
    return pd.concat(series, axis=1).mean(axis=1)
