"""``python -m bench``: run sweeps, list methods, render tables and plots from the tracked runs.

Exit status: 0 success; 1 a sweep finished with failed runs (they are recorded as FAILED);
2 a mistake in the command or the data (one line on stderr, no traceback).
"""
from __future__ import annotations

import argparse
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
    run.add_argument("--force", action="store_true", help="redo runs that already finished with the same settings")
    run.add_argument("--metric", help="metric of the printed table (default mAP@K of the protocol)")
    run.add_argument("--format", choices=("text", "markdown", "latex"), default="text")

    lst = sub.add_parser("list", help="list methods (name, family, side inputs, reference)")
    lst.add_argument("what", nargs="?", choices=("methods", "datasets"), default="methods")

    rep = sub.add_parser("report", help="render a results table from the tracked runs")
    plot = sub.add_parser("plot", help="plot a metric against code length (and time vs metric)")
    for q in (rep, plot):
        q.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlflow.db)")
        q.add_argument("--experiment", help="dataset/protocol experiment (default: all)")
        q.add_argument("--sweep", help="restrict to one sweep (its parent run id or a prefix of it)")
        q.add_argument("--metric", help="metric (default mAP@K of the protocol)")
    rep.add_argument("--format", choices=("text", "markdown", "latex"), default="text")
    rep.add_argument("--output", help="write the table to this file instead of stdout")
    plot.add_argument("--output", default="results/plots/map_vs_bits.png", help="PNG path for the main plot")
    plot.add_argument("--time-plot", help="also write training time vs metric to this PNG path")
    return p


def _cmd_list(args) -> int:
    if args.what == "datasets":
        from datasets import PROTOCOLS, dataset_names, extractor_names

        for name in dataset_names():
            protos = ", ".join(sorted(PROTOCOLS.get(name, {}))) or "-"
            print(f"{name:16s} protocols: {protos}")
        print(f"\nfeature extractors: {', '.join(extractor_names())}")
        return 0
    from methods import describe_methods

    rows = describe_methods()
    print(f"{'name':14s} {'family':8s} {'side inputs':12s} {'batch-dep.':10s} reference")
    for r in rows:
        print(f"{r.name:14s} {r.family:8s} {','.join(r.side_inputs) or '-':12s} "
              f"{'yes' if r.batch_dependent else 'no':10s} {r.reference}")
    return 0


def _results_frame(result):
    import pandas as pd

    return pd.DataFrame([{"method": r.method, "n_bits": r.n_bits, "seed": r.seed, "experiment": result.experiment,
                          **r.metrics} for r in result.results if r.status != "FAILED"])


def _cmd_run(args) -> int:
    from bench.runner import run_sweep
    from bench.sweep import SweepSpec, parse_data_options, parse_int_list, parse_overrides, parse_side_options
    from bench.table import metric_label, render

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
    )
    result = run_sweep(spec, tracking_uri=args.tracking_uri)
    frame = _results_frame(result)
    metric = args.metric or f"map_at_{result.topk}"
    if not frame.empty:
        if metric not in frame.columns:
            raise UsageError(f"unknown metric {metric!r}; recorded: {', '.join(sorted(frame.columns[4:]))}")
        print()
        print(render(frame, metric, args.format, method_order=list(spec.methods),
                     title=f"{metric_label(metric)} on {result.experiment} (mean ± std over seeds)"))
        if metric != "fit_seconds":
            print()
            print(render(frame, "fit_seconds", args.format, method_order=list(spec.methods),
                         title="training time (s)"))
    print(f"\nrecorded in {result.tracking_uri}, experiment {result.experiment!r}, sweep {result.parent_run_id}")
    if result.failed:
        print(f"\n{len(result.failed)} of {len(result.results)} runs FAILED:", file=sys.stderr)
        for r in result.failed:
            print(f"  {r.method} {r.n_bits} bits seed {r.seed}: {r.error}", file=sys.stderr)
        return 1
    return 0


def _cmd_report(args) -> int:
    from bench.report import default_metric, load_runs
    from bench.table import metric_label, render
    from bench.tracking import Tracker

    frame = load_runs(Tracker(args.tracking_uri), args.experiment, args.sweep)
    metric = args.metric or default_metric(frame)
    if metric not in frame.columns:
        raise UsageError(f"metric {metric!r} was not recorded; choose one of the run metrics")
    blocks = []
    for exp, part in frame.groupby("experiment", sort=True):
        features = ",".join(sorted(part["features"].dropna().unique()))
        blocks.append(render(part, metric, args.format,
                             title=f"{metric_label(metric)} on {exp} (features: {features}; mean ± std over seeds)"))
    text = "\n\n".join(blocks) + "\n"
    if args.output:
        from pathlib import Path

        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def _cmd_plot(args) -> int:
    from bench.plot import plot_metric_vs_bits, plot_time_vs_metric
    from bench.report import default_metric, load_runs
    from bench.tracking import Tracker

    frame = load_runs(Tracker(args.tracking_uri), args.experiment, args.sweep)
    metric = args.metric or default_metric(frame)
    if metric not in frame.columns:
        raise UsageError(f"metric {metric!r} was not recorded; choose one of the run metrics")
    print(f"wrote {plot_metric_vs_bits(frame, metric, args.output)}")
    if args.time_plot:
        print(f"wrote {plot_time_vs_metric(frame, metric, args.time_plot)}")
    return 0


COMMANDS = {"run": _cmd_run, "list": _cmd_list, "report": _cmd_report, "plot": _cmd_plot}


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
