"""The validation split: carved from a protocol's training split only, seeded, K scaled to its database; a
validation sweep never featurises nor evaluates the protocol's queries or evaluation database."""
from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

import bench.prepare
from bench import evaluation
from bench.cli import main
from bench.sweep import SweepSpec, build_spec, sweep_file_of
from hashbench.datasets import DataError, Dataset, Protocol, get_protocol, make_split
from hashbench.datasets.protocols import ValidationRule, validation_split, validation_topk
from hashbench.datasets.registry import load_dataset


def _clustered(n: int = 1200, n_classes: int = 4, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n // n_classes)
    feats = (rng.standard_normal((n, 8)) + labels[:, None]).astype(np.float32)
    return Dataset(name="toy", labels=labels.astype(np.int64), features=feats, source="test")


PROTO = Protocol("toy", "toy", topk=100, n_query=200, n_train=400)


def test_validation_parts_come_from_the_training_split_only_and_cover_it():
    data = _clustered()
    split = make_split(PROTO, data)
    val = validation_split(PROTO, split, data)
    assert set(val.query) | set(val.database) == set(split.train)
    assert not set(val.query) & set(val.database)
    assert np.array_equal(np.sort(val.database), val.train)
    assert len(val.query) == 40  # 10 % of 400
    assert not set(val.query) & set(split.query) and not set(val.database) & set(split.query)
    np.testing.assert_array_equal(np.bincount(data.labels[val.query]), [10, 10, 10, 10])  # stratified
    assert not np.array_equal(val.database, np.sort(val.database))  # stored in a seeded random order
    assert all(v == 0 for v in val.overlap.values())


def test_validation_split_is_seeded_by_the_protocol_and_the_rule():
    data = _clustered()
    split = make_split(PROTO, data)
    a, b = validation_split(PROTO, split, data), validation_split(PROTO, split, data)
    assert np.array_equal(a.query, b.query) and np.array_equal(a.database, b.database)
    c = validation_split(PROTO, split, data, ValidationRule(seed=1))
    assert not np.array_equal(a.query, c.query)
    d = validation_split(PROTO, split, data, ValidationRule(fraction=0.25))
    assert len(d.query) == 100


def test_validation_queries_are_not_stratified_when_the_count_does_not_divide():
    data = _clustered()
    split = make_split(PROTO, data)
    val = validation_split(PROTO, split, data, ValidationRule(fraction=0.0975))  # 39 of 400
    assert len(val.query) == 39 and set(val.query) <= set(split.train)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.001])
def test_a_split_without_queries_or_database_is_refused(fraction):
    data = _clustered()
    split = make_split(PROTO, data)
    with pytest.raises(DataError):
        validation_split(PROTO, split, data, ValidationRule(fraction=fraction))


def test_k_cuts_the_same_share_of_the_validation_database_as_the_protocols_k():
    cifar = get_protocol("cifar10")
    n = {"query": 1000, "database": 59000, "train": 5000}
    split = type("S", (), {"database": np.zeros(n["database"])})()
    val = type("S", (), {"database": np.zeros(n["train"] - 500)})()
    assert validation_topk(cifar, split, val) == 76  # round(1000 * 4500 / 59000)
    tiny = type("S", (), {"database": np.zeros(3)})()
    assert validation_topk(cifar, split, tiny) == 1


def test_a_validation_prepare_never_featurises_the_protocols_queries_or_database(monkeypatch):
    seen = []
    real = bench.prepare.compute_features

    def spy(data, extractor=None, indices=None, **kw):
        seen.append(np.asarray(indices))
        return real(data, extractor, indices=indices, **kw)

    monkeypatch.setattr(bench.prepare, "compute_features", spy)
    data = load_dataset("digits")
    parent = make_split(get_protocol("digits"), data)
    prep = bench.prepare.prepare("digits", features="pixels", validation=True)
    train = set(parent.train)
    assert seen and all(set(rows) <= train for rows in seen)
    for part in ("query", "database", "train"):
        assert set(getattr(prep.split, part)) <= train
    assert not set(prep.split.query) & set(parent.query)
    assert prep.protocol.name == "digits-validation"
    assert prep.protocol.topk == validation_topk(get_protocol("digits"), parent, prep.split)
    assert prep.data["validation.of"] == "digits" and prep.data["validation.fraction"] == 0.1
    assert prep.data["topk"] == prep.protocol.topk


def test_a_validation_sweep_evaluates_training_rows_only_and_records_its_own_experiment(monkeypatch, tracking_uri,
                                                                                        capsys):
    data = load_dataset("digits")
    parent = make_split(get_protocol("digits"), data)
    train_labels = np.sort(data.labels[parent.train])
    calls = []
    real = evaluation.evaluate

    def spy(q, db, yq, ydb, **kw):
        calls.append((len(q), len(db), np.sort(np.concatenate([yq, ydb]))))
        return real(q, db, yq, ydb, **kw)

    monkeypatch.setattr(evaluation, "evaluate", spy)
    assert main(["run", "--methods", "itq", "--dataset", "digits", "--features", "pixels", "--bits", "16",
                 "--validation", "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    assert calls and all(nq + ndb == len(parent.train) for nq, ndb, _ in calls)
    assert all(np.array_equal(labels, train_labels) for _, _, labels in calls)  # exactly the training rows
    k = validation_topk(get_protocol("digits"), parent, bench.prepare.prepare("digits", features="pixels",
                                                                              validation=True).split)
    assert f"mAP@{k}" in out
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("digits/digits-validation")
    runs = client.search_runs([exp.experiment_id], "tags.`hashbench.kind` = 'run'")
    assert len(runs) == 1 and runs[0].data.params["data.validation.of"] == "digits"
    assert runs[0].data.tags["hashbench.split"] == "validation"
    assert f"map_at_{k}" in runs[0].data.metrics
    assert client.get_experiment_by_name("digits/digits") is None  # nothing recorded on the protocol's split


def test_the_validation_switch_is_a_sweep_file_key_and_leaves_other_sweeps_digests_alone():
    spec = build_spec({"methods": ["itq"], "validation": True})
    assert spec.validation and sweep_file_of(spec)["validation"] is True
    plain = SweepSpec(methods=("itq",))
    assert "validation" not in sweep_file_of(plain)
    assert plain.digest() == SweepSpec(methods=("itq",), validation=False).digest()
    assert plain.digest() != SweepSpec(methods=("itq",), validation=True).digest()


def test_validation_runs_over_split_seeds_share_one_report_row(tracking_uri, capsys):
    # Each split seed carves its validation split from another parent split; the parent's digest is a
    # fact of the split, so the seeds' runs are one configuration averaged in one row.
    assert main(["run", "--methods", "itq", "--dataset", "digits", "--features", "pixels", "--bits", "16",
                 "--split-seeds", "0,1", "--validation", "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("digits/digits-validation")
    runs = client.search_runs([exp.experiment_id], "tags.`hashbench.kind` = 'run'")
    assert len(runs) == 2
    assert len({r.data.params["data.validation.of_digest"] for r in runs}) == 2
    assert len({r.data.tags["hashbench.row_key"] for r in runs}) == 1
    assert len([line for line in out.splitlines() if line.startswith("itq")]) == 2  # mAP and time tables
