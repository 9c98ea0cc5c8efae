"""hashbench's command line (``python -m bench`` or the ``hashbench`` console script): run sweeps, list
methods and datasets, render tables and plots from the tracked runs, upload a spool.

Exit status: 0 success; 1 a sweep finished with failed runs (recorded as FAILED) or results kept in the
spool; 2 a mistake in the command or the data (one line on stderr, no traceback); 130 interrupted.
Standard output carries only tables (nothing with ``--output``); progress, warnings and errors go to stderr.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable

from bench.errors import USER_ERRORS, UsageError

DEFAULT_DATASET = "fashion-mnist"
URI_HELP = ("MLflow tracking URI, or a sqlite file path ending in .db (default: $MLFLOW_TRACKING_URI, "
            "else ./mlflow.db)")

EXAMPLES = {
    "run": """examples:
  {prog} run --methods lagnh,itq                      # the main job: Fashion-MNIST, 16/32/64/128 bits
  {prog} run --methods itq,sh --dataset cifar10 --bits 32,64 --seeds 0,1,2
  {prog} run --methods lagnh --param lagnh.epochs=20 --side-option tags.k=5 --format markdown > table.md
  {prog} run --methods itq,sh --executor ray --ray-address 10.0.0.1:6379 --threads 2   # on a Ray cluster""",
    "list": """examples:
  {prog} list              # methods: name, family, side inputs, batch dependence, reference
  {prog} list datasets     # datasets, their protocols, feature extractors""",
    "report": """examples:
  {prog} report --experiment fashion-mnist/fashion-mnist --format markdown > results.md
  {prog} report --metric map_tie_aware --code-versions all
  {prog} report --experiment cifar10/cifar10 --output-dir results/report   # .md, .tex, .csv, .html + figures
  {prog} report --tables all --spread splits --format latex""",
    "plot": """examples:
  {prog} plot --experiment cifar10/cifar10 --output map_vs_bits.png --time-plot time_vs_map.pdf
  {prog} plot --experiment cifar10/cifar10 --output-dir results/figures --bits 32""",
    "compare": """examples:
  {prog} compare lagnh itq --experiment cifar10/cifar10 --bits 16
  {prog} compare itq#6b88fe itq#1c2d3e --experiment digits/digits --bits 32""",
    "search": """examples:
  {prog} search --run 0123abcd... --query queries.npy --k 10          # ids and Hamming distances
  {prog} search --run 0123abcd... --query q.npy --side tags=q_tags.npy   # a method that reads tags""",
    "reference": """examples:
  {prog} reference                          # recompute the committed accuracy references and compare
  {prog} reference --sweep cifar10-ci       # one sweep only
  {prog} reference --update                 # rewrite them on purpose (clean checkout; review the diff)""",
    "tune": """examples:
  {prog} tune --methods itq,lagnh --dataset cifar10 --bits 64 --trials 20     # 20 trials + the defaults each
  {prog} tune --methods sgh --dataset cifar10 --bits 64 --time-budget 15 --output sgh.yaml
  {prog} run --config tuned.yaml             # the chosen settings on the protocol's queries and database""",
    "sync": """examples:
  {prog} sync --tracking-uri http://127.0.0.1:5000   # after a sweep said its results are in the spool""",
}


def _prog(argv0: str | None = None) -> str:
    """How the user called us: ``hashbench`` (console script) or ``python -m bench``."""
    name = os.path.basename(argv0 if argv0 is not None else sys.argv[0])
    return "hashbench" if name.startswith("hashbench") else "python -m bench"


def _version() -> str:
    from bench.environment import git_commit, package_versions

    commit = git_commit()
    return f"hashbench {package_versions()['hashbench']}" + (f" (checkout {commit})" if commit else "")


class _Parser(argparse.ArgumentParser):
    """argparse with the harness's rule for user errors: one line on stderr, exit status 2 (argparse's own
    prints the whole usage block first). Sub-command parsers inherit the class."""

    def error(self, message: str):  # noqa: D102 -- argparse's hook
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _parser(prog: str = "python -m bench") -> argparse.ArgumentParser:
    shared = _Parser(add_help=False)
    loud = shared.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity", default=argparse.SUPPRESS,
                      help="print the table and errors only")
    loud.add_argument("-v", "--verbose", action="store_const", const=1, dest="verbosity", default=argparse.SUPPRESS,
                      help="also print each method's per-epoch training lines")
    p = _Parser(prog=prog, description=__doc__.split("\n\n")[0].replace("``", ""), parents=[shared])
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[shared],
                              epilog=EXAMPLES[name].format(prog=prog),
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    run = command("run", "train and evaluate methods on a dataset's protocol; record every run in MLflow")
    run.add_argument("--config", metavar="SWEEP.yaml",
                     help="a sweep file: the same keys as these flags, plus per-method parameter grids; flags "
                          "given as well override it (every sweep logs the file that replays it: sweep.yaml)")
    run.add_argument("--methods", help="comma-separated method names (see the list command)")
    run.add_argument("--dataset", help=f"dataset name (default {DEFAULT_DATASET})")
    run.add_argument("--bits", help="code lengths, comma-separated (default 16,32,64,128)")
    run.add_argument("--seeds", help="seeds, comma-separated (default 0)")
    run.add_argument("--split-seeds", metavar="SEEDS",
                     help="draw the protocol's split with these seeds, comma-separated, e.g. 0,1,2 (default: the "
                          "protocol's own seed); tables then show the spread over splits too")
    run.add_argument("--protocol", help="protocol name (default: the dataset's standard protocol)")
    run.add_argument("--features", help="feature extractor (default: the dataset's default)")
    run.add_argument("--data-root", help="folder or file holding the dataset (default: standard locations)")
    run.add_argument("--allow-pickle", action="store_true", default=None,
                     help="allow reading Python pickle feature files (they can run code: trusted files only)")
    run.add_argument("--data-option", action="append", metavar="NAME=VALUE",
                     help="loader option, e.g. --data-option image_root=/data/nus/images (repeatable)")
    run.add_argument("--feature-option", action="append", metavar="NAME=VALUE",
                     help="feature extractor setting, e.g. --feature-option input_size=128 (repeatable)")
    run.add_argument("--side-option", action="append", metavar="INPUT.NAME=VALUE",
                     help="side-input setting, e.g. --side-option tags.tag_model=efficientnet-lite2 (repeatable)")
    run.add_argument("--param", action="append", metavar="METHOD.NAME=VALUE",
                     help="a hyper-parameter, e.g. --param lagnh.epochs=50 (repeatable)")
    run.add_argument("--tracking-uri", help=URI_HELP)
    run.add_argument("--allow-query-overlap", action="store_true", default=None,
                     help="evaluate even when queries are also database or training items (refused by default)")
    run.add_argument("--validation", action="store_true", default=None,
                     help="fit and evaluate on the protocol's validation split, carved from its training split "
                          "(10%% of the training items as queries, the rest as database and training set; K "
                          "scaled to that database): for choosing settings without the protocol's queries or "
                          "evaluation database. Runs go to the experiment <dataset>/<protocol>-validation")
    run.add_argument("--force", action="store_true", default=None,
                     help="redo runs that already finished with the same settings")
    run.add_argument("--no-save-models", action="store_false", default=None, dest="save_models",
                     help="do not keep each run's fitted hasher (MLflow pyfunc model) and database codes "
                          "(faiss index), which the search command answers from")
    run.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                     help="a claimed run without a heartbeat for this long belongs to a dead sweep and is "
                          "taken over (default 300)")
    run.add_argument("--threads", metavar="N",
                     help="threads of torch, ONNX Runtime, BLAS, faiss and numba alike, recorded with every run "
                          "(default: this machine's cores)")
    run.add_argument("--executor", choices=("local", "ray"),
                     help="where runs are computed: local (this process, default) or ray (Ray tasks of --threads "
                          "CPUs each; this process still claims and records every run)")
    run.add_argument("--ray-address", metavar="ADDR",
                     help="with --executor ray: the cluster to join (HOST:PORT of its head, ray://HOST:PORT, or "
                          "auto); default: start a local Ray instance for this sweep")
    run.add_argument("--metric", help="metric of the printed table (default: mAP@K of the protocol)")
    run.add_argument("--format", choices=("text", "markdown", "latex"),
                     help="table format on stdout (default text)")

    search = command("search", "answer queries from a run's stored model and database index: the nearest "
                               "database ids and their Hamming distances")
    search.add_argument("--run", required=True, metavar="RUN_ID", help="the run whose model and index answer")
    search.add_argument("--query", required=True, metavar="FEATURES.npy",
                        help="query features, (n, d) or one (d,) row, in the run's feature space")
    search.add_argument("--side", action="append", metavar="NAME=FILE.npy",
                        help="a side input the method's encoding needs, e.g. --side tags=TAGS.npy (repeatable)")
    search.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    search.add_argument("--tracking-uri", help=URI_HELP)

    sync = command("sync", "upload the results a sweep kept in the local spool when the store failed")
    sync.add_argument("--tracking-uri", help=URI_HELP)

    ref = command("reference", "recompute the committed accuracy references (results/reference/) and compare, "
                               "or rewrite them with --update")
    ref.add_argument("--update", action="store_true",
                     help="rewrite the reference files (refused on a tree with uncommitted changes, so that each "
                          "file names the commit that produced it)")
    ref.add_argument("--sweep", action="append", metavar="NAME",
                     help="only this reference sweep (repeatable): digits-shallow, cifar10-ci (default: all)")
    ref.add_argument("--workers", type=int, metavar="N",
                     help="fit in N single-threaded worker processes (default: one per CPU core, at most 4; the "
                          "values do not depend on it)")

    tune = command("tune", "choose each method's hyper-parameters on the validation split (carved from the training "
                           "split) with the same budget for every method; write them as a sweep file")
    tune.add_argument("--methods", required=True, help="comma-separated method names")
    tune.add_argument("--dataset", default=DEFAULT_DATASET, help=f"dataset name (default {DEFAULT_DATASET})")
    tune.add_argument("--bits", required=True, type=int, help="the code length to tune at, e.g. 64")
    budget = tune.add_mutually_exclusive_group(required=True)
    budget.add_argument("--trials", type=int, help="configurations drawn from each method's search space "
                                                   "(the defaults are scored as well)")
    budget.add_argument("--time-budget", type=float, metavar="MINUTES",
                        help="minutes of search per method (the defaults are scored as well)")
    tune.add_argument("--seed", type=int, default=0, help="the method seed of every trial and of the search (default 0)")
    tune.add_argument("--protocol", help="protocol name (default: the dataset's standard protocol)")
    tune.add_argument("--features", help="feature extractor (default: the dataset's default)")
    tune.add_argument("--data-root", help="folder or file holding the dataset (default: standard locations)")
    tune.add_argument("--param", action="append", metavar="METHOD.NAME=VALUE",
                      help="a hyper-parameter every trial shares, e.g. a reduced schedule --param "
                           "lagnh.epochs=5 (repeatable; kept in the written file)")
    tune.add_argument("--output", default="tuned.yaml", metavar="SWEEP.yaml",
                      help="where the chosen configurations go (default tuned.yaml), for run --config")
    tune.add_argument("--tracking-uri", help=URI_HELP)
    tune.add_argument("--threads", metavar="N", default="1", help="threads per trial (default 1)")
    tune.add_argument("--ray-address", metavar="ADDR",
                      help="join this Ray cluster (default: start a local Ray instance on this machine's cores)")

    lst = command("list", "list methods or datasets")
    lst.add_argument("what", nargs="?", choices=("methods", "datasets"), default="methods",
                     help="what to list (default methods)")

    rep = command("report", "render paper-ready tables (and, with --output-dir, figures and an HTML page) from "
                            "the tracked runs")
    cmp_ = command("compare", "is one method's lead over another real? mean AP difference with a 95 %% bootstrap "
                              "interval and the Wilcoxon signed-rank p-value over queries")
    cmp_.add_argument("a", help="a method or configuration (a table row, e.g. itq or itq#6b88fe)")
    cmp_.add_argument("b", help="the other one")
    cmp_.add_argument("--experiment", required=True, help="dataset/protocol experiment, e.g. cifar10/cifar10")
    cmp_.add_argument("--bits", type=int, required=True, help="the code length to compare at")
    cmp_.add_argument("--tracking-uri", help=URI_HELP)
    cmp_.add_argument("--code-versions", choices=("latest", "all"), default="latest",
                      help="each configuration at its latest code (default), or every code version, labelled")
    plot = command("plot", "plot a metric against code length (and training time against the metric)")
    for q in (rep, plot):
        q.add_argument("--tracking-uri", help=URI_HELP)
        q.add_argument("--experiment", help="dataset/protocol experiment (default: all)")
        q.add_argument("--sweep", help="only the runs of one sweep (its run id or a prefix of it)")
        q.add_argument("--metric", help="metric (default: mAP@K of the protocol)")
        q.add_argument("--code-versions", choices=("latest", "all"), default="latest",
                       help="each configuration at its latest code (default), or every code version, labelled")
    rep.add_argument("--format", choices=("text", "markdown", "latex", "csv", "html", "all"), default=None,
                     help="table format on stdout or --output (default text); with --output-dir: which files "
                          "(default all: report.md, report.tex, report.csv and report.html with the figures)")
    rep.add_argument("--output", help="write the tables to this file instead of stdout")
    rep.add_argument("--output-dir", metavar="DIR",
                     help="write each experiment's report into DIR/<dataset>-<protocol>/: Markdown, LaTeX, CSV, "
                          "and one self-contained HTML page with every table and figure (PNG and PDF beside it)")
    rep.add_argument("--tables", choices=("main", "all"), default=None,
                     help="the main table only, or also tie-aware mAP, P@K, P@r<=2 and the efficiency table "
                          "(default: main on stdout/--output, all with --output-dir)")
    rep.add_argument("--spread", choices=("seeds", "splits", "both"), default=None,
                     help="what ± shows: std over method seeds, over split seeds, or both (default: seeds for one "
                          "split seed, both for several)")
    rep.add_argument("--bits", type=int, help="code length of the efficiency table, the PR and precision@N curves "
                                              "and the retrieval examples (default: the longest every method ran)")
    rep.add_argument("--data-root", help="where the dataset's images are, for the retrieval examples (default: "
                                         "standard locations)")
    plot.add_argument("--output", default="results/plots/map_vs_bits.png",
                      help="file of the main plot; its suffix picks the format (.png, .pdf, .svg ...)")
    plot.add_argument("--time-plot", help="also write training time against the metric to this file")
    plot.add_argument("--output-dir", metavar="DIR",
                      help="write every figure of each experiment into DIR/<dataset>-<protocol>/ as PNG and PDF: "
                           "metric vs code length, PR curves, precision@N, time vs metric, retrieval examples")
    plot.add_argument("--bits", type=int, help="code length of the curves and retrieval examples (default: the "
                                               "longest every method ran)")
    plot.add_argument("--spread", choices=("seeds", "splits", "both"), default=None,
                      help="what the error bars show (default: seeds for one split seed, both for several)")
    plot.add_argument("--data-root", help="where the dataset's images are, for the retrieval examples")
    return p


def _set_verbosity(level: int) -> None:
    """-1 quiet (no progress lines, no progress bars), 0 default (a line per run), 1 verbose (and each
    method's per-epoch lines). Third-party chatter (MLflow's INFO lines) is silenced through its own
    documented setting unless the user set it."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    if level < 0:
        os.environ["TQDM_DISABLE"] = "1"
    if level > 0:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger("hashbench")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


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
    frame = result.frame()
    if frame.empty:
        return frame
    return frame[frame["status"].isin(["FINISHED", "REUSED"])].assign(experiment=result.experiment)


def _cmd_run(args) -> int:
    from bench.metrics import label
    from bench.runner import run_sweep
    from bench.sweep import (build_spec, parse_data_options, parse_int_list, parse_overrides, parse_side_options,
                             read_sweep_file)
    from bench.threads import parse_threads
    from bench.tracking import STALE_AFTER
    from bench.table import render

    file = read_sweep_file(args.config) if args.config else {}
    spec = build_spec(file, {
        "methods": args.methods, "dataset": args.dataset,
        "bits": None if args.bits is None else parse_int_list(args.bits, "--bits"),
        "seeds": None if args.seeds is None else parse_int_list(args.seeds, "--seeds"),
        "split_seeds": None if args.split_seeds is None else parse_int_list(args.split_seeds, "--split-seeds"),
        "protocol": args.protocol, "features": args.features, "data_root": args.data_root,
        "allow_pickle": args.allow_pickle, "data_options": parse_data_options(args.data_option) or None,
        "feature_options": parse_data_options(args.feature_option, "--feature-option") or None,
        "side_options": parse_side_options(args.side_option) or None, "params": parse_overrides(args.param) or None,
        "force": args.force, "metric": args.metric, "allow_query_overlap": args.allow_query_overlap,
        "save_models": args.save_models, "validation": args.validation,
    })
    tracking_uri = args.tracking_uri or file.get("tracking_uri")
    stale_after = args.stale_after if args.stale_after is not None else file.get("stale_after", STALE_AFTER)
    table_format = args.format or file.get("format", "text")
    if table_format not in ("text", "markdown", "latex"):
        raise UsageError(f"format in the sweep file must be text, markdown or latex, got {table_format!r}")
    if isinstance(stale_after, bool) or not isinstance(stale_after, (int, float)):
        raise UsageError(f"stale_after in the sweep file must be a number of seconds, got {stale_after!r}")
    threads = parse_threads(args.threads) if args.threads is not None else file.get("threads")
    executor = args.executor or file.get("executor", "local")
    if executor not in ("local", "ray"):
        raise UsageError(f"executor in the sweep file must be local or ray, got {executor!r}")
    ray_address = args.ray_address or file.get("ray_address")
    if ray_address is not None and not isinstance(ray_address, str):
        raise UsageError(f"ray_address in the sweep file must be HOST:PORT, got {ray_address!r}")
    quiet = args.verbosity < 0
    result = run_sweep(spec, tracking_uri=tracking_uri, stale_after=stale_after, threads=threads,
                       progress=(lambda message: None) if quiet else None, executor=executor,
                       ray_address=ray_address)
    frame = _results_frame(result)
    metric = result.table_metric
    if not frame.empty and metric in frame.columns:
        print()
        order = list(dict.fromkeys(r.label or r.method for r in result.results))
        over = "method and split seeds" if len(spec.split_seeds or ()) > 1 else "seeds"
        print(render(frame, metric, table_format, method_order=order,
                     title=f"{label(metric)} on {result.experiment} (mean ± std over {over})"))
        if metric != "fit_seconds":
            print()
            print(render(frame, "fit_seconds", table_format, method_order=order,
                         title="training time (s)"))
    if not quiet:
        print(f"\nrecorded in {result.tracking_uri}, experiment {result.experiment!r}, sweep {result.parent_run_id}",
              file=sys.stderr)
    if result.elsewhere:
        print(f"\n{len(result.elsewhere)} of {len(result.results)} runs are running elsewhere (claimed by "
              "another sweep; re-run this command later to reuse their results):", file=sys.stderr)
        for r in result.elsewhere:
            print(f"  {r.label or r.method} {r.n_bits} bits seed {r.seed}: run {r.run_id}", file=sys.stderr)
    status = 0
    if result.failed:
        print(f"\n{len(result.failed)} of {len(result.results)} runs FAILED:", file=sys.stderr)
        for r in result.failed:
            blame = " [harness error: please report]" if r.failed_in == "harness" else ""
            print(f"  {r.label or r.method} {r.n_bits} bits seed {r.seed}: {r.error}{blame}", file=sys.stderr)
        status = 1
    if result.spooled:
        print(f"\n{result.spooled} result(s) could not be written to {result.tracking_uri} and are kept in "
              f"{result.spool_dir}; upload them with: python -m bench sync --tracking-uri {result.tracking_uri}",
              file=sys.stderr)
        status = 1
    return status


def _cmd_search(args) -> int:
    from bench.search import format_answer, load_array, parse_sides, search_run
    from bench.tracking import Tracker

    sides = {name: load_array(path, f"--side {name}") for name, path in parse_sides(args.side).items()}
    queries = load_array(args.query, "--query")
    answer = search_run(Tracker(args.tracking_uri).open(create=False), args.run, queries, sides, args.k)
    print(format_answer(answer))
    return 0


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
    """The runs a report or plot reads, and the tracker, checked; the store is opened read-only. A
    ``--metric`` must be recorded, and a ``--bits`` code length run, in every experiment shown."""
    from bench.report import load_runs
    from bench.tracking import Tracker

    tracker = Tracker(args.tracking_uri).open(create=False)
    frame = load_runs(tracker, args.experiment, getattr(args, "sweep", None), code_versions=args.code_versions)
    metric = getattr(args, "metric", None)
    if metric:
        for exp, part in frame.groupby("experiment"):
            if metric not in part.columns or part[metric].isna().all():
                recorded = sorted(c for c in part.columns if part[c].dtype.kind == "f" and c != "start_time"
                                  and part[c].notna().any())
                raise UsageError(f"metric {metric!r} was not recorded in {exp}; recorded metrics: {', '.join(recorded)}")
    bits = getattr(args, "bits", None)
    if bits is not None:
        for exp, part in frame.groupby("experiment"):
            if bits not in set(part["n_bits"]):
                lengths = ", ".join(str(b) for b in sorted(set(part["n_bits"])))
                raise UsageError(f"no runs at {bits} bits in {exp}; recorded code lengths: {lengths}")
    return frame, tracker


def _slug(experiment: str) -> str:
    return experiment.replace("/", "-")


def _cmd_report(args) -> int:
    from pathlib import Path

    import pandas as pd

    from bench import paper
    from bench.report import choose_spread, report_tables, write_report

    fmt = args.format
    if args.output_dir:
        _writable_output(str(Path(args.output_dir) / "x"), "--output-dir")
    else:
        fmt = fmt or "text"
        if fmt in ("html", "all"):
            raise UsageError(f"--format {fmt} writes several files (a page and its figures): give --output-dir DIR")
    _writable_output(args.output, "--output")
    frame, tracker = _load(args)
    experiments = sorted(frame["experiment"].unique())
    if args.output_dir:
        formats = ("markdown", "latex", "csv", "html") if fmt in (None, "all") else (fmt,)
        for exp in experiments:
            try:
                written = write_report(tracker, frame, exp, Path(args.output_dir) / _slug(exp), formats=formats,
                                       metric=args.metric, spread=args.spread, efficiency_bits=args.bits,
                                       curve_bits=args.bits, data_root=args.data_root,
                                       say=lambda m: print(m, file=sys.stderr))
            except OSError as exc:
                raise UsageError(f"cannot write --output-dir {args.output_dir}: {exc.strerror or exc}") from None
            for path in written:
                if path.suffix != ".png":
                    print(f"wrote {path}", file=sys.stderr)
        return 0
    blocks, frames = [], []
    for exp in experiments:
        tables = report_tables(tracker, frame, exp, metric=args.metric, spread=args.spread,
                               tables=args.tables or "main", efficiency_bits=args.bits)
        if fmt == "csv":
            spread = choose_spread(frame[frame["experiment"] == exp], args.spread)
            frames += [paper.to_frame(t, experiment=exp, spread=spread) for t in tables]
        else:
            render = {"text": paper.to_text, "markdown": paper.to_markdown, "latex": paper.to_latex}[fmt]
            blocks += [render(t) for t in tables]
    text = pd.concat(frames).to_csv(index=False) if fmt == "csv" else "\n\n".join(blocks) + "\n"
    if args.output:
        _write(args.output, text, "--output")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def _cmd_compare(args) -> int:
    from bench.report import compare, resolve_row
    from bench.significance import CONFIDENCE, combine

    args.metric = None
    frame, tracker = _load(args)
    a, b = resolve_row(frame, args.a), resolve_row(frame, args.b)
    results = compare(tracker, frame, a, b, args.bits)
    topk = int(frame["topk"].iloc[0])
    level = f"{CONFIDENCE:.0%}"
    at = frame[frame["n_bits"] == args.bits]
    print(f"{a} vs {b} on {args.experiment} at {args.bits} bits: AP@{topk} per query, each averaged over its "
          f"method seeds ({at[at['method'] == a]['seed'].nunique()} for {a}, "
          f"{at[at['method'] == b]['seed'].nunique()} for {b})")
    for r in results:
        print(f"split seed {r.split_seed}: {r.n_queries} queries; mAP {r.mean_a:.4f} vs {r.mean_b:.4f}; "
              f"difference {r.mean_difference:+.4f}, {level} bootstrap CI [{r.ci_low:+.4f}, {r.ci_high:+.4f}]; "
              f"Wilcoxon signed-rank p = {r.p_value:.3g} (two-sided)")
    if len(results) > 1:
        diff, p = combine(results)
        print(f"combined over {len(results)} split seeds: mean difference {diff:+.4f}; Fisher's combined p = {p:.3g}")
    return 0


def _cmd_plot(args) -> int:
    from pathlib import Path

    from bench.plot import figure_path, plot_metric_vs_bits, plot_time_vs_metric
    from bench.report import choose_spread, describe_experiment, experiment_figures, experiment_metric

    for flag, path in (("--output", None if args.output_dir else args.output), ("--time-plot", args.time_plot)):
        if path:
            _writable_output(str(figure_path(path)), flag)
    if args.output_dir:
        _writable_output(str(Path(args.output_dir) / "x"), "--output-dir")
    frame, tracker = _load(args)
    try:
        if args.output_dir:
            for exp in sorted(frame["experiment"].unique()):
                experiment_figures(tracker, frame, exp, Path(args.output_dir) / _slug(exp), metric=args.metric,
                                   spread=args.spread, curve_bits=args.bits, data_root=args.data_root,
                                   say=lambda m: print(m, file=sys.stderr))
            return 0
        experiments = sorted(frame["experiment"].unique())
        metric = args.metric or experiment_metric(frame, experiments[0])
        spread = choose_spread(frame, args.spread)
        title = describe_experiment(frame, spread)["short"] if len(experiments) == 1 else ""
        print(f"wrote {plot_metric_vs_bits(frame, metric, args.output, spread=spread, title=title)}", file=sys.stderr)
        if args.time_plot:
            print(f"wrote {plot_time_vs_metric(frame, metric, args.time_plot, title=title)}", file=sys.stderr)
    except OSError as exc:
        raise UsageError(f"cannot write the plot: {exc.strerror or exc} ({exc.filename})") from None
    return 0


def _cmd_reference(args) -> int:
    from bench import regression

    names = [s.name for s in regression.SWEEPS]
    for name in args.sweep or ():
        if name not in names:
            raise UsageError(f"unknown reference sweep {name!r}; known: {', '.join(names)}")
    argv = (["--update"] if args.update else []) + [a for name in args.sweep or () for a in ("--sweep", name)]
    argv += ["--workers", str(args.workers)] if args.workers is not None else []  # regression.main checks it
    return regression.main(argv, prog=f"{args.prog} reference")


def _stderr(args) -> Callable[[str], None]:
    """Progress lines on stderr, none with --quiet."""
    if args.verbosity < 0:
        return lambda message: None
    return lambda message: print(message, file=sys.stderr, flush=True)


def _cmd_tune(args) -> int:
    from bench.sweep import parse_overrides
    from bench.threads import parse_threads
    from bench.tune import TuneSpec, tune_methods, write_sweep_file

    _writable_output(args.output, "--output")  # before any trial runs, not after the whole tune
    spec = TuneSpec(methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()), dataset=args.dataset,
                    bits=args.bits, trials=args.trials,
                    time_budget_s=None if args.time_budget is None else 60.0 * args.time_budget,
                    seed=args.seed, protocol=args.protocol, features=args.features, data_root=args.data_root,
                    fixed=parse_overrides(args.param) or {})
    tunings = tune_methods(spec, tracking_uri=args.tracking_uri, threads=parse_threads(args.threads),
                           ray_address=args.ray_address, say=_stderr(args))
    from bench.tracking import absolute_tracking_uri

    write_sweep_file(spec, tunings, args.output,
                     tracking_uri=absolute_tracking_uri(args.tracking_uri) if args.tracking_uri else None)
    print(f"validation split of {spec.dataset}, {spec.bits} bits, seed {spec.seed}: defaults vs chosen")
    for t in tunings:
        best = t.best
        print(f"{t.method:13s} {t.metric} {t.default.score:.4f} -> {best.score:.4f}  "
              f"{'(defaults kept)' if best is t.default else best.params}")
    _stderr(args)(f"wrote {args.output}: {args.prog} run --config {args.output} scores it on the protocol")
    return 0


COMMANDS = {"run": _cmd_run, "list": _cmd_list, "report": _cmd_report, "plot": _cmd_plot, "sync": _cmd_sync,
            "compare": _cmd_compare, "search": _cmd_search, "reference": _cmd_reference,
            "tune": _cmd_tune}


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    try:
        args = _parser(prog or _prog()).parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or an argument error, already printed on one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    args.prog = prog or _prog()
    args.verbosity = getattr(args, "verbosity", 0)
    _set_verbosity(args.verbosity)
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are recorded; re-run the same command to continue", file=sys.stderr)
        return 130
