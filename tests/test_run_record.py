"""The MLflow record of a sweep, end to end: identity, namespaces, validation before work, blame.

Each numbered case of the issue "The record, part 1" is a test here, asserting the right value.
"""
from __future__ import annotations

import json
import socket
import textwrap

import numpy as np
import pytest
from mlflow import MlflowClient

from bench import tracking
from bench.cli import main
from bench.report import load_runs
from bench.tracking import Tracker
from hashbench.methods.base import Hasher
from hashbench.methods.registry import _REGISTRY, register_method

DIGITS = ["--dataset", "digits", "--features", "pixels"]


def _runs(uri: str, *, kind: str | None = "run"):
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    where = f"tags.`hashbench.kind` = '{kind}'" if kind else ""
    return client.search_runs(ids, where) if ids else []


def _write_features(path, features, labels, split_sizes=(40, 100, 60)):
    n_q, n_db, n_tr = split_sizes
    q, db, tr = np.split(np.arange(n_q + n_db + n_tr), [n_q, n_q + n_db])
    np.savez(path, query_features=features[q], query_labels=labels[q], database_features=features[db],
             database_labels=labels[db], train_features=features[tr], train_labels=labels[tr])


def _clustered(rng, n=200, d=16, classes=4):
    labels = rng.integers(0, classes, n)
    centres = rng.normal(scale=3.0, size=(classes, d))
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


@pytest.fixture
def plugin(request):
    """Register test hashers for one test only."""
    added = []

    def add(cls):
        register_method(cls)
        added.append(cls.name)
        return cls

    yield add
    for name in added:
        _REGISTRY.pop(name, None)


# ----------------------------------------------------------------------------------- 1. stale data reuse
def test_same_shapes_other_content_is_another_run_with_its_own_score(tmp_path, tracking_uri, capsys):
    rng = np.random.default_rng(0)
    feats, labels = _clustered(rng)
    good, noise = tmp_path / "good.npz", tmp_path / "noise.npz"
    _write_features(good, feats, labels)
    _write_features(noise, rng.normal(size=feats.shape).astype(np.float32), labels)
    args = ["run", "--methods", "itq", "--dataset", "features", "--bits", "8", "--metric", "map_at_1000"]
    assert main(args + ["--data-root", str(good), "--tracking-uri", tracking_uri]) == 0
    assert main(args + ["--data-root", str(noise), "--tracking-uri", tracking_uri]) == 0
    assert "reused" not in capsys.readouterr().err
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert main(args + ["--data-root", str(noise), "--tracking-uri", fresh]) == 0
    runs = _runs(tracking_uri)
    assert len(runs) == 2
    by_source = {r.data.params["data.source"].endswith("noise.npz"): r for r in runs}
    alone = _runs(fresh)[0]
    assert by_source[True].data.metrics["map_at_1000"] == pytest.approx(alone.data.metrics["map_at_1000"], abs=0)
    assert by_source[True].data.metrics["map_at_1000"] < by_source[False].data.metrics["map_at_1000"] - 0.2
    assert by_source[True].data.params["data.split_digest"] != by_source[False].data.params["data.split_digest"]
    assert by_source[True].data.params["data.fingerprint"] != by_source[False].data.params["data.fingerprint"]


def test_the_same_file_moved_elsewhere_is_the_same_run(tmp_path, tracking_uri, capsys):
    rng = np.random.default_rng(1)
    feats, labels = _clustered(rng)
    a, b = tmp_path / "a.npz", tmp_path / "sub" / "b.npz"
    b.parent.mkdir()
    _write_features(a, feats, labels)
    _write_features(b, feats, labels)
    args = ["run", "--methods", "itq", "--dataset", "features", "--bits", "8", "--tracking-uri", tracking_uri]
    assert main(args + ["--data-root", str(a)]) == 0
    assert main(args + ["--data-root", str(b)]) == 0
    assert "reused" in capsys.readouterr().err
    assert len(_runs(tracking_uri)) == 1


# ----------------------------------------------------------------------------------- 2. stale code reuse
PLUGIN_SOURCE = '''
import numpy as np
from hashbench.methods.base import Hasher
from hashbench.methods.registry import register_method

SHIFT = {shift}


@register_method
class Drifting(Hasher):
    name = "drifting-for-test"
    reference = "random hyperplanes whose seed the code shifts, to test code fingerprints"
    _parameter_constraints = {{}}

    def _fit(self, X):
        rng = np.random.default_rng(self.seed + SHIFT)
        self.mean_ = X.mean(0)
        self.w_ = rng.normal(size=(X.shape[1], self.n_bits))

    def _project(self, X):
        return (X - self.mean_) @ self.w_
'''


@pytest.fixture
def plugin_file(tmp_path, monkeypatch):
    """``install(module, method, source)``: write a plug-in module and import it (registering its method);
    calling it again with new source edits the file and imports it afresh, as a new process would."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    methods = []

    def install(module: str, method: str, source: str) -> None:
        (tmp_path / f"{module}.py").write_text(source)
        sys.modules.pop(module, None)
        _REGISTRY.pop(method, None)
        importlib.import_module(module)
        methods.append(method)

    yield install
    for method in methods:
        _REGISTRY.pop(method, None)


def test_changed_code_is_a_new_run_and_reports_show_the_latest_code(plugin_file, tracking_uri, capsys):
    plugin_file("drift_plugin", "drifting-for-test", PLUGIN_SOURCE.format(shift=0))
    args = ["run", "--methods", "drifting-for-test", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri]
    assert main(args) == 0
    assert main(args) == 0
    assert "reused" in capsys.readouterr().err  # unchanged code: reused
    plugin_file("drift_plugin", "drifting-for-test", PLUGIN_SOURCE.format(shift=1))
    assert main(args) == 0
    assert "reused" not in capsys.readouterr().err
    runs = sorted(_runs(tracking_uri), key=lambda r: r.info.start_time)
    assert len(runs) == 2 and runs[0].data.params["code.fingerprint"] != runs[1].data.params["code.fingerprint"]
    newest = runs[1].data.metrics["map_at_100"]
    assert newest != runs[0].data.metrics["map_at_100"]
    latest = load_runs(Tracker(tracking_uri), "digits/digits")
    assert len(latest) == 1 and latest["map_at_100"][0] == newest and latest["method"][0] == "drifting-for-test"
    every = load_runs(Tracker(tracking_uri), "digits/digits", code_versions="all")
    assert sorted(every["method"]) == sorted(["drifting-for-test",
                                              f"drifting-for-test@{runs[0].data.params['code.fingerprint'][:6]}"])
    assert main(["report", "--tracking-uri", tracking_uri, "--code-versions", "all"]) == 0
    out = capsys.readouterr().out
    assert f"@{runs[0].data.params['code.fingerprint'][:6]}" in out
    assert f"{newest:.4f}" in out


def test_a_setting_last_run_on_older_code_is_labelled_with_its_code(plugin_file, tracking_uri):
    """Two settings of one method; the code changes and only one setting is run again: the default table
    keeps the other at its (older) code and says so with the code's hash."""
    source = PLUGIN_SOURCE.replace("drifting-for-test", "drift2-for-test").replace(
        "_parameter_constraints = {{}}", "_parameter_constraints = {{'scale': [float]}}").replace(
        "    def _fit(self, X):", "    def __init__(self, n_bits, *, seed=0, scale=1.0):\n"
        "        super().__init__(n_bits, seed=seed)\n        self.scale = scale\n\n    def _fit(self, X):")
    plugin_file("drift_plugin2", "drift2-for-test", source.format(shift=0))
    args = ["run", "--methods", "drift2-for-test", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri]
    assert main(args) == 0
    assert main(args + ["--param", "drift2-for-test.scale=2.0"]) == 0  # a second setting, old code
    plugin_file("drift_plugin2", "drift2-for-test", source.format(shift=1))
    assert main(args) == 0  # only the first setting runs on the new code
    runs = sorted(_runs(tracking_uri), key=lambda r: r.info.start_time)
    old_code, new_code = runs[0].data.params["code.fingerprint"], runs[2].data.params["code.fingerprint"]
    assert old_code != new_code
    frame = load_runs(Tracker(tracking_uri), "digits/digits")
    labels = dict(zip(frame["run_id"], frame["method"]))
    assert len(labels) == 2 and runs[0].info.run_id not in labels
    assert labels[runs[2].info.run_id].startswith("drift2-for-test#") and "@" not in labels[runs[2].info.run_id]
    assert labels[runs[1].info.run_id].endswith(f"@{old_code[:6]}")


# ------------------------------------------------------------------------------------ 3. values overwritten
class _Colliding(Hasher):
    name = "colliding-for-test"
    reference = "hyper-parameters and facts named like the harness's, to test the namespaces"
    _parameter_constraints = {"batch_size": [int], "topk": [int], "n_train": [int], "epochs": [int, None]}

    def __init__(self, n_bits, *, seed=0, batch_size=3, topk=7, n_train=11, epochs=None):
        super().__init__(n_bits, seed=seed)
        self.batch_size, self.topk, self.n_train, self.epochs = batch_size, topk, n_train, epochs

    def _fit(self, X):
        self.w_ = np.random.default_rng(self.seed).normal(size=(X.shape[1], self.n_bits))
        self.mean_ = X.mean(0)
        self.history_ = {"loss(rec)": [3.0, 2.0], "loss": [1.0, 0.5]}

    def _project(self, X):
        return (X - self.mean_) @ self.w_

    def resolved_params(self):
        return {"epochs": 2}

    def run_info(self):
        return {"fit_seconds": 1e9, "map_at_100": 2.0, "recall@2": 0.25, "loss_impl": "paper-autograd",
                "n_bits": 4096}


def test_method_values_named_like_harness_facts_keep_their_own_values(tracking_uri, plugin):
    plugin(_Colliding)
    assert main(["run", "--methods", "colliding-for-test", *DIGITS, "--bits", "8", "--tracking-uri",
                 tracking_uri, "--param", "colliding-for-test.batch_size=5"]) == 0
    (run,) = _runs(tracking_uri)
    p, m = run.data.params, run.data.metrics
    assert p["hp.batch_size"] == "5" and p["hp.topk"] == "7" and p["hp.n_train"] == "11"
    assert p["hp.epochs"] == "null" and p["resolved.epochs"] == "2" and p["hp.n_bits"] == "8"
    assert p["data.topk"] == "100" and p["data.n_train"] == "1697"
    assert m["info.fit_seconds"] == 1e9 and m["fit_seconds"] < 1e3
    assert m["info.map_at_100"] == 2.0 and m["map_at_100"] < 1.0
    assert m["info.n_bits"] == 4096 and m["info.recall_2"] == 0.25
    assert p["info.loss_impl"] == "paper-autograd"
    client = MlflowClient(tracking_uri)
    assert [x.value for x in client.get_metric_history(run.info.run_id, "train.loss_rec_")] == [3.0, 2.0]
    config = json.loads(open(client.download_artifacts(run.info.run_id, "run_config.json")).read())
    assert config["mlflow_names"]["info.recall_2"] == "info:recall@2"
    assert config["mlflow_names"]["train.loss_rec_"] == "train:loss(rec)"


def test_lagnh_batch_size_is_its_own_and_the_extractors_is_the_extractors(tiny_images, tracking_uri, data_home):
    assert main(["run", "--methods", "lagnh", "--dataset", "listfile", "--data-root", str(tiny_images),
                 "--bits", "8", "--tracking-uri", tracking_uri, "--feature-option", "input_size=32",
                 "--side-option", "tags.tag_model=same", *LAGNH_SMALL]) == 0
    (run,) = _runs(tracking_uri)
    p = run.data.params
    assert p["hp.batch_size"] == "3" and p["resolved.batch_size"] == "3"
    assert p["features.batch_size"] != "3" and int(p["features.batch_size"]) >= 1
    assert p["hp.epochs"] == "1" and p["resolved.epochs"] == "1" and p["hp.schedule"] == "fast"
    assert "epochs" not in run.data.metrics and "batch_size" not in run.data.metrics
    client = MlflowClient(tracking_uri)
    found = client.search_runs([run.info.experiment_id], "params.hp.schedule = 'fast'")
    assert [r.info.run_id for r in found] == [run.info.run_id]


# ------------------------------------------------------------------------- 4. names MLflow would refuse
class _Clashing(_Colliding):
    name = "clashing-for-test"

    def run_info(self):
        return {"recall@2": 0.25, "recall_2": 0.5}


def test_names_that_clash_after_cleaning_fail_that_run_only(tracking_uri, plugin, capsys):
    plugin(_Clashing)
    status = main(["run", "--methods", "clashing-for-test,lsh", *DIGITS, "--bits", "8",
                   "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err
    assert status == 1 and "'info:recall@2' and 'info:recall_2'" in err and "Traceback" not in err
    statuses = {r.data.params["method"]: r.info.status for r in _runs(tracking_uri)}
    assert statuses == {"clashing-for-test": "FAILED", "lsh": "FINISHED"}
    failed = next(r for r in _runs(tracking_uri) if r.info.status == "FAILED")
    assert failed.data.tags["hashbench.failed_in"] == "record"
    assert not [r for r in _runs(tracking_uri, kind=None) if r.info.status == "RUNNING"]


# ------------------------------------------------------------------------------- 5. exit 2 before work
@pytest.mark.parametrize("args, expected", [
    (["--methods", "itq", "--metric", "nonsense"], "unknown metric 'nonsense'"),
    (["--methods", "itq", "--param", "itq.n_iter=abc"], "n_iter"),
    (["--methods", "itq", "--param", "itq.n_iter=-3"], "n_iter"),
    (["--methods", "itq", "--seeds", "-1"], "seeds must be integers >= 0"),
    (["--methods", "itq", "--seeds", "0,-2"], "seeds must be integers >= 0"),
    (["--methods", "itq", "--data-root", "/tmp"], "data_root"),
    (["--methods", "itq", "--param", "itq.seed=3"], "set by --bits/--seeds"),
    (["--methods", "itq,itq"], "more than once"),
    (["--methods", "itq", "--seeds", "0,0,1"], "--seeds names 0 more than once"),
    (["--methods", "itq", "--bits", "8,16,8"], "--bits names 8 more than once"),
    (["--methods", "itq", "--feature-option", "input_size=64"], "input_size"),
    (["--methods", "itq", "--features", "effnet-lite0", "--feature-option", "input_size=100000"], "input_size"),
    (["--methods", "itq", "--features", "effnet-lite0", "--feature-option", "batch_size=0"], "batch_size"),
    (["--methods", "lagnh", "--features", "effnet-lite0", "--side-option", "tags.k=0"], "k=0"),
    (["--methods", "lagnh", "--features", "effnet-lite0", "--side-option", "tags.tag_model=nosuch"], "tag_model"),
])
def test_bad_commands_exit_2_before_anything_is_recorded(tracking_uri, capsys, monkeypatch, args, expected):
    import bench.prepare

    def no_data(*a, **k):
        raise AssertionError("data were prepared before the command was checked")

    monkeypatch.setattr(bench.prepare, "load_dataset", no_data)
    status = main(["run", *DIGITS, "--tracking-uri", tracking_uri, *args])
    err = capsys.readouterr().err
    assert status == 2, err
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert _runs(tracking_uri, kind=None) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_server_is_one_line_before_any_feature(monkeypatch, capsys):
    import bench.prepare

    monkeypatch.setattr(bench.prepare, "load_dataset", lambda *a, **k: pytest.fail("data prepared"))
    uri = f"http://127.0.0.1:{_closed_port()}"
    status = main(["run", "--methods", "itq", *DIGITS, "--tracking-uri", uri])
    err = capsys.readouterr().err
    assert status == 2 and "cannot reach the MLflow tracking server" in err and uri in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_http_retries_are_bounded_unless_the_user_sets_them(monkeypatch):
    for key in tracking.HTTP_RETRY_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    Tracker("http://127.0.0.1:1")
    from mlflow.environment_variables import (MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, MLFLOW_HTTP_REQUEST_MAX_RETRIES,
                                              MLFLOW_HTTP_REQUEST_TIMEOUT)

    retries, factor = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()
    # urllib3 sleeps factor * 2**(k-1) before retry k >= 2: the total wait is bounded by about a minute
    assert retries <= 5 and sum(factor * 2 ** (k - 1) for k in range(2, retries + 1)) <= 70
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 7  # the user's setting wins
    assert int(tracking.HTTP_PROBE["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) == 0
    assert int(tracking.HTTP_PROBE["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 5


def test_a_server_that_accepts_but_never_answers_is_refused_before_any_feature(monkeypatch, capsys):
    """(How long it takes is measured by hand, not here: one try of at most 5 s, see HTTP_PROBE.)"""
    import bench.prepare

    monkeypatch.setattr(bench.prepare, "load_dataset", lambda *a, **k: pytest.fail("data prepared"))
    with socket.socket() as silent:  # listens, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        status = main(["run", "--methods", "itq", *DIGITS, "--tracking-uri", uri])
    err = capsys.readouterr().err
    assert status == 2 and "cannot reach the MLflow tracking server" in err and "Traceback" not in err


@pytest.mark.parametrize("make_uri", [
    lambda tmp: f"sqlite:///{tmp / 'afile'}/mlflow.db",            # parent is a regular file
    lambda tmp: f"sqlite:///{tmp / 'afile'}/deeper/mlflow.db",
    lambda tmp: f"sqlite:///{tmp}",                                 # a folder, not a file
    lambda tmp: f"sqlite:///{tmp / 'text.db'}",                     # not a database
])
def test_an_unusable_sqlite_store_is_one_line_before_any_feature(tmp_path, monkeypatch, capsys, make_uri):
    import bench.prepare

    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "text.db").write_text("not a database")
    monkeypatch.setattr(bench.prepare, "load_dataset", lambda *a, **k: pytest.fail("data prepared"))
    status = main(["run", "--methods", "itq", *DIGITS, "--tracking-uri", make_uri(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", [
    ["report", "--output", "{bad}/t.md"],
    ["plot", "--output", "{bad}/p.png"],
    ["plot", "--output", "{ok}/p.png", "--time-plot", "{bad}/t.png"],
])
def test_unwritable_outputs_of_report_and_plot_are_one_line(tmp_path, tracking_uri, capsys, command):
    assert main(["run", "--methods", "lsh", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri]) == 0
    capsys.readouterr()
    (tmp_path / "afile").write_text("x")
    args = [a.format(bad=tmp_path / "afile", ok=tmp_path) for a in command]
    status = main([*args[:1], "--tracking-uri", tracking_uri, *args[1:]])
    err = capsys.readouterr().err
    assert status == 2 and "is not a folder" in err and "Traceback" not in err
    assert not (tmp_path / "p.png").exists()  # refused before the first file was written


# ------------------------------------------------------------------------------------- 6. silent losses
def test_a_failed_peak_memory_reset_is_recorded_as_the_process_peak(tracking_uri, monkeypatch):
    import bench.runner

    monkeypatch.setattr(bench.runner, "reset_peak_rss", lambda: False)
    assert main(["run", "--methods", "lsh", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri]) == 0
    (run,) = _runs(tracking_uri)
    assert "peak_rss_mb" not in run.data.metrics and run.data.metrics["process_peak_rss_mb"] > 0


def test_a_scoring_error_is_the_harness_fault_not_the_methods(tracking_uri, monkeypatch, capsys):
    import bench.runner

    def broken(*a, **k):
        raise ZeroDivisionError("engine bug")

    monkeypatch.setattr(bench.runner.evaluation, "evaluate", broken)
    status = main(["run", "--methods", "lsh,pcah", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err
    assert status == 1 and "harness error" in err and "engine bug" in err
    runs = _runs(tracking_uri)
    assert {r.info.status for r in runs} == {"FAILED"} and len(runs) == 2
    assert {r.data.tags["hashbench.failed_in"] for r in runs} == {"harness"}


def test_non_numeric_facts_of_a_method_reach_the_record():
    from bench.record import Layout
    from hashbench.methods import get_method
    from hashbench.methods.testing import make_features

    X, _ = make_features(120, 16)
    views = np.repeat(X[:, None, :], 4, axis=1)
    deepbit = get_method("deepbit")(8, **get_method("deepbit").conformance_params, device="cpu").fit(X, views=views)
    layout = Layout()
    layout.add_facts("info", deepbit.run_info())
    assert layout.params["info.loss_impl"] == "paper-autograd"


# ---------------------------------------------------------------------------------- 7. overlapping splits
def test_queries_listed_in_the_database_are_refused_with_a_count(tiny_images, tracking_uri, capsys):
    lines = (tiny_images / "database.txt").read_text() + (tiny_images / "test.txt").read_text()
    (tiny_images / "database.txt").write_text(lines)
    args = ["run", "--methods", "itq", "--dataset", "listfile", "--data-root", str(tiny_images), "--features",
            "pixels", "--bits", "4", "--tracking-uri", tracking_uri]
    fresh = tiny_images.parent / "never-created.db"
    assert main(args[:-1] + [f"sqlite:///{fresh}"]) == 2
    err = capsys.readouterr().err
    assert "4 of 4 queries" in err and "--allow-query-overlap" in err and "Traceback" not in err
    assert not fresh.exists()  # refused on its data: no store left behind
    assert main(args + ["--allow-query-overlap"]) == 0
    (run,) = _runs(tracking_uri)
    assert run.data.params["data.overlap.query_in_database"] == "4"
    assert run.data.params["data.allow_query_overlap"] == "true"


def test_duplicate_rows_in_feature_files_are_counted_and_logged(tmp_path, tracking_uri, capsys):
    rng = np.random.default_rng(2)
    feats, labels = _clustered(rng)
    feats[40:45] = feats[:5]  # five database rows repeat five queries, labels too
    labels[40:45] = labels[:5]
    path = tmp_path / "dup.npz"
    _write_features(path, feats, labels)
    with pytest.warns(UserWarning, match="5 of 40 queries"):
        status = main(["run", "--methods", "itq", "--dataset", "features", "--data-root", str(path),
                       "--bits", "8", "--tracking-uri", tracking_uri])
    assert status == 0
    (run,) = _runs(tracking_uri)
    assert run.data.params["data.overlap.query_duplicates_in_database"] == "5"


# --------------------------------------------------------------------- the whole record, method by method
SAME_OBJECT = {"hp": "method", "resolved": "method", "info": "method"}


def _walk(run) -> list[str]:
    """Pairs of keys in one object (the method, the data, the features, a side input, the environment)
    that name the same thing with different values. ``hp`` and ``resolved`` are the given and the used
    value of a parameter: they may differ by design; ``info`` must not repeat either."""
    problems = []
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    entries = [(k, v) for k, v in run.data.params.items()] + [(k, str(v)) for k, v in run.data.metrics.items()]
    for key, value in entries:
        head, _, rest = key.partition(".")
        if not rest:
            obj, thing = "harness", key
        elif head == "side":
            name, _, thing = rest.partition(".")
            obj = f"side.{name}"
        else:
            obj, thing = SAME_OBJECT.get(head, head), rest
        for other_key, other_value in [seen.get((obj, thing), (None, None))]:
            if other_key is None:
                continue
            given_vs_used = {head, other_key.partition(".")[0]} == {"hp", "resolved"}
            if not given_vs_used and other_value != value:
                problems.append(f"{other_key}={other_value} vs {key}={value}")
        seen[(obj, thing)] = (key, value)
    harness = {k for k in run.data.metrics if "." not in k}
    problems += [f"info.{k} shadows the harness's {k}" for k in harness if f"info.{k}" in run.data.metrics]
    return problems


@pytest.mark.slow
def test_no_two_values_of_any_methods_record_describe_one_thing(tracking_uri, data_home):
    from hashbench.methods import method_names, get_method

    names = [n for n in method_names() if not n.endswith("-for-test")]
    small = [f"--param={n}.{k}={json.dumps(v)}" for n in names for k, v in get_method(n).conformance_params.items()]
    status = main(["run", "--methods", ",".join(names), "--dataset", "digits", "--features", "effnet-lite0",
                   "--feature-option", "input_size=32", "--side-option", "tags.tag_model=same",
                   "--bits", "16", "--tracking-uri", tracking_uri, *small])
    assert status == 0
    runs = _runs(tracking_uri)
    assert sorted(r.data.params["method"] for r in runs) == sorted(names)
    for run in runs:
        assert _walk(run) == [], run.data.params["method"]
        assert run.data.params["hp.n_bits"] == "16" and run.data.params["features.name"] == "effnet-lite0"


def test_the_walk_finds_a_fact_repeated_with_another_value():
    class Run:
        class data:
            params = {"hp.epochs": "null", "resolved.epochs": "10", "info.epochs": "12"}
            metrics = {"fit_seconds": 1.0}

    assert _walk(Run) == ["resolved.epochs=10 vs info.epochs=12"]


# ------------------------------------------------------------------------------- runs of the old layout
def test_runs_of_the_old_layout_stay_readable_as_their_own_configuration(tracking_uri, capsys):
    assert main(["run", "--methods", "itq", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri]) == 0
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("digits/digits")
    old = client.create_run(exp.experiment_id, run_name="itq-8b-s0",
                            tags={"hashbench.kind": "run", "hashbench.run_key": "k-old",
                                  "hashbench.config_key": "c-old-config"}).info.run_id
    for key, value in {"method": "itq", "n_bits": "8", "seed": "0", "dataset": "digits", "protocol": "digits",
                       "features": "pixels", "topk": "100", "n_iter": "50"}.items():
        client.log_param(old, key, value)
    client.log_metric(old, "map_at_100", 0.123)
    client.set_terminated(old)
    frame = load_runs(Tracker(tracking_uri), "digits/digits")
    assert len(frame) == 2 and frame["method"].nunique() == 2
    legacy = frame[frame["code"] == "legacy"].iloc[0]
    assert legacy["map_at_100"] == 0.123 and legacy["method"] == "itq#c-old-"
    assert main(["report", "--tracking-uri", tracking_uri]) == 0
    assert "0.1230" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- fixtures
LAGNH_SMALL = ["--param", "lagnh.epochs=1", "--param", "lagnh.hidden=8", "--param", "lagnh.embed_dim=8",
               "--param", "lagnh.batch_size=3", "--param", "lagnh.n_anchors=2", "--param", "lagnh.device=cpu"]


@pytest.fixture
def tiny_images(tmp_path):
    """A list-file dataset of 16 images of 8x8 pixels, 3 labels: 4 queries, 12 database items, 6 training."""
    from PIL import Image

    root = tmp_path / "tiny"
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.eye(3, dtype=np.uint8)[np.arange(16) % 3]
    lines = []
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), "RGB").save(root / f"img/{i}.png")
        lines.append(f"img/{i}.png " + " ".join(map(str, labels[i])))
    (root / "test.txt").write_text("\n".join(lines[:4]) + "\n")
    (root / "database.txt").write_text("\n".join(lines[4:]) + "\n")
    (root / "train.txt").write_text("\n".join(lines[4:10]) + "\n")
    return root


# ------------------------------------------------------------------------ side inputs in identity and record
def test_side_options_reach_the_tags_and_are_recorded(tiny_images, tracking_uri, data_home, capsys):
    """``--side-option tags.k=2`` changes the tags LAGNH gets, and the run's parameters say so."""
    base = ["run", "--methods", "lagnh", "--dataset", "listfile", "--data-root", str(tiny_images), "--bits", "8",
            "--tracking-uri", tracking_uri, "--feature-option", "input_size=32", *LAGNH_SMALL]
    assert main(base + ["--side-option", "tags.k=2", "--side-option", "tags.tag_model=same"]) == 0
    (run,) = _runs(tracking_uri)
    assert run.data.params["side.tags.k"] == "2" and run.info.status == "FINISHED"
    assert run.data.params["side.tags.model"] == "efficientnet-lite0"
    assert run.data.params["side.tags.input_size"] == run.data.params["features.input_size"] == "32"
    capsys.readouterr()
    assert main(base + ["--side-option", "tags.nosuch=1"]) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "Traceback" not in err


def test_a_run_is_reused_whatever_side_inputs_other_methods_needed(tiny_images, tracking_uri, data_home, capsys):
    """ITQ reads no tags: its run beside LAGNH (whose tags were computed) is the same run as ITQ alone."""
    base = ["run", "--dataset", "listfile", "--data-root", str(tiny_images), "--bits", "2",
            "--feature-option", "input_size=32", "--side-option", "tags.tag_model=same", "--tracking-uri", tracking_uri]
    assert main(base + ["--methods", "itq,lagnh", *LAGNH_SMALL]) == 0
    capsys.readouterr()
    assert main([a for a in base if a not in ("--side-option", "tags.tag_model=same")] + ["--methods", "itq"]) == 0
    assert "identical finished run" in capsys.readouterr().err
    itq = [r for r in _runs(tracking_uri) if r.data.params["method"] == "itq"]
    assert len(itq) == 1 and not any(k.startswith("side.") for k in itq[0].data.params)


@pytest.mark.parametrize("text, value", [("False", False), ("true", True), ("TRUE", True), ("None", None),
                                         ("null", None), ("3", 3), ("2.5", 2.5), ("[1, 2]", [1, 2]), ("abc", "abc")])
def test_command_line_values_read_python_and_json_spellings(text, value):
    from bench.sweep import parse_data_options

    assert parse_data_options([f"check_images={text}"]) == {"check_images": value}


def test_where_a_method_runs_is_not_part_of_its_identity(tracking_uri, capsys):
    """``device`` chooses where SGH computes, not what: ``cpu`` reuses the ``auto`` run of a CPU machine,
    and the record still says what was given and what was used."""
    small = ["--param", "sgh.epochs=2"]
    args = ["run", "--methods", "sgh", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri, *small]
    assert main(args) == 0
    assert main(args + ["--param", "sgh.device=cpu"]) == 0
    assert "reused" in capsys.readouterr().err
    (run,) = _runs(tracking_uri)
    assert run.data.params["hp.device"] == "auto" and run.data.params["resolved.device"] in ("cpu", "cuda", "cuda:0")


def test_execution_params_name_real_parameters():
    from hashbench.methods import get_method, method_names

    for name in method_names():
        cls = get_method(name)
        assert set(cls.execution_params) <= set(cls._parameter_constraints), name


def test_plot_outputs_refuse_unknown_formats_and_say_where_they_wrote(tmp_path, tracking_uri, capsys):
    assert main(["run", "--methods", "lsh", *DIGITS, "--bits", "8,16", "--tracking-uri", tracking_uri]) == 0
    capsys.readouterr()
    assert main(["plot", "--tracking-uri", tracking_uri, "--output", str(tmp_path / "x.xyz")]) == 2
    err = capsys.readouterr().err
    assert "cannot write a figure as x.xyz" in err and ".png" in err and "Traceback" not in err
    assert main(["plot", "--tracking-uri", tracking_uri, "--output", str(tmp_path / "noext")]) == 0
    assert f"wrote {tmp_path / 'noext.png'}" in capsys.readouterr().err
    assert (tmp_path / "noext.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", "--tracking-uri", tracking_uri, "--output", str(tmp_path / "newdir") + "/"]) == 2
    assert "is a folder" in capsys.readouterr().err and not (tmp_path / "newdir").exists()


def test_report_of_a_sweep_shows_the_runs_it_reused(tracking_uri, capsys):
    args = ["run", "--methods", "lsh", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri]
    assert main(args) == 0
    assert main(args + ["--bits", "8,16"]) == 0  # reuses lsh 8, trains lsh 16
    err = capsys.readouterr().err
    second = err.strip().splitlines()[-1].rsplit("sweep ", 1)[1]
    frame = load_runs(Tracker(tracking_uri), "digits/digits", sweep=second[:8])
    assert sorted(frame["n_bits"]) == [8, 16]
    first_only = [r for r in _runs(tracking_uri, kind="sweep") if r.info.run_id != second][0].info.run_id
    assert sorted(load_runs(Tracker(tracking_uri), "digits/digits", sweep=first_only)["n_bits"]) == [8]
    assert main(["report", "--tracking-uri", tracking_uri, "--sweep", "nosuchsweep"]) == 2
    assert "no sweep whose id starts with 'nosuchsweep'" in capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("args, expected", [
    (["--methods", "lagnh", "--param", "lagnh.device=cuda"], "lagnh: device='cuda' was asked for but no CUDA GPU"),
    (["--methods", "itq", "--features", "effnet-lite0", "--feature-option", "device=cuda"], "device"),
])
def test_a_device_this_machine_lacks_is_refused_before_any_work(tracking_uri, capsys, monkeypatch, args, expected):
    import bench.prepare

    monkeypatch.setattr(bench.prepare, "load_dataset", lambda *a, **k: pytest.fail("data prepared"))
    status = main(["run", *DIGITS, "--tracking-uri", tracking_uri, *args])
    err = capsys.readouterr().err
    assert status == 2 and expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------- code health
def test_code_health_counts_distinct_codes_and_constant_bits():
    from bench.runner import code_health

    bits = np.array([[1, 0, 1, 0, 1, 0, 1, 0, 1, 1],
                     [1, 0, 1, 0, 1, 0, 1, 0, 0, 1],
                     [1, 0, 1, 0, 1, 0, 1, 0, 1, 1]], dtype=bool)  # 10 bits; bits 0-7 and 9 never change
    codes = np.packbits(bits, axis=1)  # (3, 2): the padding bits of the second byte are not counted
    assert code_health(codes, 10) == {"distinct_codes": 2.0, "constant_bits": 9.0}
    assert code_health(codes[:0], 10) == {"distinct_codes": 0.0, "constant_bits": 0.0}


def test_a_collapsed_method_is_recorded_and_warned_about(tracking_uri, plugin, capsys):
    @plugin
    class OneCode(Hasher):
        """Gives every item the same code, whatever the input."""

        name = "onecode"
        family = "shallow"
        reference = "test"

        def _fit(self, X):
            self.width_ = X.shape[1]

        def _project(self, X):
            return np.ones((X.shape[0], int(self.n_bits)))

    assert main(["run", "--methods", "onecode,itq", *DIGITS, "--bits", "16", "--tracking-uri", tracking_uri]) == 0
    err = capsys.readouterr().err
    assert "onecode 16 bits seed 0: warning: every database item got the same code" in err
    assert "itq 16 bits seed 0: warning" not in err
    metrics = {r.data.tags.get("hashbench.method", r.data.params.get("method")): r.data.metrics
               for r in _runs(tracking_uri)}
    assert metrics["onecode"]["distinct_codes"] == 1 and metrics["onecode"]["constant_bits"] == 16
    assert metrics["itq"]["distinct_codes"] > 100 and metrics["itq"]["constant_bits"] == 0
