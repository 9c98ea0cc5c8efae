"""Comparison plots from tracked runs (matplotlib, written to a file; no display needed)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.metrics import label as metric_label
from bench.table import summarise


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or assumed
    import matplotlib.pyplot as plt

    return plt


def figure_path(output: str | Path) -> Path:
    """The file a figure is written to: ``output`` as given when its suffix is a format matplotlib
    writes; with no suffix, ``.png`` added.

    Raises `bench.errors.UsageError` for a suffix matplotlib cannot write (one line listing those it can).
    """
    from bench.errors import UsageError

    output = Path(output)
    formats = _pyplot().figure().canvas.get_supported_filetypes()
    _pyplot().close("all")
    if not output.suffix:
        return output.with_name(output.name + ".png")
    if output.suffix[1:].lower() not in formats:
        raise UsageError(f"cannot write a figure as {output.name}: use one of the suffixes "
                         f"{', '.join('.' + f for f in sorted(formats))}")
    return output


def _save(fig, output: str | Path) -> Path:
    fig.tight_layout()
    output = figure_path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    _pyplot().close(fig)
    return output


def plot_metric_vs_bits(runs: pd.DataFrame, metric: str, output: str | Path, *, title: str = "") -> Path:
    """One line per method: ``metric`` (mean ± std over seeds) against code length, one panel per
    experiment (dataset/protocol)."""
    plt = _pyplot()

    experiments = list(dict.fromkeys(runs["experiment"]))
    fig, axes = plt.subplots(1, len(experiments), figsize=(5.0 * len(experiments), 3.8), squeeze=False)
    for ax, exp in zip(axes[0], experiments):
        stats = summarise(runs[runs["experiment"] == exp], metric)
        for method, part in stats.groupby("method", sort=True):
            part = part.sort_values("n_bits")
            ax.errorbar(part["n_bits"], part["mean"], yerr=part["std"], marker="o", capsize=3, label=method)
        ax.set_xscale("log", base=2)
        bits = sorted(stats["n_bits"].unique())
        ax.set_xticks(bits, [str(b) for b in bits])
        ax.set_xlabel("code length (bits)")
        ax.set_ylabel(metric_label(metric))
        ax.set_title(exp)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, output)


def plot_time_vs_metric(runs: pd.DataFrame, metric: str, output: str | Path) -> Path:
    """Training time against ``metric`` for every run: where each method sits on the cost/quality plane."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for method, part in runs.groupby("method", sort=True):
        ax.scatter(part["fit_seconds"], part[metric], label=method, s=18)
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel(metric_label(metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, output)
