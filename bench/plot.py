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


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def method_styles(methods) -> dict[str, dict]:
    """One colour and marker per method, fixed by the sorted list of ``methods`` (the rows of an
    experiment), so a method looks the same in every figure of that experiment."""
    plt = _pyplot()
    colours = plt.get_cmap("tab10").colors
    names = sorted(set(methods))
    return {m: {"color": colours[i % len(colours)], "marker": MARKERS[i % len(MARKERS)]} for i, m in enumerate(names)}


def _finish_curves(fig, ax, subtitle: str, title: str):
    """Grid, legend, the axes' subtitle and the figure's title of a curve figure, laid out; returns ``fig``."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(subtitle, fontsize=9)
    _suptitle(fig, title)
    fig.tight_layout()
    return fig


def _suptitle(fig, title: str, extra: str = "") -> None:
    """The figure's title, wrapped to its width (titles name dataset, protocol, features and seeds)."""
    import textwrap

    width = max(40, int(fig.get_figwidth() * 13))
    text = "\n".join(textwrap.fill(t, width) for t in (title, extra) if t)
    if text:
        fig.suptitle(text, fontsize=9)


def save_figure(fig, output: str | Path, *, also_pdf: bool = False) -> list[Path]:
    """Write ``fig`` to ``output`` (and beside it as PDF when ``also_pdf``); closes it. Returns the files."""
    fig.tight_layout()
    output = figure_path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    written = [output]
    if also_pdf and output.suffix.lower() != ".pdf":
        fig.savefig(output.with_suffix(".pdf"))
        written.append(output.with_suffix(".pdf"))
    _pyplot().close(fig)
    return written


def plot_metric_vs_bits(runs: pd.DataFrame, metric: str, output: str | Path | None, *, title: str = "",
                        styles: dict | None = None, spread: str = "seeds", also_pdf: bool = False):
    """One line per method: ``metric`` (mean, error bars ± std as `bench.paper.cell_stats` with
    ``spread``) against code length, one panel per experiment (dataset/protocol).

    Returns the path written (the figure itself when ``output`` is None)."""
    from bench.paper import cell_stats

    plt = _pyplot()
    styles = styles or method_styles(runs["method"])
    experiments = list(dict.fromkeys(runs["experiment"]))
    fig, axes = plt.subplots(1, len(experiments), figsize=(5.6 * len(experiments), 4.2), squeeze=False)
    for ax, exp in zip(axes[0], experiments):
        stats = cell_stats(runs[runs["experiment"] == exp], metric, spread)
        for method, part in stats.groupby("method", sort=True):
            part = part.sort_values("n_bits")
            ax.errorbar(part["n_bits"], part["mean"], yerr=part["std"].fillna(0.0), capsize=3, label=method,
                        **styles.get(method, {}))
        ax.set_xscale("log", base=2)
        bits = sorted(stats["n_bits"].unique())
        ax.set_xticks(bits, [str(b) for b in bits])
        ax.set_xlabel("code length (bits)")
        ax.set_ylabel(metric_label(metric))
        ax.set_title(exp if len(experiments) > 1 or not title else "")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    from bench.paper import SPREADS

    _suptitle(fig, title, f"error bars: ± std {SPREADS[spread]}")
    if output is None:
        fig.tight_layout()
        return fig
    return save_figure(fig, output, also_pdf=also_pdf)[0]


def pareto_front(times, values) -> list[int]:
    """Indices of the points no other point beats on both axes (less time and higher value), ordered by
    time: the cost/quality trade-offs worth choosing."""
    order = sorted(range(len(times)), key=lambda i: (times[i], -values[i]))
    front, best = [], float("-inf")
    for i in order:
        if values[i] > best:
            front.append(i)
            best = values[i]
    return front


def plot_time_vs_metric(runs: pd.DataFrame, metric: str, output: str | Path | None, *, title: str = "",
                        styles: dict | None = None, also_pdf: bool = False):
    """Mean training time (log scale) against mean ``metric`` per (method, code length), one panel per
    experiment: each point labelled with its code length, the Pareto front (`pareto_front`) drawn."""
    plt = _pyplot()
    styles = styles or method_styles(runs["method"])
    experiments = list(dict.fromkeys(runs["experiment"]))
    fig, axes = plt.subplots(1, len(experiments), figsize=(6.4 * len(experiments), 4.6), squeeze=False)
    for ax, exp in zip(axes[0], experiments):
        part = runs[runs["experiment"] == exp].dropna(subset=[metric, "fit_seconds"])
        points = part.groupby(["method", "n_bits"])[["fit_seconds", metric]].mean().reset_index()
        for method, group in points.groupby("method", sort=True):
            ax.scatter(group["fit_seconds"], group[metric], label=method, s=36, **styles.get(method, {}))
            for _, r in group.iterrows():
                ax.annotate(f"{int(r['n_bits'])}", (r["fit_seconds"], r[metric]), textcoords="offset points",
                            xytext=(4, 3), fontsize=7, color=styles.get(method, {}).get("color", "k"))
        front = pareto_front(list(points["fit_seconds"]), list(points[metric]))
        if front:
            ax.step(points["fit_seconds"].iloc[front], points[metric].iloc[front], where="post", color="0.4",
                    linestyle="--", linewidth=1, label="Pareto front", zorder=0)
        ax.set_xscale("log")
        ax.set_xlabel("training time (s, log scale; mean over runs)")
        ax.set_ylabel(metric_label(metric))
        ax.set_title(exp if len(experiments) > 1 or not title else "")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    _suptitle(fig, title, "points labelled with their code length (bits)" if title else "")
    if output is None:
        fig.tight_layout()
        return fig
    return save_figure(fig, output, also_pdf=also_pdf)[0]


def plot_pr_curves(curves: dict[str, pd.DataFrame], n_bits: int, *, title: str = "", styles: dict | None = None):
    """Precision against recall of Hamming-ball retrieval, one curve per method (``curves[method]``:
    columns radius, precision, recall, averaged over runs), radius 0, 2 and every 4th marked. Returns
    the figure."""
    plt = _pyplot()
    styles = styles or method_styles(curves)
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    for method in sorted(curves):
        c = curves[method].sort_values("radius")
        style = styles.get(method, {})
        ax.plot(c["recall"], c["precision"], color=style.get("color"), label=method, linewidth=1.4)
        marked = c[c["radius"].isin([0, 2]) | (c["radius"] % 4 == 0)]
        ax.scatter(marked["recall"], marked["precision"], s=18, **style)
    ax.set_xlabel("recall (Hamming ball of radius r, r = 0 ... bits)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    return _finish_curves(fig, ax, f"precision-recall by Hamming radius, {n_bits} bits", title)


def plot_precision_at_n(curves: dict[str, pd.DataFrame], n_bits: int, *, title: str = "",
                        styles: dict | None = None):
    """Precision of the first N retrieved items against N, one curve per method (``curves[method]``:
    columns n, precision, averaged over runs). Returns the figure."""
    plt = _pyplot()
    styles = styles or method_styles(curves)
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    for method in sorted(curves):
        c = curves[method].sort_values("n")
        ax.plot(c["n"], c["precision"], label=method, **styles.get(method, {}), markersize=4, linewidth=1.4)
    ax.set_xlabel("N (items retrieved, Hamming ranking)")
    ax.set_ylabel("precision@N")
    return _finish_curves(fig, ax, f"precision@N, {n_bits} bits", title)


def plot_retrieval_examples(examples: dict[str, pd.DataFrame], image_of, label_of, n_bits: int, *,
                            title: str = "", n_queries: int = 4):
    """For each of the first ``n_queries`` recorded queries: the query image, then per method a row of
    its top-10 retrieved images, framed green when relevant and red otherwise.

    ``examples[method]``: columns query_id, rank, database_id, relevant (one run's ``retrieval_top10.csv``);
    ``image_of(item id)`` -> ``uint8`` ``(H, W)`` or ``(H, W, 3)``; ``label_of(item id)`` -> text.
    Returns the figure."""
    plt = _pyplot()
    methods = sorted(examples)
    queries = list(dict.fromkeys(examples[methods[0]]["query_id"]))[:n_queries]
    n_top = int(max(e["rank"].max() for e in examples.values()))
    n_rows = len(queries) * len(methods)
    fig, axes = plt.subplots(n_rows, n_top + 2, figsize=(1.05 * (n_top + 2) + 0.6, 1.08 * n_rows + 0.7),
                             squeeze=False, gridspec_kw={"width_ratios": [1, 0.15] + [1] * n_top})
    for qi, query in enumerate(queries):
        for mi, method in enumerate(methods):
            row = axes[qi * len(methods) + mi]
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
            if mi == 0:
                row[0].imshow(image_of(query), cmap="gray")
                row[0].set_title(f"query\n{label_of(query)}", fontsize=7)
                for spine in row[0].spines.values():
                    spine.set_visible(True)
                    spine.set_color("0.2")
            row[1].text(0.5, 0.5, method, rotation=90, ha="center", va="center", fontsize=7)
            top = examples[method][examples[method]["query_id"] == query].sort_values("rank")
            for ax, r in zip(row[2:], top.itertuples()):
                ax.imshow(image_of(int(r.database_id)), cmap="gray")
                colour = "#1a9641" if r.relevant else "#d7191c"
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_color(colour)
                    spine.set_linewidth(3)
    _suptitle(fig, title, f"top-10 retrieved at {n_bits} bits (green frame: relevant to the query; red: not)")
    fig.tight_layout(h_pad=0.3, w_pad=0.1)
    return fig
