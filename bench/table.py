"""Paper-style result tables: methods as rows, code lengths as columns, mean ± std over seeds."""
from __future__ import annotations

import pandas as pd

from bench import metrics

def summarise(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, std and count of ``metric`` per (method, n_bits); ``runs`` has one row per run."""
    if metric not in runs.columns:
        raise KeyError(metric)
    grouped = runs.dropna(subset=[metric]).groupby(["method", "n_bits"])[metric]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def _cell(mean: float, std: float, count: int, digits: int) -> str:
    if count > 1:
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def pivot(runs: pd.DataFrame, metric: str, *, method_order: list[str] | None = None,
          digits: int | None = None) -> pd.DataFrame:
    """Methods x bits table of formatted ``mean ± std`` strings; the best mean per column is marked."""
    stats = summarise(runs, metric)
    if digits is None:
        digits = metrics.digits(metric)
    order = [m for m in (method_order or []) if m in set(stats["method"])]
    order += sorted(set(stats["method"]) - set(order))
    bits = sorted(stats["n_bits"].unique())
    table = pd.DataFrame(index=order, columns=[f"{b} bits" for b in bits], dtype=object)
    higher_is_better = metrics.higher_is_better(metric) is True
    for b in bits:
        col = stats[stats["n_bits"] == b]
        best = (col["mean"].max() if higher_is_better else None)
        for _, r in col.iterrows():
            text = _cell(r["mean"], r["std"], int(r["count"]), digits)
            if best is not None and len(col) > 1 and r["mean"] == best:
                text = "*" + text
            table.loc[r["method"], f"{b} bits"] = text
    table = table.fillna("–")
    table.index.name = "method"
    return table


def to_text(table: pd.DataFrame, title: str = "") -> str:
    cols = [table.index.name or ""] + list(table.columns)
    rows = [[str(i)] + [str(v) for v in row] for i, row in zip(table.index, table.values)]
    widths = [max(len(c), *(len(r[k]) for r in rows)) if rows else len(c) for k, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(cols, widths)))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) if k == 0 else v.rjust(w) for k, (v, w) in enumerate(zip(r, widths)))
            for r in rows]
    return "\n".join(([title] if title else []) + [line, sep] + body)


def to_markdown(table: pd.DataFrame, title: str = "") -> str:
    cols = [table.index.name or ""] + list(table.columns)
    out = ([f"**{title}**", ""] if title else [])
    out.append("| " + " | ".join(cols) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|")
    for i, row in zip(table.index, table.values):
        cells = [str(v).replace("*", "**", 1) + "**" if str(v).startswith("*") else str(v) for v in row]
        out.append("| " + " | ".join([str(i)] + cells) + " |")
    return "\n".join(out)


def _latex_escape(text: str) -> str:
    from bench.paper import latex_escape  # one rule for every LaTeX table

    return latex_escape(text)


def to_latex(table: pd.DataFrame, title: str = "") -> str:
    cols = list(table.columns)
    lines = [r"% needs \usepackage{booktabs} in the preamble", r"\begin{table}[t]", r"\centering"]
    if title:
        lines.append(r"\caption{" + _latex_escape(title) + "}")
    lines += [r"\begin{tabular}{l" + "r" * len(cols) + "}", r"\toprule",
              "Method & " + " & ".join(_latex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for i, row in zip(table.index, table.values):
        cells = []
        for v in row:
            v = str(v)
            cells.append(r"\textbf{" + _latex_escape(v[1:]) + "}" if v.startswith("*") else _latex_escape(v))
        lines.append(_latex_escape(str(i)) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


FORMATS = {"text": to_text, "markdown": to_markdown, "latex": to_latex}


def render(runs: pd.DataFrame, metric: str, fmt: str = "text", *, title: str = "",
           method_order: list[str] | None = None) -> str:
    return FORMATS[fmt](pivot(runs, metric, method_order=method_order), title or metrics.label(metric))
