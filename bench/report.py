"""Read tracked runs back into one tidy table (a row per run), for tables and plots.

Runs are grouped as `bench.record` defines them: seeds of one configuration (same method,
hyper-parameters, data fingerprint and code fingerprint) are averaged; different configurations are
never averaged together. By default each setting (a configuration without its code) shows its latest
code only; ``code_versions="all"`` also shows older code, each row labelled with its code fingerprint.
Runs recorded before `bench.record` existed (no ``hashbench.layout`` tag, flat parameter names) are
read as configurations of their own, with code ``"legacy"``.
"""
from __future__ import annotations

import html
import json

import pandas as pd

from bench import metrics as metric_table
from bench import record
from bench.errors import UsageError
from bench.tracking import Tracker

CODE_VERSIONS = ("latest", "all")
LEGACY_CONFIG_TAG = "hashbench.config_key"  # the same tag name before and after the layout change


def _split_seed(params: dict) -> int:
    """The seed of the split a run used: ``data.split_seed``, else the protocol's own seed as recorded in
    its spec (runs recorded before split seeds existed), else 0."""
    if params.get("data.split_seed") not in (None, ""):
        return int(params["data.split_seed"])
    try:
        return int(json.loads(params.get("data.protocol_spec") or "{}").get("seed", 0))
    except (ValueError, AttributeError):
        return 0


def _row(run, experiment: str) -> dict:
    """One run as a row, from either layout."""
    p, t = run.data.params, run.data.tags
    run_key = t.get(record.TAG_RUN_KEY, run.info.run_id)
    if t.get(record.TAG_LAYOUT) == record.LAYOUT_VERSION:
        config = t.get(record.TAG_CONFIG_KEY, run_key)
        setting = t.get(record.TAG_SETTING_KEY, run_key)
        facts = {"method": p.get("method"), "n_bits": p.get("hp.n_bits"), "seed": p.get("hp.seed"),
                 "dataset": p.get("data.dataset"), "protocol": p.get("data.protocol"),
                 "features": p.get("features.name"), "topk": p.get("data.topk"),
                 "config": t.get(record.TAG_ROW_KEY, config), "setting": t.get(record.TAG_ROW_SETTING_KEY, setting),
                 "split_config": config, "split_setting": setting, "split_seed": _split_seed(p),
                 "has_row_key": record.TAG_ROW_KEY in t,
                 "code": t.get(record.TAG_CODE, "unknown"),
                 "n_query": p.get("data.n_query"), "n_database": p.get("data.n_database"),
                 "n_train": p.get("data.n_train"), "input_size": p.get("features.input_size"),
                 "commit": p.get("env.git_commit") or ""}
    else:
        config = t.get(LEGACY_CONFIG_TAG, run_key)
        facts = {"method": p.get("method"), "n_bits": p.get("n_bits"), "seed": p.get("seed"),
                 "dataset": p.get("dataset"), "protocol": p.get("protocol"), "features": p.get("features"),
                 "topk": p.get("topk"), "config": config, "setting": config, "split_config": config,
                 "split_setting": config, "has_row_key": False, "split_seed": 0, "code": "legacy", "commit": p.get("git_commit") or ""}
    for key in ("n_bits", "seed", "topk"):
        facts[key] = int(facts[key]) if facts[key] not in (None, "") else 0
    return {"experiment": experiment, "run_id": run.info.run_id, "sweep": t.get("mlflow.parentRunId", ""),
            "run_key": run_key, "start_time": run.info.start_time, **facts, **run.data.metrics}


def load_runs(tracker: Tracker, experiment: str | None = None, sweep: str | None = None,
              code_versions: str = "latest") -> pd.DataFrame:
    """FINISHED per-(method, bits, seed) runs as a frame; where a run was redone (``--force``) the
    latest of its run key counts.

    ``experiment``: a ``dataset/protocol`` name (default: every experiment). ``sweep``: a sweep's run id
    (or its first characters): the runs its table showed, reused runs of earlier sweeps included. ``code_versions``: ``"latest"`` (each setting at its latest code) or
    ``"all"``. Columns: experiment, run_id, sweep, run_key, start_time, method (the row label, see
    `label_configurations`), method_name, n_bits, seed, dataset, protocol, features, topk, config,
    setting, code, code_label, then one column per recorded metric.

    Raises `UsageError` for an unknown experiment or a store without finished runs.
    """
    if code_versions not in CODE_VERSIONS:
        raise UsageError(f"code_versions must be one of {CODE_VERSIONS}, got {code_versions!r}")
    names = [experiment] if experiment else tracker.experiment_names()
    rows = []
    for name in names:
        exp_id = tracker.experiment_id(name, create=False)
        if exp_id is None:
            known = ", ".join(tracker.experiment_names()) or "none"
            raise UsageError(f"no experiment {name!r} in {tracker.uri}; experiments there: {known}")
        chosen = tracker.sweep_runs(exp_id, sweep) if sweep else None
        rows += [_row(run, name) for run in tracker.finished_runs(exp_id)
                 if chosen is None or run.info.run_id in chosen]
    frame = pd.DataFrame(rows)
    if frame.empty:
        where = f"experiment {experiment!r}" if experiment else "any experiment"
        raise UsageError(f"no finished runs in {where} of {tracker.uri}; run `python -m bench run` first")
    frame = frame.sort_values("start_time").drop_duplicates("run_key", keep="last").reset_index(drop=True)
    frame = _split_rows_where_data_differ(frame)
    return label_configurations(frame, code_versions)


def _split_rows_where_data_differ(frame: pd.DataFrame) -> pd.DataFrame:
    """A row over split seeds (the row key) holds one configuration per split seed; where one split seed
    has several (the same settings saw different bytes, e.g. re-extracted features), those runs keep
    their own configuration and setting keys, as before split seeds existed."""
    counts = frame.groupby(["experiment", "config", "split_seed"])["split_config"].transform("nunique")
    clash = counts > 1
    frame.loc[clash, "config"] = frame.loc[clash, "split_config"]
    frame.loc[clash, "setting"] = frame.loc[clash, "split_setting"]
    # A run recorded before row keys existed belongs to the row of a newer run of the same setting (same
    # method, hyper-parameters and data on the same split), so a code change still hides it as older code.
    newer = frame["has_row_key"] & ~clash
    row_of_setting = dict(zip(frame.loc[newer, "split_setting"], frame.loc[newer, "setting"]))
    older = ~frame["has_row_key"]
    frame.loc[older, "setting"] = [row_of_setting.get(s, s) for s in frame.loc[older, "split_setting"]]
    return frame


def label_configurations(frame: pd.DataFrame, code_versions: str = "latest") -> pd.DataFrame:
    """Give every configuration its own row label in ``method``.

    A method with several settings (hyper-parameters or data) in an experiment becomes
    ``method#<setting>`` (6 hex of the setting key; its parameters are in MLflow). Each setting keeps
    its latest code (that of its most recent run); with ``code_versions="all"`` older code stays too.
    A row whose code is not the newest code of its method in the experiment (an older code version,
    or a setting last run before the method's code changed) is labelled ``...@<code>`` (6 hex of the
    code fingerprint), so a reader always sees which rows ran on other code. ``code_label`` says
    ``latest`` or that short hash.
    """
    frame = frame.copy()
    frame["method_name"] = frame["method"]
    ordered = frame.sort_values("start_time")
    latest_of_setting = ordered.groupby(["experiment", "setting"])["code"].last()
    if code_versions == "latest":
        keep = [latest_of_setting[(e, s)] == c for e, s, c in zip(frame["experiment"], frame["setting"], frame["code"])]
        frame = frame[keep].reset_index(drop=True)
    newest_of_method = ordered.groupby(["experiment", "method"])["code"].last()
    newest = [newest_of_method[(e, m)] == c for e, m, c in zip(frame["experiment"], frame["method_name"], frame["code"])]
    frame["code_label"] = ["latest" if ok else c[:6] for ok, c in zip(newest, frame["code"])]
    n_settings = frame.groupby(["experiment", "method_name"])["setting"].transform("nunique")
    several = n_settings > 1
    frame.loc[several, "method"] = frame.loc[several, "method_name"] + "#" + frame.loc[several, "setting"].str[:6]
    older = frame["code_label"] != "latest"
    frame.loc[older, "method"] = frame.loc[older, "method"] + "@" + frame.loc[older, "code_label"]
    return frame


def default_metric(frame: pd.DataFrame) -> str:
    """The default metric of one experiment's table: its own mAP@K (the K of its protocol).

    ``frame`` must hold the runs of one experiment (`experiment_metric` picks it per experiment); an
    experiment whose runs disagree on K (none should: K is the protocol's) falls back to the K-free
    tie-aware mAP."""
    topks = sorted(frame["topk"].unique())
    if len(topks) == 1 and metric_table.default_metric(topks[0]) in frame.columns:
        return metric_table.default_metric(topks[0])
    return "map_tie_aware"


def experiment_metric(frame: pd.DataFrame, experiment: str, metric: str | None = None) -> str:
    """The metric of ``experiment``'s main table: ``metric`` when given, else that experiment's own
    mAP@K, whatever K other experiments of the store use."""
    return metric or default_metric(frame[frame["experiment"] == experiment])


# ------------------------------------------------------------------------------ paper-ready reports
SPREAD_DEFAULT = None  # `choose_spread`: method seeds on one split; method and split seeds over several


def choose_spread(runs: pd.DataFrame, spread: str | None = None) -> str:
    """``spread`` when given, else ``"seeds"`` for runs of one split seed and ``"both"`` for several."""
    from bench.paper import SPREADS

    if spread is not None:
        if spread not in SPREADS:
            raise UsageError(f"--spread must be one of {', '.join(SPREADS)}, got {spread!r}")
        return spread
    return "both" if runs["split_seed"].nunique() > 1 else "seeds"


def with_costs(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with the efficiency table's derived columns: ``trained_parameters`` (values stored to
    encode plus the ``info.*_parameters`` a method reports for its training-only parts),
    ``encode_ms_per_1000`` (milliseconds per 1,000 encoded database and query items) and
    ``peak_memory_mb`` (``peak_rss_mb``, else the process's peak ``process_peak_rss_mb``)."""
    runs = runs.copy()
    extra = [c for c in runs.columns if c.startswith("info.") and c.endswith("_parameters")]
    if "n_parameters" in runs:
        runs["trained_parameters"] = runs["n_parameters"] + runs[extra].fillna(0.0).sum(axis=1)
    items = pd.to_numeric(runs.get("n_query"), errors="coerce") + pd.to_numeric(runs.get("n_database"), errors="coerce")
    if "encode_seconds" in runs:
        runs["encode_ms_per_1000"] = runs["encode_seconds"] / items * 1e6
    peak = runs["peak_rss_mb"] if "peak_rss_mb" in runs else pd.Series(float("nan"), index=runs.index)
    if "process_peak_rss_mb" in runs:
        peak = peak.fillna(runs["process_peak_rss_mb"])
    runs["peak_memory_mb"] = peak
    return runs


def describe_experiment(runs: pd.DataFrame, spread: str) -> dict[str, str]:
    """Words for captions and titles of one experiment's runs: ``data`` (dataset, protocol, sizes),
    ``features``, ``seeds`` (which seeds and which spread), ``commit``, ``short`` (for figure titles)."""
    from bench.paper import DATASET_NAMES, FEATURE_NAMES, SPREADS, fmt_count, seeds_text

    first = runs.iloc[0]
    dataset = DATASET_NAMES.get(first["dataset"], first["dataset"])
    sizes = (f"{fmt_count(first.get('n_query'))} queries, {fmt_count(first.get('n_database'))} database items, "
             f"{fmt_count(first.get('n_train'))} training items")
    features = FEATURE_NAMES.get(first["features"], str(first["features"]))
    size = first.get("input_size")
    if size not in (None, "") and pd.notna(size):
        features += f", images resized to {size}x{size} px"
    splits = sorted(runs["split_seed"].unique())
    seeds = seeds_text(runs["seed"])
    split_words = (f"split seed {seeds_text(splits)}" + (" (the protocol's own)" if len(splits) == 1 else "")
                   if len(splits) == 1 else f"split seeds {seeds_text(splits)}")
    commits = sorted({str(c)[:7] for c in runs.get("commit", pd.Series([], dtype=object)) if c})
    commit = ("commit " + ", ".join(commits)) if commits else "commit not recorded (installed package)"
    return {
        "data": f"{dataset}, protocol {first['protocol']} ({sizes})",
        "features": features,
        "seeds": f"mean ± std {SPREADS[spread]}; method seeds {seeds}; {split_words}",
        "commit": commit,
        "short": f"{dataset}, protocol {first['protocol']}, {first['features']} features, method seeds {seeds}, "
                 f"{split_words}",
    }


def query_ap(tracker: Tracker, runs: pd.DataFrame, method: str, n_bits: int) -> dict[int, pd.Series]:
    """Per split seed, the per-query AP@K of the row ``method`` at ``n_bits`` averaged over its method
    seeds (`bench.significance.seed_averaged`). Splits whose runs lack ``query_ap.csv`` are left out."""
    from bench.significance import seed_averaged

    part = runs[(runs["method"] == method) & (runs["n_bits"] == n_bits)]
    out = {}
    for split_seed, group in part.groupby("split_seed"):
        texts = [tracker.read_text(run_id, "query_ap.csv") for run_id in group["run_id"]]
        if texts and all(t is not None for t in texts):
            out[int(split_seed)] = seed_averaged(texts)
    return out


def resolve_row(runs: pd.DataFrame, name: str) -> str:
    """The table row ``name`` names: a row label (``itq``, ``itq#6b88fe``) or a method with one row.

    Raises `UsageError` for a name with no row or with several (listing them)."""
    labels = sorted(runs["method"].unique())
    if name in labels:
        return name
    matches = sorted(runs.loc[runs["method_name"] == name, "method"].unique())
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"{name} has several configurations here: {', '.join(matches)}; name one of them")
    raise UsageError(f"no runs of {name!r} in this experiment; rows: {', '.join(labels)}")


def compare(tracker: Tracker, runs: pd.DataFrame, a: str, b: str, n_bits: int) -> list:
    """`bench.significance.paired_test` of rows ``a`` and ``b`` at ``n_bits``, one result per split seed
    both were run on.

    Raises `UsageError` when either has no runs at ``n_bits`` or no per-query AP on a common split."""
    from bench.significance import paired_test

    a, b = resolve_row(runs, a), resolve_row(runs, b)
    for name in (a, b):
        if not ((runs["method"] == name) & (runs["n_bits"] == n_bits)).any():
            have = sorted(runs.loc[runs["method"] == name, "n_bits"].unique())
            raise UsageError(f"{name} has no finished run at {n_bits} bits; it has {', '.join(map(str, have))}")
    ap_a, ap_b = query_ap(tracker, runs, a, n_bits), query_ap(tracker, runs, b, n_bits)
    common = sorted(set(ap_a) & set(ap_b))
    if not common:
        raise UsageError(f"no split seed on which both {a} and {b} recorded per-query AP (query_ap.csv) at "
                         f"{n_bits} bits; runs recorded before it existed cannot be compared: re-run them with --force")
    return [paired_test(ap_a[s], ap_b[s], split_seed=s) for s in common]


def lead_tester(tracker: Tracker, runs: pd.DataFrame):
    """``(best, second, n_bits) -> p`` for `bench.paper.build_table`: the paired test's p-value, Fisher's
    combination over split seeds; None where per-query AP is missing."""
    from bench.significance import combine

    def p_value(best: str, second: str, n_bits: int) -> float | None:
        try:
            return combine(compare(tracker, runs, best, second, n_bits))[1]
        except UsageError:
            return None

    return p_value


def report_tables(tracker: Tracker | None, runs: pd.DataFrame, experiment: str, *, metric: str | None = None,
                  spread: str | None = None, tables: str = "all", efficiency_bits: int | None = None) -> list:
    """The tables of one experiment (`bench.paper.Table`): the main table of ``metric`` (default its
    own mAP@K, with daggers when ``tracker`` can read per-query AP), then, with ``tables="all"``,
    tie-aware mAP, P@K, P within Hamming radius 2 and the efficiency table at ``efficiency_bits``
    (default: the longest code length every method ran)."""
    from bench import paper

    part = with_costs(runs[runs["experiment"] == experiment])
    spread = choose_spread(part, spread)
    words = describe_experiment(part, spread)
    main = experiment_metric(part, experiment, metric)
    topk = int(part["topk"].iloc[0])
    slug = experiment.replace("/", "-")
    chosen = [main]
    if tables == "all":
        chosen += [m for m in (f"map_at_{topk}", "map_tie_aware", f"precision_at_{topk}", "precision_r2")
                   if m not in chosen and m in part.columns]
    out = []
    for m in chosen:
        tested = tracker is not None and m == f"map_at_{topk}"
        caption = (f"{metric_table.label(m)} on {words['data']}; {words['features']}; {words['seeds']}; "
                   f"{words['commit']}.")
        out.append(paper.build_table(part, m, spread=spread, caption=caption, label=f"tab:{slug}-{m}",
                                     lead_p_value=lead_tester(tracker, part) if tested else None))
    if tables == "all":
        common = set.intersection(*(set(g["n_bits"]) for _, g in part.groupby("method")))
        bits = efficiency_bits or (max(common) if common else int(part["n_bits"].max()))
        caption = (f"Cost of each method at {bits} bits on {words['data']}; {words['features']}; "
                   f"{words['seeds']}; {words['commit']}.")
        out.append(paper.build_efficiency_table(part, bits, spread=spread, caption=caption,
                                                label=f"tab:{slug}-efficiency-{bits}"))
    return out


def _mean_curves(tracker: Tracker, runs: pd.DataFrame, n_bits: int, artifact: str, key: str) -> dict[str, pd.DataFrame]:
    """Per row, the mean over its runs at ``n_bits`` of a CSV curve artifact, by ``key``."""
    import io

    out = {}
    for method, group in runs[runs["n_bits"] == n_bits].groupby("method"):
        frames = [pd.read_csv(io.StringIO(t)) for t in (tracker.read_text(r, artifact) for r in group["run_id"]) if t]
        if frames:
            out[method] = pd.concat(frames).groupby(key, as_index=False).mean()
    return out


def experiment_figures(tracker: Tracker, runs: pd.DataFrame, experiment: str, out_dir, *, metric: str | None = None,
                       spread: str | None = None, curve_bits: int | None = None,
                       data_root: str | None = None, say=lambda m: None) -> list[tuple[str, "Path"]]:
    """Every figure of one experiment as PNG and PDF under ``out_dir``: mAP against code length, PR curves
    by Hamming radius and precision@N at ``curve_bits`` (default: the longest code length every method
    ran), training time against mAP with its Pareto front, and, for image datasets whose images can be
    loaded, the retrieval examples. Returns (caption, PNG path) pairs in that order."""
    from pathlib import Path

    from bench import plot

    out_dir = Path(out_dir)
    part = runs[runs["experiment"] == experiment]
    spread = choose_spread(part, spread)
    words = describe_experiment(part, spread)
    main = experiment_metric(part, experiment, metric)
    styles = plot.method_styles(part["method"])
    common = set.intersection(*(set(g["n_bits"]) for _, g in part.groupby("method")))
    bits = curve_bits or (max(common) if common else int(part["n_bits"].max()))
    title = words["short"]
    figures = []

    def keep(fig, name: str, caption: str) -> None:
        png = plot.save_figure(fig, out_dir / f"{name}.png", also_pdf=True)[0]
        figures.append((caption, png))
        say(f"wrote {png} (and .pdf)")

    keep(plot.plot_metric_vs_bits(part, main, None, title=title, styles=styles, spread=spread),
         "map_vs_bits", f"{metric_table.label(main)} against code length; error bars: ± std {spread_words(spread)}.")
    pr = _mean_curves(tracker, part, bits, "pr_curve.csv", "radius")
    if pr:
        keep(plot.plot_pr_curves(pr, bits, title=title, styles=styles), f"pr_curve_{bits}",
             f"Precision-recall of Hamming-ball retrieval at {bits} bits (radius 0 to {bits}), mean over runs.")
    at_n = _mean_curves(tracker, part, bits, "precision_at_n.csv", "n")
    if at_n:
        keep(plot.plot_precision_at_n(at_n, bits, title=title, styles=styles), f"precision_at_n_{bits}",
             f"Precision of the first N items of the Hamming ranking at {bits} bits, mean over runs.")
    if "fit_seconds" in part:
        keep(plot.plot_time_vs_metric(part, main, None, title=title, styles=styles), "time_vs_map",
             f"Training time (log scale) against {metric_table.label(main)}; each point one method at one code "
             "length (labelled), dashed: the Pareto front.")
    examples = retrieval_examples(tracker, part, bits)
    if examples:
        image_of, label_of = _image_reader(part.iloc[0]["dataset"], data_root, say)
        if image_of is not None:
            keep(plot.plot_retrieval_examples(examples, image_of, label_of, bits, title=title),
                 f"retrieval_examples_{bits}",
                 f"Retrieval examples at {bits} bits: each query and its top-10 per method (method seed "
                 f"{int(part['seed'].min())}, split seed {int(part['split_seed'].min())}); green frame: relevant.")
    return figures


def spread_words(spread: str) -> str:
    from bench.paper import SPREADS

    return SPREADS[spread]


def retrieval_examples(tracker: Tracker, runs: pd.DataFrame, n_bits: int) -> dict[str, pd.DataFrame]:
    """Per row, the ``retrieval_top10.csv`` of its run at ``n_bits`` with the lowest split seed and method
    seed (every row then shows the same queries); rows without it are left out."""
    import io

    part = runs[(runs["n_bits"] == n_bits) & (runs["split_seed"] == runs["split_seed"].min())]
    out = {}
    for method, group in part.groupby("method"):
        text = tracker.read_text(group.sort_values("seed")["run_id"].iloc[0], "retrieval_top10.csv")
        if text:
            out[method] = pd.read_csv(io.StringIO(text))
    return out


def _image_reader(dataset: str, data_root: str | None, say):
    """(item id -> image, item id -> class name) of an image dataset; (None, None) with a line said when
    its images cannot be loaded here (feature files, missing data)."""
    import numpy as np

    from hashbench.datasets import load_dataset

    try:
        data = load_dataset(dataset, data_root=data_root) if data_root else load_dataset(dataset)
    except Exception as exc:  # noqa: BLE001 -- a figure left out is said, never a failed report
        say(f"retrieval examples left out: cannot load the images of {dataset} ({exc})")
        return None, None
    if data.images is None:
        say(f"retrieval examples left out: {dataset} holds no images")
        return None, None
    classes = list(data.classes)

    def label_of(item: int) -> str:
        y = data.labels[int(item)]
        if np.ndim(y) == 0:
            return classes[int(y)] if int(y) < len(classes) else str(int(y))
        return ",".join(classes[i] if i < len(classes) else str(i) for i in np.flatnonzero(y)[:2])

    return (lambda item: np.asarray(data.images[int(item)])), label_of


def write_report(tracker: Tracker, runs: pd.DataFrame, experiment: str, out_dir, *, formats=("markdown", "latex",
                 "csv", "html"), metric: str | None = None, spread: str | None = None,
                 efficiency_bits: int | None = None, curve_bits: int | None = None, data_root: str | None = None,
                 say=lambda m: None) -> list:
    """Write one experiment's report under ``out_dir``: ``report.md``, ``report.tex``, ``report.csv`` and
    the self-contained ``report.html`` (every table and figure), with the figures as PNG and PDF.
    Returns the paths written."""
    from pathlib import Path

    from bench import paper

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = report_tables(tracker, runs, experiment, metric=metric, spread=spread, efficiency_bits=efficiency_bits)
    written = []
    part = runs[runs["experiment"] == experiment]
    used_spread = choose_spread(part, spread)
    if "markdown" in formats:
        written.append(out_dir / "report.md")
        written[-1].write_text("\n\n".join(paper.to_markdown(t) for t in tables) + "\n")
    if "latex" in formats:
        written.append(out_dir / "report.tex")
        written[-1].write_text("\n\n".join(paper.to_latex(t) for t in tables) + "\n")
    if "csv" in formats:
        written.append(out_dir / "report.csv")
        frame = pd.concat([paper.to_frame(t, experiment=experiment, spread=used_spread) for t in tables])
        frame.to_csv(written[-1], index=False)
    if "html" in formats:
        figures = experiment_figures(tracker, runs, experiment, out_dir, metric=metric, spread=spread,
                                     curve_bits=curve_bits, data_root=data_root, say=say)
        words = describe_experiment(part, used_spread)
        sections = [(t.title, paper.to_html(t)) for t in tables]
        small = [(c, png) for c, png in figures if not png.stem.startswith("retrieval_examples")]
        sections.append(("figures", '<div class="figures">' + "".join(
            f"<figure>{paper.image_tag(png, c)}<figcaption>{html.escape(c)}</figcaption></figure>"
            for c, png in small) + "</div>"))
        sections += [("retrieval examples", f"<figure>{paper.image_tag(png, c)}<figcaption>{html.escape(c)}"
                                            "</figcaption></figure>")
                     for c, png in figures if png.stem.startswith("retrieval_examples")]
        written.append(out_dir / "report.html")
        written[-1].write_text(paper.html_page(
            f"hashbench report: {experiment}",
            f"{words['data']}; {words['features']}; {words['seeds']}; {words['commit']}. "
            f"{len(part)} finished runs.", sections))
        written += [png for _, png in figures]
    return written
