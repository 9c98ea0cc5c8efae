"""End-to-end checks of `python -m bench`: runs, records, reruns, errors, reports and plots."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.report import load_runs
from bench.tracking import Tracker
from hashbench.methods.base import Hasher
from hashbench.methods.registry import _REGISTRY, register_method

REPO = Path(__file__).resolve().parent.parent


def _finished_runs(uri: str, experiment: str = "digits/digits"):
    return load_runs(Tracker(uri), experiment)


def test_run_records_nested_runs_with_metrics(tracking_uri, capsys):
    status = main(["run", "--methods", "itq,sh", "--dataset", "digits", "--features", "pixels", "--bits", "16,32",
                   "--tracking-uri", tracking_uri])
    assert status == 0
    out = capsys.readouterr().out
    assert "mAP@100" in out and "itq" in out and "sh" in out
    runs = _finished_runs(tracking_uri)
    assert sorted(zip(runs["method"], runs["n_bits"])) == [("itq", 16), ("itq", 32), ("sh", 16), ("sh", 32)]
    for key in ("map_at_100", "map_all", "map_tie_aware", "precision_at_100", "precision_r2", "recall_r2",
                "fit_seconds", "encode_seconds", "n_parameters", "peak_rss_mb"):
        assert runs[key].notna().all(), key
    assert (runs["map_at_100"] > 0.3).all()  # ITQ/SH on digits pixels are far above chance (0.1)

    client = Tracker(tracking_uri).client
    run = client.get_run(runs["run_id"][0])
    params = run.data.params
    for key in ("method", "hp.n_bits", "hp.seed", "data.dataset", "data.protocol", "features.name",
                "data.split_digest", "data.protocol_digest", "data.fingerprint", "code.fingerprint",
                "env.source", "env.version.numpy", "env.version.hashbench", "env.version.numba",
                "env.version.llvmlite"):
        assert key in params, key
    assert ("env.git_commit" in params) == (params["env.source"] == "checkout")  # never a commit of a package
    assert params["hp.n_bits"] == str(runs["n_bits"][0]) and params["features.name"] == "pixels"
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"pr_curve.csv", "run_config.json"} <= artifacts


def test_threads_apply_to_the_sweep_and_are_recorded_but_are_not_identity(tracking_uri, capsys):
    import torch

    before = torch.get_num_threads()
    args = ["run", "--methods", "itq", "--dataset", "digits", "--features", "pixels", "--bits", "16",
            "--tracking-uri", tracking_uri]
    try:
        assert main(args + ["--threads", "2"]) == 0
        assert torch.get_num_threads() == 2 and "(2 threads)" in capsys.readouterr().err
        runs = _finished_runs(tracking_uri)
        assert Tracker(tracking_uri).client.get_run(runs["run_id"][0]).data.params["env.threads"] == "2"
        assert main(args + ["--threads", "1"]) == 0  # how many threads computed it is not what was computed
        assert torch.get_num_threads() == 1 and "reused" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_identical_run_is_skipped_unless_forced(tracking_uri, capsys):
    args = ["run", "--methods", "lsh", "--dataset", "digits", "--features", "pixels", "--bits", "16", "--tracking-uri", tracking_uri]
    assert main(args) == 0
    first = _finished_runs(tracking_uri)
    assert main(args) == 0
    assert "reused" in capsys.readouterr().err
    client = Tracker(tracking_uri).client
    exp = client.get_experiment_by_name("digits/digits")
    all_runs = client.search_runs([exp.experiment_id], "tags.`hashbench.kind` = 'run'")
    assert len(all_runs) == 1
    assert main(args + ["--force"]) == 0
    all_runs = client.search_runs([exp.experiment_id], "tags.`hashbench.kind` = 'run'")
    assert len(all_runs) == 2
    assert len(_finished_runs(tracking_uri)) == len(first) == 1  # the report keeps the latest of a key


@pytest.mark.parametrize("args, expected", [
    (["--methods", "nosuch"], "unknown method 'nosuch'; known methods:"),
    (["--methods", "itq", "--bits", "0"], "bits must be in 1..1024"),
    (["--methods", "itq", "--bits", "2000"], "bits must be in 1..1024"),
    (["--methods", "itq", "--bits", "a,b"], "comma-separated integers"),
    (["--methods", "itq", "--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    (["--methods", "itq", "--param", "itq.nosuch=1"], "bad --param for itq"),
    (["--methods", "itq", "--param", "sh.n_iter=1"], "not in --methods"),
    (["--methods", "itq", "--side-option", "tags.k=3"], "which no chosen method uses"),
    (["--methods", "itq", "--side-option", "tags=3"], "--side-option expects INPUT.NAME=VALUE"),
    (["--methods", "itq", "--feature-option", "input_size"], "--feature-option expects NAME=VALUE"),
    (["--methods", "itq", "--threads", "0"], "--threads must be an integer >= 1, got 0"),
    (["--methods", "itq", "--threads", "two"], "--threads must be an integer >= 1, got 'two'"),
])
def test_user_errors_exit_2_with_one_line(tracking_uri, capsys, args, expected):
    status = main(["run", "--dataset", "digits", "--features", "pixels", "--tracking-uri", tracking_uri] + args
                  if "--dataset" not in args else ["run", "--tracking-uri", tracking_uri] + args)
    err = capsys.readouterr().err
    assert status == 2
    assert expected in err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip().splitlines()[-1]]


def test_missing_data_says_where_it_looked(tracking_uri, tmp_path, capsys):
    status = main(["run", "--methods", "itq", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "none"),
                   "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err
    assert status == 2 and str(tmp_path / "none") in err and "Traceback" not in err


def test_nan_features_are_refused_with_a_count(tracking_uri, tmp_path, capsys):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(60, 8)).astype(np.float32)
    feats[3, 2] = np.nan
    feats[7, 0] = np.inf
    path = tmp_path / "feats.npz"
    np.savez(path, train_features=feats[:20], train_labels=np.arange(20) % 2,
             query_features=feats[20:30], query_labels=np.arange(10) % 2,
             database_features=feats[30:], database_labels=np.arange(30) % 2)
    status = main(["run", "--methods", "itq", "--dataset", "features", "--data-root", str(path), "--bits", "4",
                   "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err
    assert status == 2 and "1 NaN and 1 infinite" in err and "Traceback" not in err


class _Broken(Hasher):
    name = "broken-for-test"
    reference = "a method that always fails, to test failure handling"

    def _fit(self, X, **side):
        raise RuntimeError("deliberate failure")


def test_a_failing_method_is_recorded_and_the_sweep_goes_on(tracking_uri, capsys):
    register_method(_Broken)
    try:
        status = main(["run", "--methods", "broken-for-test,lsh", "--dataset", "digits", "--features", "pixels", "--bits", "8",
                       "--tracking-uri", tracking_uri])
    finally:
        _REGISTRY.pop("broken-for-test", None)
    err = capsys.readouterr().err
    assert status == 1
    assert "deliberate failure" in err
    client = Tracker(tracking_uri).client
    exp = client.get_experiment_by_name("digits/digits")
    runs = client.search_runs([exp.experiment_id], "tags.`hashbench.kind` = 'run'")
    status_by_method = {r.data.params["method"]: r.info.status for r in runs}
    assert status_by_method == {"broken-for-test": "FAILED", "lsh": "FINISHED"}
    failed = next(r for r in runs if r.info.status == "FAILED")
    assert "deliberate failure" in failed.data.tags["hashbench.error"]


def test_report_and_plot_from_the_store(tracking_uri, tmp_path, capsys):
    assert main(["run", "--methods", "lsh,pcah", "--dataset", "digits", "--features", "pixels", "--bits", "8,16", "--seeds", "0,1",
                 "--tracking-uri", tracking_uri]) == 0
    capsys.readouterr()
    assert main(["report", "--tracking-uri", tracking_uri, "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert "| method | 8 bits | 16 bits |" in md and "±" in md
    out = tmp_path / "t.tex"
    assert main(["report", "--tracking-uri", tracking_uri, "--format", "latex", "--output", str(out)]) == 0
    assert r"\begin{tabular}" in out.read_text() and r"$\pm$" in out.read_text()
    png = tmp_path / "p.png"
    assert main(["plot", "--tracking-uri", tracking_uri, "--output", str(png), "--time-plot",
                 str(tmp_path / "t.png")]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "t.png").exists()


def test_report_on_empty_store_is_a_clear_error(tracking_uri, capsys):
    assert main(["report", "--tracking-uri", tracking_uri]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_a_plain_db_path_is_a_sqlite_store_and_other_plain_paths_are_refused(tmp_path, monkeypatch, capsys):
    # MLflow takes a plain path for its folder store, which MLflow 3 refuses with a migration notice.
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--methods", "lsh", "--dataset", "digits", "--features", "pixels", "--bits", "8", "-q",
                 "--tracking-uri", "store.db"]) == 0
    assert (tmp_path / "store.db").is_file() and (tmp_path / "mlartifacts").is_dir()
    assert len(_finished_runs("store.db")) == 1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "store.db"))
    capsys.readouterr()
    assert main(["report"]) == 0 and "lsh" in capsys.readouterr().out
    for plain in ("mlruns", str(tmp_path / "folder")):
        assert main(["report", "--tracking-uri", plain]) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [f"error: tracking URI {plain!r} is a plain path: give a sqlite file "
                                            f"ending in .db (e.g. {plain}.db or sqlite:///path/to/mlflow.db) or a "
                                            "tracking server (http://host:5000)"]


def test_report_plot_and_compare_refuse_a_code_length_or_metric_never_recorded(tracking_uri, tmp_path, capsys):
    # `report --bits 999 --tables all` printed an empty efficiency table and exited 0.
    assert main(["run", "--methods", "lsh,itq", "--dataset", "digits", "--features", "pixels", "--bits", "8,16",
                 "-q", "--tracking-uri", tracking_uri]) == 0
    cases = [
        (["report", "--bits", "999", "--tables", "all"], "no runs at 999 bits in digits/digits; recorded code "
                                                         "lengths: 8, 16"),
        (["report", "--bits", "32", "--output-dir", str(tmp_path / "r")], "no runs at 32 bits in digits/digits"),
        (["plot", "--bits", "12", "--output", str(tmp_path / "p.png")], "no runs at 12 bits in digits/digits"),
        (["compare", "lsh", "itq", "--bits", "64", "--experiment", "digits/digits"], "no runs at 64 bits in digits/digits"),
        (["report", "--metric", "nosuch"], "metric 'nosuch' was not recorded in digits/digits; recorded metrics:"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main([*args, "--tracking-uri", tracking_uri]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "p.png").exists()
    assert main(["report", "--bits", "16", "--tables", "all", "--tracking-uri", tracking_uri]) == 0


def test_list_shows_the_shallow_baselines(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("lsh", "pcah", "itq", "sh"):
        assert f"\n{name} " in out


def test_importing_bench_and_choosing_itq_does_not_import_torch_geometric():
    code = ("import sys, bench, bench.cli, bench.runner; from hashbench.methods import get_method; get_method('itq'); "
            "print('torch_geometric' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_module_entry_point_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--methods", "nosuch"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "unknown method" in out.stderr


def test_report_never_averages_different_configurations(tracking_uri, capsys):
    base = ["run", "--methods", "itq", "--dataset", "digits", "--features", "pixels", "--bits", "8",
            "--tracking-uri", tracking_uri]
    assert main(base) == 0
    assert main(base + ["--param", "itq.n_iter=0"]) == 0
    assert main(base + ["--seeds", "1"]) == 0  # same configuration as the first, another seed
    capsys.readouterr()
    frame = _finished_runs(tracking_uri)
    assert len(frame) == 3 and frame["method"].nunique() == 2
    counts = sorted(frame.groupby("method").size())
    assert counts == [1, 2]  # the two seeds of one configuration share a row; the other config has its own
    assert main(["report", "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    assert out.count("itq#") == 2


class _Interrupted(Hasher):
    name = "interrupted-for-test"
    reference = "a method during whose training the user presses Ctrl-C"

    def _fit(self, X, **side):
        raise KeyboardInterrupt


def test_an_interrupted_sweep_keeps_finished_runs_and_marks_the_open_one_killed(tracking_uri, capsys):
    register_method(_Interrupted)
    try:
        status = main(["run", "--methods", "lsh,interrupted-for-test", "--dataset", "digits", "--features", "pixels",
                       "--bits", "8", "--tracking-uri", tracking_uri])
    finally:
        _REGISTRY.pop("interrupted-for-test", None)
    assert status == 130 and "finished runs are recorded" in capsys.readouterr().err
    client = Tracker(tracking_uri).client
    exp = client.get_experiment_by_name("digits/digits")
    runs = client.search_runs([exp.experiment_id])
    by_kind = {(r.data.tags.get("hashbench.kind"), r.data.params.get("method")): r.info.status for r in runs}
    assert by_kind == {("run", "lsh"): "FINISHED", ("run", "interrupted-for-test"): "KILLED",
                       ("sweep", None): "KILLED"}


def test_version_quiet_verbose_and_the_console_script(tmp_path):
    env = {**os.environ, "HASHBENCH_DATA": str(tmp_path / "cache")}
    version = subprocess.run([sys.executable, "-m", "bench", "--version"], cwd=REPO, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("hashbench ")
    uri = f"sqlite:///{tmp_path / 'q.db'}"
    args = ["run", "--methods", "lsh", "--dataset", "digits", "--features", "pixels", "--bits", "8", "--tracking-uri"]
    quiet = subprocess.run([sys.executable, "-m", "bench", "-q", *args, uri], cwd=REPO, capture_output=True,
                           text=True, env=env)
    assert quiet.returncode == 0 and quiet.stderr == "" and "lsh" in quiet.stdout  # the table, nothing else
    loud = subprocess.run([sys.executable, "-m", "bench", "run", "-v", "--methods", "sgh", "--param", "sgh.epochs=2",
                           *args[3:], f"sqlite:///{tmp_path / 'v.db'}"], cwd=REPO, capture_output=True, text=True,
                          env=env)
    assert loud.returncode == 0 and "sgh epoch 1:" in loud.stderr and "sgh epoch 2:" in loud.stderr
    assert "INFO mlflow" not in loud.stderr  # MLflow's own chatter is off
    default = subprocess.run([sys.executable, "-m", "bench", *args[:-1], "--bits", "16", "--tracking-uri", uri],
                             cwd=REPO, capture_output=True, text=True, env=env)
    assert "[1/1] lsh 16 bits" in default.stderr and "sgh epoch" not in default.stderr
    script = Path(sys.executable).parent / "hashbench"
    if script.exists():  # the console script of an installed hashbench calls itself by its name
        helped = subprocess.run([str(script), "--help"], capture_output=True, text=True)
        assert helped.stdout.startswith("usage: hashbench")


def test_help_has_examples_and_no_markup():
    from bench.cli import _parser

    parser = _parser("python -m bench")
    texts = [parser.format_help()] + [a.format_help() for a in parser._subparsers._group_actions[0].choices.values()]
    for text in texts:
        assert "``" not in text and "`" not in text
    assert all("examples:" in t for t in texts[1:])
    listing = parser._subparsers._group_actions[0].choices["list"].format_help()
    assert "what to list" in listing
    assert "table format" in parser._subparsers._group_actions[0].choices["run"].format_help()
