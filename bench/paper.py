"""Paper-ready tables of one experiment: methods x code lengths, mean ± std with n, best **bold**,
second underlined, missing cells shown, a dagger where the best's lead is not significant; rendered as
Markdown, LaTeX (booktabs), CSV and one self-contained HTML page.

A table is built once (`build_table`: numbers and marks) and rendered by format, so every format says
the same thing. Which runs a cell averages and how they are grouped is `bench.report`'s; what a metric
is called and whether higher is better is `bench.metrics`'s; the significance test is
`bench.significance`'s.
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from bench import metrics as metric_table

# How the spread of a cell is computed (`cell_stats`) and how a caption names it.
SPREADS = {
    "seeds": "over method seeds",
    "splits": "over split seeds (method seeds averaged first)",
    "both": "over method and split seeds",
}
ALPHA = 0.05  # a best value whose lead over the second has p >= ALPHA by the paired test carries a dagger
MISSING = "missing"  # a cell of a method that has no finished run at that code length

# Names a reader knows, for captions. Names not listed are shown as they are.
DATASET_NAMES = {"cifar10": "CIFAR-10", "fashion-mnist": "Fashion-MNIST", "digits": "scikit-learn digits (8x8)",
                 "nus-wide-21": "NUS-WIDE (21 concepts)", "coco": "MS-COCO", "mirflickr25k": "MIRFLICKR-25K",
                 "features": "pre-extracted features", "listfile": "a list-file dataset"}
FEATURE_NAMES = {"effnet-lite0": "ImageNet-trained EfficientNet-Lite0 features (1,280-d, global average pooling)",
                 "pixels": "raw pixels scaled to [0, 1]"}


# ------------------------------------------------------------------------------------------- numbers
def cell_stats(runs: pd.DataFrame, metric: str, spread: str = "seeds") -> pd.DataFrame:
    """Mean, spread and counts of ``metric`` per (method, n_bits).

    ``runs``: one row per run with ``method``, ``n_bits``, ``seed``, ``split_seed`` and ``metric``.
    The mean is the mean over split seeds of each split's mean over method seeds (the plain mean when
    every split has the same seeds). ``spread``: ``"seeds"`` the standard deviation over method seeds
    (ddof 1) within a split, averaged over splits; ``"splits"`` that of the per-split means;
    ``"both"`` that of all runs. A spread that needs two values and has one is NaN.

    Returns columns method, n_bits, mean, std, n (runs), n_seeds, n_splits.
    Raises KeyError for a metric the runs do not hold, ValueError for an unknown spread.
    """
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {list(SPREADS)}, got {spread!r}")
    if metric not in runs.columns:
        raise KeyError(metric)
    data = runs.dropna(subset=[metric])
    if "split_seed" not in data.columns:
        data = data.assign(split_seed=0)
    rows = []
    for (method, bits), part in data.groupby(["method", "n_bits"], sort=False):
        per_split = part.groupby("split_seed")[metric]
        split_means = per_split.mean()
        if spread == "seeds":
            std = per_split.std(ddof=1).mean()
        elif spread == "splits":
            std = split_means.std(ddof=1)
        else:
            std = part[metric].std(ddof=1)
        rows.append({"method": method, "n_bits": int(bits), "mean": float(split_means.mean()),
                     "std": float(std) if pd.notna(std) else math.nan, "n": int(len(part)),
                     "n_seeds": int(part["seed"].nunique()) if "seed" in part else 1,
                     "n_splits": int(part["split_seed"].nunique())})
    return pd.DataFrame(rows, columns=["method", "n_bits", "mean", "std", "n", "n_seeds", "n_splits"])


@dataclass
class Cell:
    """One cell: ``mean``/``std``/``n`` (None for a missing cell), ``mark`` ``"best"``, ``"second"`` or
    ``""``, ``dagger`` when the best's lead over the second is not significant."""

    mean: float | None = None
    std: float | None = None
    n: int = 0
    mark: str = ""
    dagger: bool = False


@dataclass
class Table:
    """A rendered-ready table: ``rows`` (row labels) x ``columns`` (column labels) of `Cell`s.

    ``caption`` is a sentence in words; ``label`` the LaTeX label; ``notes`` the legend lines (what
    bold, underline, dagger and missing mean); ``digits`` the decimals shown; ``typical_n`` the n of
    most cells (the caption states it; cells with another n say theirs)."""

    title: str
    caption: str
    label: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    digits: int = 4
    notes: list[str] = field(default_factory=list)
    typical_n: int = 0
    metric: str = ""
    values: dict[tuple[str, str], dict] = field(default_factory=dict)  # extra columns for CSV
    column_digits: dict[str, int] = field(default_factory=dict)  # where a column shows other decimals


def mark_columns(cells: dict[tuple[str, str], Cell], rows: list[str], columns: list[str],
                 higher_is_better: bool | None) -> dict[str, tuple[list[str], list[str]]]:
    """Mark in every column the best value(s) ``"best"`` and the next distinct value ``"second"``.

    Nothing is marked where the direction is unknown (``higher_is_better`` None) or the column has one
    value; "second" only where the column has at least three values (with two, the second is merely
    the other one). Equal means share a mark. Returns ``{column: (best rows, second rows)}``.
    """
    out = {}
    for col in columns:
        present = [(r, cells[(r, col)].mean) for r in rows if cells[(r, col)].mean is not None]
        if higher_is_better is None or len(present) < 2:
            out[col] = ([], [])
            continue
        sign = 1.0 if higher_is_better else -1.0
        distinct = sorted({sign * m for _, m in present}, reverse=True)
        best = [r for r, m in present if sign * m == distinct[0]]
        second = ([r for r, m in present if sign * m == distinct[1]]
                  if len(distinct) > 1 and len(present) >= 3 else [])
        for r in best:
            cells[(r, col)].mark = "best"
        for r in second:
            cells[(r, col)].mark = "second"
        out[col] = (best, second)
    return out


def build_table(runs: pd.DataFrame, metric: str, *, spread: str = "seeds", caption: str = "", label: str = "",
                method_order: list[str] | None = None, bits: list[int] | None = None,
                lead_p_value: Callable[[str, str, int], float | None] | None = None) -> Table:
    """The methods x code lengths table of ``metric`` (mean ± std, `cell_stats`), marked.

    ``bits``: the columns (default: every code length of ``runs``); a method without runs at one is a
    missing cell. ``lead_p_value(best, second, n_bits)``: the p-value of the paired test of the best
    row against the second-best (None where it cannot be computed); a best with p >= `ALPHA` carries a
    dagger. Ties for best are not tested (their lead is zero). Returns a `Table`.
    """
    stats = cell_stats(runs, metric, spread)
    order = [m for m in (method_order or []) if m in set(runs["method"])]
    order += sorted(set(runs["method"]) - set(order))
    bits = sorted(set(bits if bits is not None else stats["n_bits"]))
    columns = [f"{b} bits" for b in bits]
    cells = {(m, c): Cell() for m in order for c in columns}
    for r in stats.itertuples():
        if r.n_bits in bits:
            cells[(r.method, f"{r.n_bits} bits")] = Cell(r.mean, None if math.isnan(r.std) else r.std, r.n)
    marks = mark_columns(cells, order, columns, metric_table.higher_is_better(metric))
    values: dict[tuple[str, str], dict] = {}
    untested = []
    for b, col in zip(bits, columns):
        best, second = marks[col]
        present = [r for r in order if cells[(r, col)].mean is not None]
        if lead_p_value is None or len(best) != 1 or len(present) < 2:
            continue
        # the runner-up: the second-best row(s); in a column of two, the other row
        runners_up = second or [r for r in present if r != best[0]]
        tested = [lead_p_value(best[0], r, b) for r in runners_up]
        p = None if any(t is None for t in tested) else max(tested)
        values[(best[0], col)] = {"p_value_vs_second": p, "second": ",".join(runners_up)}
        if p is None:
            untested.append(col)
        elif p >= ALPHA:
            cells[(best[0], col)].dagger = True
    counts = [c.n for c in cells.values() if c.mean is not None]
    typical = max(set(counts), key=counts.count) if counts else 0
    notes = ["best in bold, second best underlined (where a column has three values or more)"]
    if lead_p_value is not None:
        notes.append(f"† the best value's lead over the second is not significant: two-sided Wilcoxon "
                     f"signed-rank test on per-query AP (averaged over method seeds), p ≥ {ALPHA:g}")
        if untested:
            notes.append(f"not tested (no per-query AP recorded): {', '.join(untested)}")
    if any(c.mean is None for c in cells.values()):
        notes.append(f"{MISSING}: no finished run of that method at that code length")
    if any(c.mean is not None and c.n != typical for c in cells.values()):
        notes.append(f"(n=k): a cell of k runs instead of {typical}")
    if caption and typical:
        caption = f"{caption} Each cell: n = {typical} runs unless it says otherwise."
    return Table(title=metric_table.label(metric), caption=caption, label=label, rows=order, columns=columns,
                 cells=cells, digits=metric_table.digits(metric), notes=notes, typical_n=typical, metric=metric,
                 values=values)


EFFICIENCY_COLUMNS = {  # column -> (frame column, decimals)
    "trained parameters": ("trained_parameters", 0),
    "stored to encode": ("n_parameters", 0),
    "training (s)": ("fit_seconds", 2),
    "encoding (ms per 1,000 items)": ("encode_ms_per_1000", 3),
    "peak memory (MB)": ("peak_memory_mb", 0),
}


def build_efficiency_table(runs: pd.DataFrame, n_bits: int, *, spread: str = "seeds", caption: str = "",
                           label: str = "", method_order: list[str] | None = None) -> Table:
    """Methods x costs at one code length: trained parameters, values stored to encode, training
    seconds, encoding milliseconds per 1,000 items, peak memory; mean ± std (`cell_stats`), the lowest
    of each column in bold and the second lowest underlined.

    ``runs`` needs the columns of `EFFICIENCY_COLUMNS` (`bench.report.with_costs` derives them)."""
    runs = runs[runs["n_bits"] == n_bits]
    order = [m for m in (method_order or []) if m in set(runs["method"])]
    order += sorted(set(runs["method"]) - set(order))
    columns = list(EFFICIENCY_COLUMNS)
    cells = {(m, c): Cell() for m in order for c in columns}
    for col, (name, _) in EFFICIENCY_COLUMNS.items():
        if name not in runs.columns:
            continue
        for r in cell_stats(runs, name, spread).itertuples():
            cells[(r.method, col)] = Cell(r.mean, None if math.isnan(r.std) else r.std, r.n)
    mark_columns(cells, order, columns, higher_is_better=False)
    counts = [c.n for c in cells.values() if c.mean is not None]
    typical = max(set(counts), key=counts.count) if counts else 0
    notes = ["lowest in bold, second lowest underlined",
             "trained parameters: the values stored to encode plus the parts a method uses only while training "
             "(LAGNH's discriminator, SGH's decoder)",
             "encoding: database and queries, per 1,000 items",
             "peak memory: peak resident memory of the process during training and encoding"]
    if any(c.mean is None for c in cells.values()):
        notes.append(f"{MISSING}: not recorded by those runs")
    if caption and typical:
        caption = f"{caption} Each cell: n = {typical} runs unless it says otherwise."
    return Table(title="efficiency", caption=caption, label=label, rows=order, columns=columns, cells=cells,
                 digits=2, notes=notes, typical_n=typical, metric="efficiency",
                 column_digits={c: d for c, (_, d) in EFFICIENCY_COLUMNS.items()})


# ----------------------------------------------------------------------------------------- rendering
def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}" if abs(value) >= 10_000 else f"{value:.{digits}f}"


def _parts(table: Table, cell: Cell, column: str) -> tuple[str, str, str]:
    """(mean text, ± std text or "", n note or "") of a filled cell."""
    digits = table.column_digits.get(column, table.digits)
    mean = _number(cell.mean, digits)
    std = _number(cell.std, digits) if cell.std is not None else ""
    n = f"(n={cell.n})" if cell.n != table.typical_n else ""
    return mean, std, n


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                  "^": r"\textasciicircum{}", "_": r"\_", "~": r"\textasciitilde{}", "%": r"\%",
                  "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", "±": r"$\pm$",
                  "≥": r"$\geq$", "≤": r"$\leq$", "†": r"$^\dagger$", "×": r"$\times$", "—": "---", "–": "--"}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """``text`` as LaTeX that prints it literally: the ten special characters (``\\ { } $ & # ^ _ ~ %``),
    ``< > |`` and the few non-ASCII signs tables use (± ≥ ≤ † × — –) replaced by their commands."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], str(text))


def to_latex(table: Table) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``, said in a comment
    above it), the caption in words, the legend as a footnote-sized line under it and a ``\\label``."""
    lines = [r"% needs \usepackage{booktabs} in the preamble", r"\begin{table}[t]", r"\centering",
             r"\caption{" + latex_escape(table.caption) + "}"]
    if table.label:
        lines.append(r"\label{" + re.sub(r"[^A-Za-z0-9:._-]", "-", table.label) + "}")
    lines += [r"\begin{tabular}{l" + "r" * len(table.columns) + "}", r"\toprule",
              "Method & " + " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    for row in table.rows:
        cells = []
        for col in table.columns:
            cell = table.cells[(row, col)]
            if cell.mean is None:
                cells.append(r"\textit{" + MISSING + "}")
                continue
            mean, std, n = _parts(table, cell, col)
            if cell.mark == "best":
                mean = r"\textbf{" + mean + "}"
            elif cell.mark == "second":
                mean = r"\underline{" + mean + "}"
            text = mean + (r"$^\dagger$" if cell.dagger else "") + (r" $\pm$ " + std if std else "")
            cells.append(text + (" " + latex_escape(n) if n else ""))
        lines.append(latex_escape(row) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\smallskip{\footnotesize " + latex_escape("; ".join(table.notes)) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


def to_text(table: Table) -> str:
    """A plain-text table for a terminal: best marked ``*``, second ``_`` (legend below)."""
    head = ["method"] + table.columns
    rows = []
    for row in table.rows:
        cells = [row]
        for col in table.columns:
            cell = table.cells[(row, col)]
            if cell.mean is None:
                cells.append(MISSING)
                continue
            mean, std, n = _parts(table, cell, col)
            mark = {"best": "*", "second": "_"}.get(cell.mark, "")
            cells.append(mark + mean + ("†" if cell.dagger else "") + (f" ± {std}" if std else "") + (f" {n}" if n else ""))
        rows.append(cells)
    widths = [max(len(r[k]) for r in [head] + rows) for k in range(len(head))]
    fmt = lambda r: "  ".join(v.ljust(w) if k == 0 else v.rjust(w) for k, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    notes = [n.replace("best in bold, second best underlined", "* best, _ second best")
             .replace("lowest in bold, second lowest underlined", "* lowest, _ second lowest") for n in table.notes]
    return "\n".join([table.caption, fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
                     + (["; ".join(notes) + "."] if notes else []))


def _md_escape(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]<>|#])", r"\\\1", str(text))


def _cell_text(table: Table, cell, col: str, best: str, second: str, n_format: str) -> str:
    """A non-missing cell as text: the mean wrapped in ``best``/``second`` (``"<b>{}</b>"`` ...), the
    dagger, ``± std`` and the cell's n through ``n_format`` when it differs from the table's."""
    mean, std, n = _parts(table, cell, col)
    if cell.mark == "best":
        mean = best.format(mean)
    elif cell.mark == "second":
        mean = second.format(mean)
    return mean + ("†" if cell.dagger else "") + (f" ± {std}" if std else "") + (n_format.format(n) if n else "")


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table: bold best, ``<ins>`` (underlined) second, the caption above and
    the legend below."""
    out = [f"**{_md_escape(table.caption)}**", "", "| method | " + " | ".join(table.columns) + " |",
           "|---|" + "---:|" * len(table.columns)]
    for row in table.rows:
        cells = []
        for col in table.columns:
            cell = table.cells[(row, col)]
            if cell.mean is None:
                cells.append(f"*{MISSING}*")
                continue
            cells.append(_cell_text(table, cell, col, "**{}**", "<ins>{}</ins>", " {}"))
        out.append(f"| {_md_escape(row)} | " + " | ".join(cells) + " |")
    if table.notes:
        out += ["", "; ".join(_md_escape(n) for n in table.notes) + "."]
    return "\n".join(out)


def to_frame(table: Table, **context) -> pd.DataFrame:
    """The table in long form, a row per cell (missing cells included), for CSV: ``context`` columns
    (experiment, spread ...), then method, column, mean, std, n, mark, dagger, p_value_vs_second."""
    rows = []
    for row in table.rows:
        for col in table.columns:
            cell = table.cells[(row, col)]
            extra = table.values.get((row, col), {})
            rows.append({**context, "metric": table.metric, "method": row, "column": col,
                         "mean": cell.mean, "std": cell.std, "n": cell.n if cell.mean is not None else 0,
                         "mark": cell.mark or ("missing" if cell.mean is None else ""),
                         "dagger": cell.dagger, "p_value_vs_second": extra.get("p_value_vs_second")})
    return pd.DataFrame(rows)


def to_html(table: Table) -> str:
    """One ``<table>`` with its caption and legend (styles from the page, `html_page`)."""
    h = html.escape
    # the caption as a paragraph: a <caption> is no wider than its table
    out = [f'<p class="caption">{h(table.caption)}</p>', f'<table id="{h(table.label)}">',
           "<thead><tr><th>method</th>" + "".join(f"<th>{h(c)}</th>" for c in table.columns) + "</tr></thead><tbody>"]
    for row in table.rows:
        tds = []
        for col in table.columns:
            cell = table.cells[(row, col)]
            if cell.mean is None:
                tds.append(f'<td class="missing">{MISSING}</td>')
                continue
            tds.append("<td>" + _cell_text(table, cell, col, "<b>{}</b>", "<u>{}</u>", " <small>{}</small>") + "</td>")
        out.append(f"<tr><th>{h(row)}</th>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    if table.notes:
        out.append(f'<p class="notes">{h("; ".join(table.notes))}.</p>')
    return "\n".join(out)


_STYLE = """body{font-family:sans-serif;max-width:1300px;margin:1.5em auto;color:#222}
table{border-collapse:collapse;margin:1em 0 .3em}caption{caption-side:top;text-align:left;font-weight:600;
padding:.4em 0;max-width:1200px}th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
th:first-child{text-align:left}thead th{border-bottom:2px solid #444}td.missing{color:#999;font-style:italic}
p.notes{font-size:.85em;color:#555;margin-top:0}figure{margin:1.5em 0}figcaption{font-size:.9em;color:#444}
img{max-width:100%;border:1px solid #eee}h2{margin-top:1.6em}p.caption{max-width:1100px;margin-bottom:0}
.figures{display:flex;flex-wrap:wrap;gap:1em}.figures figure{flex:1 1 45%;margin:.5em 0}"""


def image_tag(path: str | Path, alt: str) -> str:
    """An ``<img>`` holding the PNG at ``path`` as a data URI (the page needs no other file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def html_page(title: str, intro: str, sections: list[tuple[str, str]]) -> str:
    """A self-contained HTML page: ``sections`` are (heading, HTML body) pairs, shown in order."""
    h = html.escape
    body = [f"<h1>{h(title)}</h1>", f"<p>{h(intro)}</p>"]
    for heading, content in sections:
        body += [f"<h2>{h(heading)}</h2>", content]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{h(title)}</title><style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def png_bytes_to_tag(fig, alt: str) -> str:
    """A matplotlib figure as an inline PNG ``<img>``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def fmt_count(value) -> str:
    """An item count with thousands separators (``59000`` -> ``59,000``); "?" when unknown."""
    try:
        return f"{int(float(value)):,}"
    except (TypeError, ValueError):
        return "?"


def seeds_text(values) -> str:
    """``[0, 1, 2]`` -> ``"0, 1, 2"``."""
    return ", ".join(str(int(v)) for v in sorted(set(np.asarray(list(values)).tolist())))
