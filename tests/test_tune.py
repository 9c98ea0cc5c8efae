"""bench tune: every trial on the validation split only, the same budget per method, the choice written as
a sweep file that bench run --config reads."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from bench.cli import main
from bench.errors import UsageError
from bench.sweep import build_spec, read_sweep_file
from bench.tune import MethodTuning, Trial, TuneSpec, ray_search_space
from hashbench.datasets import get_protocol, make_split
from hashbench.datasets.protocols import split_digest, validation_split
from hashbench.datasets.registry import load_dataset


def test_the_budget_is_trials_or_minutes_never_both_nor_neither():
    with pytest.raises(UsageError, match="one of the two"):
        TuneSpec(("itq",), "digits", 16)
    with pytest.raises(UsageError, match="one of the two"):
        TuneSpec(("itq",), "digits", 16, trials=2, time_budget_s=60.0)
    with pytest.raises(UsageError, match="--trials"):
        TuneSpec(("itq",), "digits", 16, trials=0)
    with pytest.raises(UsageError, match="--time-budget"):
        TuneSpec(("itq",), "digits", 16, time_budget_s=-60.0)


def test_the_defaults_stay_unless_a_trial_beats_them():
    default = Trial({}, 0.5, "d")
    assert MethodTuning("m", "map", default, [Trial({"a": 1}, 0.5, "t")]).best is default
    better = Trial({"a": 2}, 0.6, "u")
    assert MethodTuning("m", "map", default, [Trial({"a": 1}, 0.4, "t"), better]).best is better


def test_search_spaces_become_ray_domains_of_the_right_kind():
    pytest.importorskip("ray")
    from ray.tune.search.sample import Categorical, Float, Integer

    domains = ray_search_space({"n": {"low": 5, "high": 200, "log": True}, "k": {"low": 1, "high": 3},
                                "lr": {"low": 1e-4, "high": 1e-2, "log": True}, "p": {"low": 0.0, "high": 0.7},
                                "b": {"choices": [100, 200]}})
    assert isinstance(domains["n"], Integer) and isinstance(domains["k"], Integer)
    assert isinstance(domains["lr"], Float) and isinstance(domains["p"], Float)
    assert isinstance(domains["b"], Categorical) and list(domains["b"].categories) == [100, 200]
    rng = np.random.default_rng(0)
    ks = {int(domains["k"].sample(random_state=rng)) for _ in range(200)}
    assert ks == {1, 2, 3}  # both ends of an integer range are drawn
    assert all(1e-4 <= domains["lr"].sample(random_state=rng) <= 1e-2 for _ in range(100))


@pytest.mark.parametrize("argv, expected", [
    (["--methods", "nope", "--bits", "16", "--trials", "1"], "nope"),
    (["--methods", "itq", "--bits", "16", "--trials", "0"], "--trials"),
    (["--methods", "itq", "--bits", "16", "--trials", "1", "--param", "itq.n_iter=-3"], "n_iter"),
    (["--methods", "itq", "--bits", "16", "--trials", "1", "--param", "sgh.lr=0.1"], "not among --methods"),
    (["--methods", "itq,itq", "--bits", "16", "--trials", "1"], "names itq more than once"),
    (["--methods", "itq", "--bits", "16", "--trials", "abc"], "--trials: invalid int value"),
    (["--methods", "itq", "--bits", "16"], "one of the arguments --trials --time-budget is required"),
    (["--methods", "itq", "--bits", "16", "--trials", "1", "--time-budget", "1"], "not allowed with argument"),
])
def test_user_errors_are_one_line_and_status_2(argv, expected, tracking_uri, tmp_path, capsys):
    assert main(["tune", "--dataset", "digits", "--features", "pixels", "--tracking-uri", tracking_uri,
                 "--output", str(tmp_path / "t.yaml"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert not (tmp_path / "t.yaml").exists()


def test_a_tune_scores_only_the_validation_split_and_writes_a_runnable_sweep_file(tracking_uri, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "tuned.yaml"
    # A process of its own, as a user runs it: Ray's local instance must not meet the Ray state that other
    # tests leave in the test process.
    done = subprocess.run([sys.executable, "-m", "bench", "tune", "--methods", "itq,lsh", "--dataset", "digits",
                           "--features", "pixels", "--bits", "16", "--trials", "2", "--tracking-uri", tracking_uri,
                           "--output", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout
    assert "itq" in printed and "lsh" in printed and "map_at_90" in printed

    data = load_dataset("digits")
    protocol = get_protocol("digits")
    parent = make_split(protocol, data)
    validation = validation_split(protocol, parent, data)
    client = MlflowClient(tracking_uri)
    names = {e.name for e in client.search_experiments()}
    assert "digits/digits" not in names  # nothing was scored on the protocol's queries and database
    exp = client.get_experiment_by_name("digits/digits-validation")
    runs = client.search_runs([exp.experiment_id], "tags.`hashbench.kind` = 'run'")
    itq = [r for r in runs if r.data.params["method"] == "itq"]
    lsh = [r for r in runs if r.data.params["method"] == "lsh"]
    assert 2 <= len(itq) <= 3 and len(lsh) == 1  # the defaults and two trials (two equal draws share one run)
    want = split_digest(validation, data)
    for r in runs:
        assert r.data.tags["hashbench.split"] == "validation"
        assert r.data.params["data.split_digest"] == want  # exactly the validation split's rows
        assert int(r.data.params["data.n_query"]) == len(validation.query)
        assert int(r.data.params["data.n_database"]) == len(validation.database)

    spec = build_spec(read_sweep_file(str(out)))
    assert spec.methods == ("itq", "lsh") and spec.dataset == "digits" and spec.bits == (16,)
    assert not spec.validation  # the chosen settings are for the protocol's run
    text = out.read_text()
    assert "map_at_90" in text and yaml.safe_load(text)["features"] == "pixels"
    assert yaml.safe_load(text)["tracking_uri"] == tracking_uri  # the protocol's runs land beside the trials
    chosen = spec.overrides.get("itq", {})
    scores = {r.data.params.get("hp.n_iter"): r.data.metrics["map_at_90"] for r in itq}
    best = max(scores.values())
    assert scores[str(chosen.get("n_iter", 50))] == best  # the written choice is the best validation score


def test_a_fixed_setting_is_shared_by_every_trial_and_not_searched(monkeypatch, tracking_uri, tmp_path):
    """--param sgh.epochs=3 is a reduced schedule: the defaults and every trial train 3 epochs."""
    import bench.tune as tune_mod

    seen = {}
    monkeypatch.setattr(tune_mod, "_start_ray", lambda address, threads: type("R", (), {"shutdown": lambda: None}))
    monkeypatch.setattr(tune_mod, "score_configuration",
                        lambda spec, method, params, uri, threads: Trial(dict(params), 0.5, "run", "map_at_90"))

    def search(spec, method, space, uri, threads):
        seen["space"] = dict(space)
        return [Trial({"lr": 0.01}, 0.6, "run2", "map_at_90")]

    monkeypatch.setattr(tune_mod, "_search", search)
    spec = TuneSpec(methods=("sgh",), dataset="digits", bits=16, trials=2, features="pixels",
                    fixed={"sgh": {"epochs": 3.0}})
    tunings = tune_mod.tune_methods(spec, tracking_uri=tracking_uri, say=lambda m: None)
    assert "epochs" not in seen["space"] and "lr" in seen["space"]
    sweep = tune_mod.validation_sweep(spec, "sgh", {"epochs": 50.0, "lr": 0.01})
    assert sweep.overrides["sgh"] == {"epochs": 3.0, "lr": 0.01}  # the fixed value wins over a sampled one
    out = tmp_path / "new" / "folder" / "t.yaml"  # folders are made
    tune_mod.write_sweep_file(spec, tunings, str(out))
    assert yaml.safe_load(out.read_text())["params"]["sgh"] == {"epochs": 3.0, "lr": 0.01}


def test_trials_that_never_scored_are_left_out_and_a_failed_one_is_an_error():
    """With a time budget Ray returns the trials it had queued or cut short: no error, no score."""
    from types import SimpleNamespace as R

    from bench.tune import scored_trials

    done = R(error=None, metrics={"score": 0.5, "run_id": "a", "metric": "map_at_90"}, config={"lr": 0.1})
    cut = R(error=None, metrics={}, config={"lr": 0.2})
    assert [t.params for t in scored_trials("sgh", [done, cut, R(error=None, metrics=None, config={})])] == [{"lr": 0.1}]
    with pytest.raises(RuntimeError, match="sgh: a trial failed: boom"):
        scored_trials("sgh", [done, R(error="boom", metrics={}, config={})])


@pytest.mark.parametrize("argv", [["tune", "--trials", "abc"], ["nosuch"], ["run", "--executor", "nope"],
                                  ["report", "--code-versions", "bogus"]])
def test_argument_errors_are_one_line_and_status_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "usage:" not in err
