"""The Python API for notebooks: hashbench.run_sweep, load_runs, evaluate, get_method, list_methods, get_dataset."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hashbench

REPO = Path(__file__).resolve().parent.parent


def test_run_sweep_then_load_runs(tracking_uri):
    result = hashbench.run_sweep(["itq", "lsh"], dataset="digits", features="pixels", bits=[8, 16], seeds=[0],
                                 grid={"itq": {"n_iter": [0, 10]}}, tracking_uri=tracking_uri, quiet=True)
    frame = result.frame()
    assert sorted(frame["method"].unique()) == ["itq[n_iter=0]", "itq[n_iter=10]", "lsh"]
    assert (frame["status"] == "FINISHED").all() and frame["map_at_100"].between(0, 1).all()
    runs = hashbench.load_runs("digits/digits", tracking_uri=tracking_uri)
    assert len(runs) == 6 and set(runs["method_name"]) == {"itq", "lsh"}
    again = hashbench.run_sweep("itq,lsh", dataset="digits", features="pixels", bits=8,
                                grid={"itq": {"n_iter": [0, 10]}}, tracking_uri=tracking_uri, quiet=True)
    assert set(again.frame()["status"]) == {"REUSED"}


def test_evaluate_get_method_and_get_dataset():
    data = hashbench.get_dataset("digits")
    X = data.images.reshape(len(data.labels), -1).astype(np.float32)
    itq = hashbench.get_method("itq")(16, seed=0).fit(X[100:])
    scores = hashbench.evaluate(itq.encode(X[:100]), itq.encode(X[100:]), data.labels[:100], data.labels[100:],
                                topk=50)
    assert set(scores) >= {"map_at_50", "map_all", "map_tie_aware"} and 0.3 < scores["map_at_50"] <= 1
    assert "itq" in hashbench.list_methods() and "lagnh" in hashbench.list_methods()


def test_the_api_reports_user_errors_as_the_cli_does(tracking_uri):
    from bench.errors import UsageError
    from hashbench.methods import InputError

    with pytest.raises(InputError, match="n_iter"):
        hashbench.run_sweep(["itq"], dataset="digits", features="pixels", params={"itq": {"n_iter": "abc"}},
                            tracking_uri=tracking_uri)
    with pytest.raises(UsageError, match="no finished runs"):
        hashbench.load_runs(tracking_uri=tracking_uri)


def test_importing_hashbench_is_cheap():
    code = "import sys, hashbench; print(sorted(m for m in ('bench', 'torch', 'mlflow', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_sweep_takes_the_validation_split_and_the_executor_as_the_cli_does(tracking_uri):
    from bench.errors import UsageError

    result = hashbench.run_sweep(["itq"], dataset="digits", features="pixels", bits=8, validation=True,
                                 tracking_uri=tracking_uri, quiet=True)
    frame = result.frame()
    assert list(frame["status"]) == ["FINISHED"]
    runs = hashbench.load_runs(tracking_uri=tracking_uri)
    assert set(runs["experiment"]) == {"digits/digits-validation"}  # never the protocol's own experiment
    with pytest.raises(UsageError, match="unknown executor 'nope'"):
        hashbench.run_sweep(["itq"], dataset="digits", features="pixels", bits=8, executor="nope",
                            tracking_uri=tracking_uri)
    with pytest.raises(UsageError, match="--ray-address is read by --executor ray only"):
        hashbench.run_sweep(["itq"], dataset="digits", features="pixels", bits=8, ray_address="127.0.0.1:1",
                            tracking_uri=tracking_uri)


def test_run_sweep_takes_comma_separated_integers_as_the_cli_does(tracking_uri):
    from bench.errors import UsageError

    result = hashbench.run_sweep("lsh", dataset="digits", features="pixels", bits="8,16", seeds="0,1",
                                 split_seeds="0", tracking_uri=tracking_uri, quiet=True)
    frame = result.frame()
    assert sorted(zip(frame["n_bits"], frame["seed"])) == [(8, 0), (8, 1), (16, 0), (16, 1)]
    with pytest.raises(UsageError, match=r"bits must be comma-separated integers, got '8,x'"):
        hashbench.run_sweep("lsh", dataset="digits", features="pixels", bits="8,x", tracking_uri=tracking_uri)
