"""The metric table: every number the harness records about a run, by name, with how to print it.

One owner for what a metric is called, how it is labelled, whether higher is better and how many
digits a table shows. The evaluation engine (`bench.evaluation`) computes the retrieval metrics and
stays free of the project; this table describes its keys (a test checks that every key the engine
returns is described here) and the harness's own measurements around a method.

Names are MLflow metric names. The engine's names that carry K (``map_at_{K}``, ``precision_at_{K}``)
take the protocol's K. Facts a method reports about itself are recorded as ``info.<name>`` and
per-epoch training curves as ``train.<name>`` (see `bench.record`); they are not in this table, so a
method can never write a number under a harness name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """How one metric is read and printed.

    * ``name``: the MLflow metric name (``"map_at_1000"``).
    * ``label``: what tables and plots call it (``"mAP@1000"``).
    * ``higher_is_better``: True for retrieval quality, False for costs, None where neither holds.
    * ``digits``: decimals a table shows.
    * ``source``: ``"engine"`` (computed by `bench.evaluation` from the codes) or ``"measure"`` (the
      harness's timing, memory and size measurements).
    """

    name: str
    label: str
    higher_is_better: bool | None
    digits: int
    source: str


_FIXED = {
    "map_all": Metric("map_all", "mAP@all", True, 4, "engine"),
    "map_tie_aware": Metric("map_tie_aware", "tie-aware mAP", True, 4, "engine"),
    "precision_r2": Metric("precision_r2", "P@r<=2", True, 4, "engine"),
    "recall_r2": Metric("recall_r2", "R@r<=2", True, 4, "engine"),
    "fit_seconds": Metric("fit_seconds", "training time (s)", False, 2, "measure"),
    "encode_seconds": Metric("encode_seconds", "encoding time (s)", False, 2, "measure"),
    "encode_database_seconds": Metric("encode_database_seconds", "database encoding time (s)", False, 2, "measure"),
    "encode_query_seconds": Metric("encode_query_seconds", "query encoding time (s)", False, 2, "measure"),
    "n_parameters": Metric("n_parameters", "parameters", False, 0, "measure"),
    # Saving the fitted hasher (pyfunc model) and the database codes (faiss index) to local files; only
    # in runs that keep them (not with --no-save-models).
    "save_seconds": Metric("save_seconds", "saving time (s)", False, 2, "measure"),
    # The database codes' health: how many different codes, how many bits never change (`runner.code_health`).
    "distinct_codes": Metric("distinct_codes", "distinct database codes", None, 0, "measure"),
    "constant_bits": Metric("constant_bits", "constant bits", False, 0, "measure"),
    # Peak resident memory during fit and encode, when the kernel's peak counter could be reset first.
    "peak_rss_mb": Metric("peak_rss_mb", "peak memory (MB)", False, 1, "measure"),
    # Where it could not be reset: the process's peak since it started, a different (larger) quantity.
    "process_peak_rss_mb": Metric("process_peak_rss_mb", "process peak memory (MB)", False, 1, "measure"),
}
_AT_K = {
    "map_at_": ("mAP@{}", "engine"),
    "precision_at_": ("P@{}", "engine"),
}
_K_NAME = re.compile(r"^(map_at_|precision_at_)(\d+)$")


def describe(name: str) -> Metric | None:
    """The `Metric` called ``name``, or None when the harness does not define it."""
    if name in _FIXED:
        return _FIXED[name]
    match = _K_NAME.match(name)
    if match:
        template, source = _AT_K[match.group(1)]
        return Metric(name, template.format(match.group(2)), True, 4, source)
    return None


def label(name: str) -> str:
    """What tables and plots call ``name``; names outside the table are shown as they are."""
    metric = describe(name)
    return metric.label if metric else name


def digits(name: str) -> int:
    """Decimals to print for ``name`` (4 for names outside the table)."""
    metric = describe(name)
    return metric.digits if metric else 4


def higher_is_better(name: str) -> bool | None:
    """True/False where the direction is known, None otherwise (nothing is marked best then)."""
    metric = describe(name)
    return metric.higher_is_better if metric else None


def run_metrics(topk: int) -> list[str]:
    """Every metric a finished run of a protocol with K = ``topk`` records, engine keys first."""
    return [f"map_at_{topk}", "map_all", "map_tie_aware", f"precision_at_{topk}", "precision_r2", "recall_r2",
            *(m.name for m in _FIXED.values() if m.source == "measure")]


def default_metric(topk: int) -> str:
    """The metric of a protocol's main table: mAP@K at its K."""
    return f"map_at_{topk}"
