"""Paper-ready reports: marks, escaping, the default metric per experiment, the dagger, split seeds,
the per-query AP and retrieval-example artifacts, `bench compare`."""
from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest

from bench import evaluation, paper
from bench.cli import main
from bench.report import compare, experiment_metric, lead_tester, load_runs, report_tables
from bench.significance import paired_test
from bench.tracking import Tracker

DIGITS = ["--dataset", "digits", "--features", "pixels"]


def _runs(values: dict[str, dict[int, list[float]]], metric="map_at_100", experiment="e/e", topk=100):
    """A frame of runs: ``values[method][bits]`` = that metric's value per method seed."""
    rows = []
    for method, by_bits in values.items():
        for bits, per_seed in by_bits.items():
            for seed, v in enumerate(per_seed):
                rows.append({"experiment": experiment, "method": method, "method_name": method.split("#")[0],
                             "n_bits": bits, "seed": seed, "split_seed": 0, "topk": topk, metric: v,
                             "run_id": f"{method}-{bits}-{seed}"})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------- marks and escaping
TRICKY = "itq#6b_x&y"  # a configuration label with the characters LaTeX and Markdown treat specially


def test_best_is_bold_second_is_underlined_and_a_missing_cell_says_so():
    runs = _runs({"lsh": {16: [0.30, 0.32], 32: [0.40, 0.42]},
                  TRICKY: {16: [0.50, 0.52], 32: [0.70, 0.72]},
                  "sh_2": {16: [0.45, 0.45]}})  # no 32-bit run
    table = paper.build_table(runs, "map_at_100", caption="mAP@100 on a test set", label="tab:t")
    marks = {(r, c): table.cells[(r, c)].mark for r in table.rows for c in table.columns}
    assert marks[(TRICKY, "16 bits")] == "best" and marks[("sh_2", "16 bits")] == "second"
    assert marks[("lsh", "16 bits")] == ""
    # two values only in the 32-bit column: the best is marked, nobody is "second"
    assert marks[(TRICKY, "32 bits")] == "best" and marks[("lsh", "32 bits")] == ""
    assert table.cells[("sh_2", "32 bits")].mean is None

    md = paper.to_markdown(table)
    assert "**0.5100** ± 0.0141" in md and "<ins>0.4500</ins>" in md and "*missing*" in md
    assert r"itq\#6b\_x&y" in md  # escaped: no heading, no emphasis
    tex = paper.to_latex(table)
    assert r"\textbf{0.5100} $\pm$ 0.0141" in tex and r"\underline{0.4500}" in tex
    assert r"itq\#6b\_x\&y &" in tex and r"sh\_2 &" in tex and r"\textit{missing}" in tex
    assert r"\toprule" in tex and r"\label{tab:t}" in tex and r"\caption{mAP@100 on a test set" in tex
    html = paper.to_html(table)
    assert "<b>0.5100</b>" in html and "<u>0.4500</u>" in html and "itq#6b_x&amp;y" in html
    frame = paper.to_frame(table, experiment="e/e")
    row = frame[(frame["method"] == "sh_2") & (frame["column"] == "32 bits")].iloc[0]
    assert row["mark"] == "missing" and row["n"] == 0


def test_costs_mark_the_lowest_and_ties_share_the_mark():
    runs = _runs({"a": {8: [3.0]}, "b": {8: [1.0]}, "c": {8: [1.0]}, "d": {8: [2.0]}}, metric="fit_seconds")
    table = paper.build_table(runs, "fit_seconds")
    marks = {r: table.cells[(r, "8 bits")].mark for r in table.rows}
    assert marks == {"a": "", "b": "best", "c": "best", "d": "second"}


@pytest.mark.parametrize("text, expected", [
    ("a#b", r"a\#b"), ("a_b", r"a\_b"), ("a&b", r"a\&b"), ("50%", r"50\%"), ("$x$", r"\$x\$"),
    ("{x}", r"\{x\}"), ("a~b", r"a\textasciitilde{}b"), ("a^b", r"a\textasciicircum{}b"),
    ("a\\b", r"a\textbackslash{}b"), ("0.5 ± 0.1", r"0.5 $\pm$ 0.1"), ("p ≥ 0.05", r"p $\geq$ 0.05"),
])
def test_latex_escapes_every_special_character(text, expected):
    assert paper.latex_escape(text) == expected


# --------------------------------------------------------------------------------------- the dagger
def _ap_csv(values) -> str:
    return pd.DataFrame({"query_id": np.arange(len(values)) * 7, "ap_at_100": values}).to_csv(index=False)


class _Artifacts:
    """A stand-in for `Tracker.read_text`: artifacts by (run id, path)."""

    def __init__(self, texts):
        self.texts = texts

    def read_text(self, run_id, path):
        return self.texts.get((run_id, path))


@pytest.mark.parametrize("n_queries, dagger", [(5, True), (6, False)])
def test_dagger_when_the_lead_is_not_significant(n_queries, dagger):
    """Every query favours the best by a distinct margin. The exact two-sided Wilcoxon signed-rank
    p-value of n differences all of one sign is 2 / 2**n: 0.0625 for 5 queries (not significant: dagger),
    0.03125 for 6 (significant: none)."""
    base = np.linspace(0.2, 0.6, n_queries)
    best = base + 0.01 * np.arange(1, n_queries + 1)
    runs = _runs({"best": {16: [best.mean()]}, "second": {16: [base.mean()]}, "third": {16: [0.1]}})
    store = _Artifacts({("best-16-0", "query_ap.csv"): _ap_csv(best),
                        ("second-16-0", "query_ap.csv"): _ap_csv(base)})
    result = compare(store, runs, "best", "second", 16)[0]
    assert result.p_value == pytest.approx(2 / 2 ** n_queries)
    assert result.mean_difference == pytest.approx(np.mean(best - base))
    table = paper.build_table(runs, "map_at_100", lead_p_value=lead_tester(store, runs))
    assert table.cells[("best", "16 bits")].dagger is dagger
    assert not table.cells[("second", "16 bits")].dagger
    best_line = next(line for line in paper.to_latex(table).splitlines() if line.startswith("best &"))
    assert ("$^\\dagger$" in best_line) is dagger
    assert any("not significant" in note for note in table.notes)  # the legend is there either way


def test_per_query_ap_is_averaged_over_method_seeds_before_the_test():
    runs = _runs({"a": {8: [0.5, 0.7]}, "b": {8: [0.4]}})
    store = _Artifacts({("a-8-0", "query_ap.csv"): _ap_csv([0.4, 0.6, 0.5]),
                        ("a-8-1", "query_ap.csv"): _ap_csv([0.6, 0.8, 0.7]),
                        ("b-8-0", "query_ap.csv"): _ap_csv([0.5, 0.3, 0.4])})
    result = compare(store, runs, "a", "b", 8)[0]
    assert (result.mean_a, result.mean_b) == (pytest.approx(0.6), pytest.approx(0.4))
    assert result.ci_low <= result.mean_difference <= result.ci_high


def test_paired_test_refuses_different_queries():
    with pytest.raises(ValueError, match="different queries"):
        paired_test(pd.Series([0.1, 0.2], index=[1, 2]), pd.Series([0.1, 0.2], index=[1, 3]))


# ------------------------------------------------------------------------------------------- spread
def test_spread_over_method_seeds_split_seeds_or_both():
    runs = pd.DataFrame({"method": "m", "n_bits": 8, "seed": [0, 1, 0, 1], "split_seed": [0, 0, 1, 1],
                         "v": [0.1, 0.3, 0.5, 0.7]})
    seeds = paper.cell_stats(runs, "v", "seeds").iloc[0]
    splits = paper.cell_stats(runs, "v", "splits").iloc[0]
    both = paper.cell_stats(runs, "v", "both").iloc[0]
    assert seeds["mean"] == splits["mean"] == pytest.approx(0.4)
    assert seeds["std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert splits["std"] == pytest.approx(np.std([0.2, 0.6], ddof=1))
    assert both["std"] == pytest.approx(np.std([0.1, 0.3, 0.5, 0.7], ddof=1))
    assert (seeds["n"], seeds["n_seeds"], seeds["n_splits"]) == (4, 2, 2)


# ----------------------------------------------------------------------------- engine: per-query AP
def test_per_query_ap_averages_to_the_engines_map_and_top_k_is_the_stable_ranking():
    rng = np.random.default_rng(3)
    q = rng.integers(0, 256, (20, 2), dtype=np.uint8)
    db = rng.integers(0, 256, (300, 2), dtype=np.uint8)
    yq, ydb = rng.integers(0, 4, 20), rng.integers(0, 4, 300)
    ap = evaluation.average_precision_at_k(q, db, yq, ydb, topk=50)
    assert ap.shape == (20,)
    assert ap.mean() == pytest.approx(evaluation.evaluate(q, db, yq, ydb, topk=50)["map_at_50"])
    top = evaluation.top_k(q, db, k=10)
    d = evaluation.hamming_distances(q, db)
    for i in range(20):
        expected = sorted(range(300), key=lambda j: (d[i, j], j))[:10]
        assert list(top[i]) == expected


# ------------------------------------------------------------------------------- end to end (digits)
def _features_file(path, n=(30, 120, 60), d=8):
    """An .npz feature file (protocol `features`, K = 1000) with 3 classes."""
    rng = np.random.default_rng(1)
    parts = {}
    for split, count in zip(("query", "database", "train"), n):
        labels = np.arange(count) % 3
        parts[f"{split}_features"] = (rng.normal(size=(count, d)) + labels[:, None]).astype(np.float32)
        parts[f"{split}_labels"] = labels
    np.savez(path, **parts)
    return path


def test_the_default_metric_is_each_experiments_own_map_at_k(tracking_uri, tmp_path, capsys):
    """A store holding K = 100 (digits) and K = 1000 (a feature file): each table shows its own mAP@K,
    never the tie-aware mAP for all."""
    assert main(["run", "--methods", "lsh", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri]) == 0
    assert main(["run", "--methods", "lsh", "--dataset", "features", "--data-root",
                 str(_features_file(tmp_path / "f.npz")), "--bits", "8", "--tracking-uri", tracking_uri]) == 0
    capsys.readouterr()
    frame = load_runs(Tracker(tracking_uri))
    assert experiment_metric(frame, "digits/digits") == "map_at_100"
    assert experiment_metric(frame, "features/features") == "map_at_1000"
    assert main(["report", "--tracking-uri", tracking_uri, "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "**mAP@100 on scikit-learn digits" in out and "**mAP@1000 on pre-extracted features" in out
    assert "tie-aware" not in out


def test_split_seeds_runs_record_artifacts_and_report_and_compare_read_them(tracking_uri, tmp_path, capsys):
    args = ["run", "--methods", "itq,lsh,pcah", *DIGITS, "--bits", "8,16", "--seeds", "0,1", "--split-seeds", "0,1",
            "--tracking-uri", tracking_uri]
    assert main(args) == 0
    capsys.readouterr()
    tracker = Tracker(tracking_uri)
    frame = load_runs(tracker, "digits/digits")
    assert len(frame) == 24 and sorted(frame["method"].unique()) == ["itq", "lsh", "pcah"]  # one row per method
    assert sorted(frame["split_seed"].unique()) == [0, 1]
    runs = {r.info.run_id: r for r in tracker.client.search_runs(
        [tracker.experiment_id("digits/digits", create=False)], "tags.`hashbench.kind` = 'run'")}
    digests = {r.data.params["data.split_seed"]: r.data.params["data.split_digest"] for r in runs.values()}
    assert set(digests) == {"0", "1"} and digests["0"] != digests["1"]
    one = frame[(frame["method"] == "itq") & (frame["n_bits"] == 16)].iloc[0]
    ap = pd.read_csv(io.StringIO(tracker.read_text(one["run_id"], "query_ap.csv")))
    assert len(ap) == 100 and ap["ap_at_100"].mean() == pytest.approx(one["map_at_100"])
    top = pd.read_csv(io.StringIO(tracker.read_text(one["run_id"], "retrieval_top10.csv")))
    assert list(top.columns) == ["query_id", "rank", "database_id", "relevant"] and len(top) == 80
    assert set(top["query_id"]) <= set(ap["query_id"])

    # a second run on the protocol's own split is the same run: reused
    assert main(["run", "--methods", "lsh", *DIGITS, "--bits", "8", "--seeds", "0", "--tracking-uri",
                 tracking_uri]) == 0
    assert "reused" in capsys.readouterr().err

    tables = report_tables(tracker, frame, "digits/digits")
    assert "over method and split seeds" in tables[0].caption and "split seeds 0, 1" in tables[0].caption
    assert main(["compare", "itq", "pcah", "--experiment", "digits/digits", "--bits", "16",
                 "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^split seed [01]: 100 queries", out, flags=re.M)) == 2
    assert "95% bootstrap CI [" in out and "Wilcoxon signed-rank p = " in out and "Fisher's combined p" in out
    assert main(["compare", "itq", "sh", "--experiment", "digits/digits", "--bits", "16",
                 "--tracking-uri", tracking_uri]) == 2
    assert "no runs of 'sh'" in capsys.readouterr().err


def test_report_writes_every_format_and_one_html_page(tracking_uri, tmp_path, capsys):
    assert main(["run", "--methods", "itq,lsh,sh", *DIGITS, "--bits", "8,16", "--seeds", "0,1",
                 "--tracking-uri", tracking_uri]) == 0
    out_dir = tmp_path / "report"
    assert main(["report", "--tracking-uri", tracking_uri, "--output-dir", str(out_dir)]) == 0
    folder = out_dir / "digits-digits"
    for name in ("report.md", "report.tex", "report.csv", "report.html"):
        assert (folder / name).stat().st_size > 0
    for figure in ("map_vs_bits", "pr_curve_16", "precision_at_n_16", "time_vs_map", "retrieval_examples_16"):
        assert (folder / f"{figure}.png").read_bytes()[:4] == b"\x89PNG" and (folder / f"{figure}.pdf").exists()
    page = (folder / "report.html").read_text()
    assert page.count("<table") == 5 and page.count('src="data:image/png;base64,') == 5
    assert "src=\"http" not in page and "<link" not in page  # self-contained
    tex = (folder / "report.tex").read_text()
    assert tex.count(r"\begin{table}") == 5 and tex.count(r"\label{tab:digits-digits-") == 5
    csv = pd.read_csv(folder / "report.csv")
    assert set(csv["metric"]) == {"map_at_100", "map_tie_aware", "precision_at_100", "precision_r2", "efficiency"}
    assert main(["report", "--tracking-uri", tracking_uri, "--format", "html"]) == 2
    assert "--output-dir" in capsys.readouterr().err


@pytest.mark.skipif(__import__("shutil").which("pdflatex") is None, reason="needs pdflatex (texlive)")
def test_the_latex_tables_compile_in_a_minimal_document(tmp_path):
    import subprocess

    runs = _runs({TRICKY: {16: [0.5, 0.6]}, "a_b&c": {16: [0.4, 0.45]}, "50%~x": {16: [0.3]}})
    tex = paper.to_latex(paper.build_table(runs, "map_at_100", caption="mAP@100 of #1 & 50% {x}_y",
                                           label="tab:a#b"))
    (tmp_path / "t.tex").write_text(tex)
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                      "\\input{t.tex}\n\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]


def test_runs_recorded_before_row_keys_join_the_row_of_their_setting(tracking_uri, capsys):
    """A run of the same setting on the same split, recorded before row keys existed and on older code, is
    older code of that row (hidden by default, labelled with its code under --code-versions all), not a
    second configuration."""
    args = ["run", "--methods", "lsh", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri]
    assert main(args) == 0
    tracker = Tracker(tracking_uri)
    old = load_runs(tracker, "digits/digits")["run_id"][0]
    for tag in ("hashbench.row_key", "hashbench.row_setting_key"):
        tracker.client.delete_tag(old, tag)
    tracker.client.set_tag(old, "hashbench.code", "0ldc0de" + "0" * 57)
    tracker.client.set_tag(old, "hashbench.run_key", "k-old")
    assert main(args + ["--force"]) == 0
    capsys.readouterr()
    latest = load_runs(tracker, "digits/digits")
    assert list(latest["method"]) == ["lsh"] and old not in set(latest["run_id"])
    every = load_runs(tracker, "digits/digits", code_versions="all")
    assert sorted(every["method"]) == ["lsh", "lsh@0ldc0d"]
