"""Sweeps from a YAML file: the same keys as the flags, per-method grids, flags override the file, and the
file each sweep logs replays it exactly."""
from __future__ import annotations

import pytest
from mlflow import MlflowClient

from bench.cli import main
from bench.sweep import build_spec, read_sweep_file

SWEEP = """
methods: [itq, lsh]
dataset: digits
features: pixels
bits: [8, 16]
seeds: [0, 1]
params:
  lsh: {}
grid:
  itq: {n_iter: [0, 20]}
"""


def _runs(uri):
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, "tags.`hashbench.kind` = 'run'")


def test_a_sweep_from_a_file_expands_grids_and_its_logged_file_replays_it(tmp_path, tracking_uri, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    assert main(["run", "--config", str(path), "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    assert "itq[n_iter=0]" in out and "itq[n_iter=20]" in out and "lsh" in out
    first = _runs(tracking_uri)
    assert len(first) == 3 * 2 * 2  # (itq x 2 grid points + lsh) x 2 bits x 2 seeds
    assert sorted({r.data.params["hp.n_iter"] for r in first if r.data.params["method"] == "itq"}) == ["0", "20"]
    client = MlflowClient(tracking_uri)
    sweep = client.search_runs([first[0].info.experiment_id], "tags.`hashbench.kind` = 'sweep'")[0]
    logged = client.download_artifacts(sweep.info.run_id, "sweep.yaml", str(tmp_path))
    assert main(["run", "--config", logged, "--tracking-uri", tracking_uri]) == 0
    assert capsys.readouterr().err.count("reused") == 12
    again = _runs(tracking_uri)
    assert {r.data.tags["hashbench.run_key"] for r in again} == {r.data.tags["hashbench.run_key"] for r in first}
    assert len(again) == 12


def test_flags_override_the_file_entry_by_entry(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("methods: itq,lsh\nbits: 8\nparams: {itq: {n_iter: 5}}\nfeature_options: {input_size: 64}\n")
    spec = build_spec(read_sweep_file(str(path)), {"bits": (32,), "params": {"lsh": {}}, "dataset": "digits"})
    assert spec.methods == ("itq", "lsh") and spec.bits == (32,) and spec.dataset == "digits"
    assert spec.overrides == {"itq": {"n_iter": 5}, "lsh": {}} and spec.feature_options == {"input_size": 64}
    assert spec.seeds == (0,)  # defaults where neither says


@pytest.mark.parametrize("text, expected", [
    ("methods: [itq]\nbitz: [8]\n", "unknown key(s) bitz"),
    ("- itq\n- lsh\n", "must hold a mapping"),
    ("methods: [itq]\nbits: [a]\n", "bits must be integers"),
    ("methods: [itq]\ngrid: {itq: {n_iter: 5}}\n", "grid itq.n_iter must be a non-empty list"),
    ("methods: [itq]\ngrid: {lsh: {seed: [1]}}\n", "the grid names method(s) ['lsh']"),
    ("methods: [itq]\nparams: {itq: {n_iter: 5}}\ngrid: {itq: {n_iter: [1, 2]}}\n", "both as a parameter and"),
    ("methods: [itq]\nformat: html\n", "format in the sweep file"),
    ("methods: [itq\n", "not valid YAML"),
])
def test_bad_sweep_files_are_one_line_and_exit_2(tmp_path, tracking_uri, capsys, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    status = main(["run", "--config", str(path), "--dataset", "digits", "--features", "pixels",
                   "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err
    assert status == 2 and expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_missing_sweep_file_is_one_line(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read the sweep file" in capsys.readouterr().err


def test_the_files_run_keys_reach_the_sweep(tmp_path, tracking_uri, capsys):
    """tracking_uri, stale_after and threads given in the file are used (flags still win)."""
    import torch

    before = torch.get_num_threads()
    path = tmp_path / "sweep.yaml"
    path.write_text(f"methods: [lsh]\ndataset: digits\nfeatures: pixels\nbits: [8]\n"
                    f"tracking_uri: {tracking_uri}\nstale_after: 60\nthreads: 1\n")
    try:
        assert main(["run", "--config", str(path)]) == 0
        runs = _runs(tracking_uri)
        assert len(runs) == 1 and runs[0].data.params["env.threads"] == "1"
        path.write_text(path.read_text().replace("threads: 1", "threads: 0"))
        assert main(["run", "--config", str(path)]) == 2
        assert "--threads must be an integer >= 1, got 0" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
