"""``python -m bench``: run sweeps, list methods, render tables and plots from the tracked runs.

Exit status: 0 success; 1 a sweep finished with failed runs (they are recorded as FAILED);
2 a mistake in the command or the data (one line on stderr, no traceback).
"""
from __future__ import annotations

import argparse
import os
import sys

from bench.errors import USER_ERRORS, UsageError

DEFAULT_DATASET = "fashion-mnist"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train and evaluate methods on a dataset's protocol; record in MLflow")
    run.add_argument("--methods", required=True, help="comma-separated method names (see `list`)")
    run.add_argument("--dataset", default=DEFAULT_DATASET, help=f"dataset name (default {DEFAULT_DATASET})")
    run.add_argument("--bits", default="16,32,64,128", help="code lengths, comma-separated (default 16,32,64,128)")
    run.add_argument("--seeds", default="0", help="seeds, comma-separated (default 0)")
    run.add_argument("--protocol", help="protocol name (default: the dataset's standard protocol)")
    run.add_argument("--features", help="feature extractor (default: the dataset's default)")
    run.add_argument("--data-root", help="folder or file holding the dataset (default: standard locations)")
    run.add_argument("--allow-pickle", action="store_true",
                     help="allow reading Python pickle feature files (they can run code: trusted files only)")
    run.add_argument("--data-option", action="append", metavar="NAME=VALUE",
                     help="loader option, e.g. --data-option image_root=/data/nus/images (repeatable)")
    run.add_argument("--feature-option", action="append", metavar="NAME=VALUE",
                     help="feature extractor setting, e.g. --feature-option input_size=128 (repeatable)")
    run.add_argument("--side-option", action="append", metavar="INPUT.NAME=VALUE",
                     help="side-input setting, e.g. --side-option tags.tag_model=efficientnet-lite2 (repeatable)")
    run.add_argument("--param", action="append", metavar="METHOD.NAME=VALUE",
                     help="override a hyper-parameter, e.g. --param lagnh.epochs=50 (repeatable)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlflow.db)")
    run.add_argument("--allow-query-overlap", action="store_true",
                     help="evaluate even when queries are also database or training items (refused by default)")
    run.add_argument("--force", action="store_true", help="redo runs that already finished with the same settings")
    run.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                     help="a claimed run without a heartbeat for this long belongs to a dead sweep and is "
                          "taken over (default 300)")
    run.add_argument("--metric", help="metric of the printed table (default mAP@K of the protocol)")
    run.add_argument("--format", choices=("text", "markdown", "latex"), default="text")

    sync = sub.add_parser("sync", help="upload results that a sweep kept in the local spool when the store failed")
    sync.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlflow.db)")

    lst = sub.add_parser("list", help="list methods (name, family, side inputs, reference)")
    lst.add_argument("what", nargs="?", choices=("methods", "datasets"), default="methods")

    rep = sub.add_parser("report", help="render a results table from the tracked runs")
    plot = sub.add_parser("plot", help="plot a metric against code length (and time vs metric)")
    for q in (rep, plot):
        q.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlflow.db)")
        q.add_argument("--experiment", help="dataset/protocol experiment (default: all)")
        q.add_argument("--sweep", help="restrict to one sweep (its parent run id or a prefix of it)")
        q.add_argument("--metric", help="metric (default mAP@K of the protocol)")
        q.add_argument("--code-versions", choices=("latest", "all"), default="latest",
                       help="each configuration at its latest code (default), or every code version, labelled")
    rep.add_argument("--format", choices=("text", "markdown", "latex"), default="text")
    rep.add_argument("--output", help="write the table to this file instead of stdout")
    plot.add_argument("--output", default="results/plots/map_vs_bits.png", help="PNG path for the main plot")
    plot.add_argument("--time-plot", help="also write training time vs metric to this PNG path")
    return p


def _cmd_list(args) -> int:
    if args.what == "datasets":
        from hashbench.datasets import PROTOCOLS, dataset_names, extractor_names

        for name in dataset_names():
            protos = ", ".join(sorted(PROTOCOLS.get(name, {}))) or "-"
            print(f"{name:16s} protocols: {protos}")
        print(f"\nfeature extractors: {', '.join(extractor_names())}")
        return 0
    from hashbench.methods import describe_methods

    rows = describe_methods()
    print(f"{'name':14s} {'family':8s} {'side inputs':12s} {'batch-dep.':10s} reference")
    for r in rows:
        print(f"{r.name:14s} {r.family:8s} {','.join(r.side_inputs) or '-':12s} "
              f"{'yes' if r.batch_dependent else 'no':10s} {r.reference}")
    return 0


def _results_frame(result):
    import pandas as pd

    return pd.DataFrame([{"method": r.method, "n_bits": r.n_bits, "seed": r.seed, "experiment": result.experiment,
                          **r.metrics} for r in result.results if r.status in ("FINISHED", "REUSED")])


def _cmd_run(args) -> int:
    from bench.metrics import label
    from bench.runner import run_sweep
    from bench.sweep import SweepSpec, parse_data_options, parse_int_list, parse_overrides, parse_side_options
    from bench.table import render

    spec = SweepSpec(
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        dataset=args.dataset,
        bits=parse_int_list(args.bits, "--bits"),
        seeds=parse_int_list(args.seeds, "--seeds"),
        protocol=args.protocol,
        features=args.features,
        data_root=args.data_root,
        allow_pickle=args.allow_pickle,
        data_options=parse_data_options(args.data_option),
        force=args.force,
        overrides=parse_overrides(args.param),
        side_options=parse_side_options(args.side_option),
        feature_options=parse_data_options(args.feature_option, "--feature-option"),
        table_metric=args.metric,
        allow_query_overlap=args.allow_query_overlap,
    )
    from bench.tracking import STALE_AFTER

    result = run_sweep(spec, tracking_uri=args.tracking_uri,
                       stale_after=STALE_AFTER if args.stale_after is None else args.stale_after)
    frame = _results_frame(result)
    metric = result.table_metric
    if not frame.empty and metric in frame.columns:
        print()
        print(render(frame, metric, args.format, method_order=list(spec.methods),
                     title=f"{label(metric)} on {result.experiment} (mean ± std over seeds)"))
        if metric != "fit_seconds":
            print()
            print(render(frame, "fit_seconds", args.format, method_order=list(spec.methods),
                         title="training time (s)"))
    print(f"\nrecorded in {result.tracking_uri}, experiment {result.experiment!r}, sweep {result.parent_run_id}",
          file=sys.stderr)
    if result.elsewhere:
        print(f"\n{len(result.elsewhere)} of {len(result.results)} runs are running elsewhere (claimed by "
              "another sweep; re-run this command later to reuse their results):", file=sys.stderr)
        for r in result.elsewhere:
            print(f"  {r.method} {r.n_bits} bits seed {r.seed}: run {r.run_id}", file=sys.stderr)
    status = 0
    if result.failed:
        print(f"\n{len(result.failed)} of {len(result.results)} runs FAILED:", file=sys.stderr)
        for r in result.failed:
            blame = " [harness error: please report]" if r.failed_in == "harness" else ""
            print(f"  {r.method} {r.n_bits} bits seed {r.seed}: {r.error}{blame}", file=sys.stderr)
        status = 1
    if result.spooled:
        print(f"\n{result.spooled} result(s) could not be written to {result.tracking_uri} and are kept in "
              f"{result.spool_dir}; upload them with: python -m bench sync --tracking-uri {result.tracking_uri}",
              file=sys.stderr)
        status = 1
    return status


def _cmd_sync(args) -> int:
    from bench.spool import pending, spool_dir, sync
    from bench.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    if not pending(uri):
        print(f"nothing to upload: the spool {spool_dir(uri)} holds no results for {uri}", file=sys.stderr)
        return 0
    report = sync(uri, say=lambda m: print(m, file=sys.stderr))
    print(f"uploaded {report.uploaded} run(s) to {uri}; {report.already_there} already there; "
          f"closed {report.closed} run(s); {report.left} left in {spool_dir(uri)}", file=sys.stderr)
    return 1 if report.left else 0


def _writable_output(path: str | None, flag: str) -> None:
    """Refuse an output path that cannot be written, before any work (one line, exit 2)."""
    if not path:
        return
    from pathlib import Path

    target = Path(path)
    if target.is_dir() or path.endswith(("/", os.sep)):
        raise UsageError(f"{flag} {path} is a folder; give a file name")
    for parent in [target.parent, *target.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"cannot write {flag} {path}: {parent} is not a folder")
            if not os.access(parent, os.W_OK):
                raise UsageError(f"cannot write {flag} {path}: {parent} is not writable")
            return


def _write(path: str, text: str, flag: str) -> None:
    from pathlib import Path

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    except OSError as exc:
        raise UsageError(f"cannot write {flag} {path}: {exc.strerror or exc}") from None


def _load(args):
    """The runs a report or plot reads, and its metric, checked; the store is opened read-only."""
    from bench.report import default_metric, load_runs
    from bench.tracking import Tracker

    frame = load_runs(Tracker(args.tracking_uri).open(create=False), args.experiment, args.sweep,
                      code_versions=args.code_versions)
    metric = args.metric or default_metric(frame)
    if metric not in frame.columns:
        recorded = sorted(c for c in frame.columns if frame[c].dtype.kind == "f" and c not in ("start_time",))
        raise UsageError(f"metric {metric!r} was not recorded; recorded metrics: {', '.join(recorded)}")
    return frame, metric


def _cmd_report(args) -> int:
    from bench.metrics import label
    from bench.table import render

    _writable_output(args.output, "--output")
    frame, metric = _load(args)
    blocks = []
    for exp, part in frame.groupby("experiment", sort=True):
        features = ",".join(sorted(part["features"].dropna().unique()))
        blocks.append(render(part, metric, args.format,
                             title=f"{label(metric)} on {exp} (features: {features}; mean ± std over seeds)"))
    text = "\n\n".join(blocks) + "\n"
    if args.output:
        _write(args.output, text, "--output")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def _cmd_plot(args) -> int:
    from bench.plot import figure_path, plot_metric_vs_bits, plot_time_vs_metric

    for flag, path in (("--output", args.output), ("--time-plot", args.time_plot)):
        if path:
            _writable_output(str(figure_path(path)), flag)
    frame, metric = _load(args)
    try:
        print(f"wrote {plot_metric_vs_bits(frame, metric, args.output)}", file=sys.stderr)
        if args.time_plot:
            print(f"wrote {plot_time_vs_metric(frame, metric, args.time_plot)}", file=sys.stderr)
    except OSError as exc:
        raise UsageError(f"cannot write the plot: {exc.strerror or exc} ({exc.filename})") from None
    return 0


COMMANDS = {"run": _cmd_run, "list": _cmd_list, "report": _cmd_report, "plot": _cmd_plot, "sync": _cmd_sync}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are recorded; re-run the same command to continue", file=sys.stderr)
        return 130
