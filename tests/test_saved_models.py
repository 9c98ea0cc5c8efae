"""Every run keeps its model and codes: a saved hasher reloaded in a new process encodes bit-identically
(every method), runs store a pyfunc model and a faiss index with the database ids, those go through the
spool when the store is down, and ``bench search`` answers with the harness's own ranking."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from bench import models
from hashbench.methods import get_method, method_names
from hashbench.methods.testing import make_features, make_side_inputs

REPO = Path(__file__).resolve().parent.parent
DIGITS = ["--dataset", "digits", "--features", "pixels"]


# ------------------------------------------------------------------------- a new process, every method
@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Every registered method fitted on synthetic data (20 bits: padding bits in the last byte), saved
    as a pyfunc model, with its inputs and the codes of the fitted instance."""
    root = tmp_path_factory.mktemp("saved-models")
    X, clusters = make_features(150, 24)
    expected = {}
    for name in method_names():
        cls = get_method(name)
        side = make_side_inputs(tuple(cls.side_inputs), X, clusters)
        hasher = cls(20, seed=1, **cls.conformance_params).fit(X, **side)
        folder = root / name
        folder.mkdir()
        models.save_model(hasher, folder)
        needed = {k: v for k, v in side.items() if k not in cls.fit_only_side_inputs}
        np.savez(folder / "inputs.npz", features=X, **needed)
        expected[name] = hasher.encode(X, **needed)
    return root, expected


@pytest.fixture(scope="module")
def reloaded_codes(saved_models):
    """The codes each saved model gives when loaded by MLflow in a fresh Python process."""
    root, expected = saved_models
    script = textwrap.dedent("""
        import sys, numpy as np
        from pathlib import Path
        import mlflow.pyfunc
        root = Path(sys.argv[1])
        for name in sys.argv[2:]:
            model = mlflow.pyfunc.load_model(str(root / name / "model"))
            with np.load(root / name / "inputs.npz") as npz:
                inputs = {k: npz[k] for k in npz.files}
            given = inputs if len(inputs) > 1 else inputs["features"]
            np.save(root / name / "reloaded.npy", model.predict(given))
    """)
    subprocess.run([sys.executable, "-c", script, str(root), *expected], check=True, cwd=REPO, timeout=600,
                   env={**__import__("os").environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    return {name: np.load(root / name / "reloaded.npy") for name in expected}


@pytest.mark.parametrize("name", method_names())
def test_a_saved_hasher_reloaded_in_a_new_process_gives_bit_identical_codes(name, saved_models, reloaded_codes):
    _, expected = saved_models
    assert reloaded_codes[name].dtype == np.uint8
    assert np.array_equal(reloaded_codes[name], expected[name])


def test_saved_models_hold_no_pickle_and_state_their_requirements(saved_models):
    root, _ = saved_models
    for name in ("itq", "lagnh"):
        model = root / name / "model"
        assert not list(model.rglob("*.pkl")) and (model / "pyfunc_model.py").is_file()
        requirements = (model / "requirements.txt").read_text().split()
        names = {r.split("==")[0] for r in requirements}
        assert {"hashbench", "numpy", "scikit-learn", "mlflow"} <= names
        assert ("torch" in names) == (name == "lagnh")  # torch weights only for LAGNH's network
    assert (root / "lagnh" / "model" / "artifacts" / "hasher" / "modules" / "net_.pt").is_file()


def test_torch_weights_are_a_state_dict_loadable_without_code():
    import torch

    cls = get_method("lagnh")
    X, clusters = make_features(120, 16)
    side = make_side_inputs(("tags",), X, clusters)
    hasher = cls(8, **cls.conformance_params).fit(X, **side)
    from hashbench.methods.persist import save_hasher

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        save_hasher(hasher, folder)
        weights = torch.load(Path(folder) / "modules" / "net_.pt", weights_only=True)
    assert isinstance(weights, dict) and set(weights) == set(hasher.net_.state_dict())


# ------------------------------------------------------------------------------------- runs and search
def _runs(uri: str):
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return [r for r in client.search_runs(ids, "tags.`hashbench.kind` = 'run'")]


def _harness_ranking(query_codes: np.ndarray, db_codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The harness's ranking written out independently of bench.models: Hamming distance by unpacked
    bits, ascending, ties by database position."""
    q = np.unpackbits(query_codes, axis=1)
    db = np.unpackbits(db_codes, axis=1)
    dist = (q[:, None, :] != db[None, :, :]).sum(axis=2)
    order = np.stack([np.lexsort((np.arange(len(db)), row))[:k] for row in dist])
    return order, np.take_along_axis(dist, order, axis=1)


def test_search_answers_with_the_harness_ranking_from_the_stored_artifacts(tmp_path, tracking_uri, data_home,
                                                                            capsys):
    from bench.cli import main
    from bench.prepare import prepare
    from bench.runner import train_and_encode

    assert main(["run", "--methods", "itq", *DIGITS, "--bits", "12", "--tracking-uri", tracking_uri, "-q"]) == 0
    (run,) = _runs(tracking_uri)
    assert run.data.metrics["save_seconds"] >= 0
    artifacts = {a.path for a in MlflowClient(tracking_uri).list_artifacts(run.info.run_id)}
    assert {"model", "index"} <= artifacts

    # what the harness computed for this run: the same fit, the same codes
    prep = prepare("digits", features="pixels")
    trained = train_and_encode(get_method("itq"), {"n_bits": 12, "seed": 0, "n_iter": 50}, prep)
    local = MlflowClient(tracking_uri).download_artifacts(run.info.run_id, "index", str(tmp_path))
    db_codes, ids = models.read_index(Path(local) / models.INDEX_FILE)
    assert np.array_equal(db_codes, trained.database_codes) and np.array_equal(ids, prep.split.database)
    info = json.loads((Path(local) / models.INDEX_INFO).read_text())
    assert info["n_bits"] == 12 and info["n_database"] == len(ids)

    queries = prep.features["query"][:7]
    np.save(tmp_path / "q.npy", queries)
    capsys.readouterr()
    assert main(["search", "--run", run.info.run_id, "--query", str(tmp_path / "q.npy"), "--k", "25",
                 "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = np.array([[int(v) for v in line.split()] for line in out[1:]])
    order, dist = _harness_ranking(trained.query_codes[:7], trained.database_codes, 25)
    assert rows.shape == (7 * 25, 4)
    assert np.array_equal(rows[:, 0], np.repeat(np.arange(7), 25))
    assert np.array_equal(rows[:, 1], np.tile(np.arange(1, 26), 7))
    assert np.array_equal(rows[:, 2].reshape(7, 25), prep.split.database[order])
    assert np.array_equal(rows[:, 3].reshape(7, 25), dist)
    # ties do occur at 12 bits, so the order inside them is part of what is checked
    assert any(len(set(r)) < len(r) for r in dist)

    # one row given as a (d,) vector is one query
    np.save(tmp_path / "q1.npy", queries[3])
    assert main(["search", "--run", run.info.run_id, "--query", str(tmp_path / "q1.npy"), "--k", "25",
                 "--tracking-uri", tracking_uri]) == 0
    single = np.array([[int(v) for v in line.split()] for line in capsys.readouterr().out.splitlines()[1:]])
    assert np.array_equal(single[:, 2], prep.split.database[order[3]])


def test_search_errors_are_one_line_with_status_2(tmp_path, tracking_uri, data_home, capsys):
    from bench.cli import main

    assert main(["run", "--methods", "lsh", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri, "-q",
                 "--no-save-models"]) == 0
    (bare,) = _runs(tracking_uri)
    assert "save_seconds" not in bare.data.metrics
    assert not {a.path for a in MlflowClient(tracking_uri).list_artifacts(bare.info.run_id)} & {"model", "index"}
    assert main(["run", "--methods", "itq", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri, "-q"]) == 0
    (kept,) = [r for r in _runs(tracking_uri) if r.info.run_id != bare.info.run_id]
    np.save(tmp_path / "q.npy", np.zeros((2, 64), dtype=np.float32))
    np.save(tmp_path / "wide.npy", np.zeros((2, 65), dtype=np.float32))
    (tmp_path / "bad.npy").write_text("not an array")
    q = str(tmp_path / "q.npy")
    cases = [
        (["--run", bare.info.run_id, "--query", q], "has no stored model"),
        (["--run", "0" * 32, "--query", q], "there is no run"),
        (["--run", kept.info.run_id, "--query", str(tmp_path / "missing.npy")], "does not exist"),
        (["--run", kept.info.run_id, "--query", str(tmp_path / "bad.npy")], "cannot read --query file"),
        (["--run", kept.info.run_id, "--query", str(tmp_path / "wide.npy")], "X has 65 features"),
        (["--run", kept.info.run_id, "--query", q, "--k", "0"], "--k must be a positive integer"),
        (["--run", kept.info.run_id, "--query", q, "--side", "tags"], "--side expects NAME=FILE.npy"),
        (["--run", kept.info.run_id, "--query", q, "--side", f"tags={q}"],
         "itq has no side input 'tags' (it reads none)"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["search", *args, "--tracking-uri", tracking_uri]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_models_and_indexes_go_through_the_spool_and_sync(tmp_path, monkeypatch, tracking_uri, data_home, capsys):
    """The store fails for every write of the sweep: the runs, with their model and index, wait in the
    spool; the sync uploads them and the uploaded model answers as the harness ranked."""
    from bench import spool
    from bench.cli import main
    from bench.tracking import Tracker

    real = Tracker.write

    def store_down(self, run_id, bundle, done=None):
        raise ConnectionError("store down")

    monkeypatch.setattr(Tracker, "write", store_down)
    assert main(["run", "--methods", "itq", *DIGITS, "--bits", "16", "--tracking-uri", tracking_uri, "-q"]) == 1
    (entry,) = [p for p in spool.pending(tracking_uri) if '"kind": "run"' in p.read_text()]
    files = json.loads(entry.read_text())["bundle"]["files"]
    assert set(files) == {"model", "index"}
    kept = spool.spool_dir(tracking_uri) / files["model"]
    assert (kept / "MLmodel").is_file()  # a copy: the sweep's own scratch folder is gone

    entry_id = json.loads(entry.read_text())["id"]
    monkeypatch.setattr(Tracker, "write", real)
    assert main(["sync", "--tracking-uri", tracking_uri]) == 0
    folder = spool.spool_dir(tracking_uri)
    assert not (folder / spool.FILES / entry_id).exists() and (folder / "done" / spool.FILES / entry_id).is_dir()
    (run,) = [r for r in _runs(tracking_uri) if r.info.status == "FINISHED"]
    assert {"model", "index"} <= {a.path for a in MlflowClient(tracking_uri).list_artifacts(run.info.run_id)}
    np.save(tmp_path / "q.npy", np.ones((1, 64), dtype=np.float32))
    capsys.readouterr()
    assert main(["search", "--run", run.info.run_id, "--query", str(tmp_path / "q.npy"), "--k", "3",
                 "--tracking-uri", tracking_uri]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_save_models_in_sweep_files_and_the_api(tmp_path, tracking_uri, data_home):
    import yaml

    import hashbench
    from bench.errors import UsageError
    from bench.runner import sweep_yaml
    from bench.sweep import build_spec, read_sweep_file

    path = tmp_path / "sweep.yaml"
    path.write_text("methods: [lsh]\nsave_models: false\n")
    spec = build_spec(read_sweep_file(str(path)))
    assert spec.save_models is False and yaml.safe_load(sweep_yaml(spec))["save_models"] is False
    assert "save_models" not in yaml.safe_load(sweep_yaml(build_spec({"methods": ["lsh"]})))
    assert build_spec({"methods": ["lsh"], "save_models": False}, {"save_models": True}).save_models is True
    with pytest.raises(UsageError, match="save_models must be true or false"):
        build_spec({"methods": ["lsh"], "save_models": "no"})
    result = hashbench.run_sweep(["lsh"], dataset="digits", features="pixels", bits=[8], save_models=False,
                                 tracking_uri=tracking_uri, quiet=True)
    (row,) = result.results
    assert not {a.path for a in MlflowClient(tracking_uri).list_artifacts(row.run_id)} & {"model", "index"}
