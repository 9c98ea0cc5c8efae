"""Unit tests of `bench.record`: names, the layout's namespaces and collisions, identity keys, fingerprints."""
from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from bench import record
from bench.record import Layout, RecordError, RunIdentity, clean_name


@pytest.mark.parametrize("name, key", [
    ("recall@2", "recall_2"), ("loss(rec)", "loss_rec_"), ("a b/c:d", "a_b_c_d"), ("hp.lr", "hp.lr"),
    ("é", "_"), ("map_at_1000", "map_at_1000"), ("x-y_z.0", "x-y_z.0"),
])
def test_clean_name_maps_every_character_mlflow_may_refuse(name, key):
    assert clean_name(name) == key


def test_clean_name_keeps_long_names_distinct_within_mlflows_limit():
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert len(clean_name(a)) == record.MAX_KEY_LENGTH == len(clean_name(b))
    assert clean_name(a) != clean_name(b)


def test_layout_namespaces_keep_method_and_harness_values_apart():
    layout = Layout()
    layout.add_params("hp", {"batch_size": 3, "topk": 7, "n_train": 11})
    layout.add_params("features", {"batch_size": 16})
    layout.add_params("data", {"n_train": 2000, "topk": 100})
    layout.add_metric("", "fit_seconds", 1.5)
    layout.add_facts("info", {"fit_seconds": 99.0, "loss_impl": "paper-autograd", "flag": True})
    assert layout.params["hp.batch_size"] == "3" and layout.params["features.batch_size"] == "16"
    assert layout.params["hp.topk"] == "7" and layout.params["data.topk"] == "100"
    assert layout.params["hp.n_train"] == "11" and layout.params["data.n_train"] == "2000"
    assert layout.metrics == {"fit_seconds": 1.5, "info.fit_seconds": 99.0}
    assert layout.params["info.loss_impl"] == "paper-autograd" and layout.params["info.flag"] == "true"


def test_two_names_that_clean_to_one_key_are_an_error_naming_both():
    layout = Layout()
    layout.add_facts("info", {"recall@2": 0.5})
    with pytest.raises(RecordError, match=r"'info:recall@2' and 'info:recall_2' are both recorded as 'info.recall_2'"):
        layout.add_facts("info", {"recall_2": 0.7})
    with pytest.raises(RecordError, match="'info:recall@2' and 'info:recall\\(2'"):
        layout.add_param("info", "recall(2", "a text value clashes with a number of the same key too")


def test_history_keys_share_the_collision_check():
    layout = Layout()
    keys = layout.history_keys({"loss(rec)": [1.0], "loss": [2.0]})
    assert keys == {"loss(rec)": "train.loss_rec_", "loss": "train.loss"}
    with pytest.raises(RecordError, match="train.loss_rec_"):
        layout.history_keys({"loss[rec]": [1.0]})


def test_values_longer_than_mlflows_limit_go_whole_to_an_artifact():
    layout = Layout()
    long = "v" * (record.MAX_PARAM_LENGTH + 1)
    key = layout.add_param("info", "notes", long)
    assert layout.long_values[key] == long
    assert layout.params[key].startswith("sha256:") and len(layout.params[key]) < record.MAX_PARAM_LENGTH
    at_limit = "w" * record.MAX_PARAM_LENGTH
    key = layout.add_param("info", "fits", at_limit)
    assert layout.params[key] == at_limit and key not in layout.long_values


def test_param_text_is_canonical():
    assert record.param_text((1, 2)) == "[1, 2]"
    assert record.param_text(np.int64(3)) == "3"
    assert record.param_text(np.float32(0.5)) == "0.5"
    assert record.param_text(None) == "null"
    assert record.param_text(float("nan")) == '"nan"'
    assert record.param_text("fast") == "fast"


def test_identity_keys_separate_seed_bits_code_and_data():
    base = RunIdentity("itq", {"n_bits": 16, "seed": 0, "n_iter": 50}, data="d1", code="c1")
    seed1 = RunIdentity("itq", {"n_bits": 16, "seed": 1, "n_iter": 50}, data="d1", code="c1")
    bits32 = RunIdentity("itq", {"n_bits": 32, "seed": 0, "n_iter": 50}, data="d1", code="c1")
    code2 = RunIdentity("itq", {"n_bits": 16, "seed": 0, "n_iter": 50}, data="d1", code="c2")
    data2 = RunIdentity("itq", {"n_bits": 16, "seed": 0, "n_iter": 50}, data="d2", code="c1")
    hp = RunIdentity("itq", {"n_bits": 16, "seed": 0, "n_iter": 10}, data="d1", code="c1")
    keys = {i.run_key for i in (base, seed1, bits32, code2, data2, hp)}
    assert len(keys) == 6
    assert base.config_key == seed1.config_key == bits32.config_key
    assert base.setting_key == code2.setting_key != base.config_key
    assert base.config_key != code2.config_key
    assert len({base.setting_key, data2.setting_key, hp.setting_key}) == 3
    # numpy scalars given for a parameter are the same run as Python numbers
    assert RunIdentity("itq", {"n_bits": np.int64(16), "seed": 0, "n_iter": 50}, "d1", "c1").run_key == base.run_key


def test_data_digests_see_every_byte_and_only_the_side_inputs_read():
    rng = np.random.default_rng(0)
    feats = {s: rng.normal(size=(5, 3)).astype(np.float32) for s in ("train", "database", "query")}
    labels = {s: np.arange(5) for s in feats}
    idx = {s: np.arange(5) for s in feats}
    tags = {"tags": {s: np.ones((5, 2), np.uint8) for s in feats}}
    d = record.data_digests(feats, labels, idx, tags)
    changed = {**feats, "query": feats["query"].copy()}
    changed["query"][0, 0] += 1e-6
    assert record.data_digests(changed, labels, idx, tags).base != d.base
    assert record.data_digests(feats, labels, {**idx, "train": idx["train"] + 1}, tags).base != d.base
    no_side = d.fingerprint({})
    with_tags = d.fingerprint({"tags": ["train", "database", "query"]})
    assert no_side != with_tags
    other_tags = record.data_digests(feats, labels, idx, {"tags": {s: np.zeros((5, 2), np.uint8) for s in feats}})
    assert other_tags.fingerprint({}) == no_side  # a method that reads no tags does not see them


def test_code_fingerprint_follows_imports_not_unrelated_files(tmp_path, monkeypatch):
    pkg = tmp_path / "hbplug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("VALUE = 1\n")
    (pkg / "unrelated.py").write_text("OTHER = 1\n")
    (pkg / "method.py").write_text(textwrap.dedent("""
        def f():
            from hbplug import helper  # imported inside a function: still part of the method's code
            return helper.VALUE
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    fp, modules = record.code_fingerprint("hbplug.method")
    assert {"hbplug", "hbplug.method", "hbplug.helper", "bench.evaluation", "hashbench.datasets.features.side"} <= set(modules)
    assert "hbplug.unrelated" not in modules and "hashbench.methods.lagnh" not in modules
    (pkg / "unrelated.py").write_text("OTHER = 2\n")
    assert record.code_fingerprint("hbplug.method")[0] == fp
    (pkg / "helper.py").write_text("VALUE = 1  # a comment edit voids runs: accepted\n")
    assert record.code_fingerprint("hbplug.method")[0] != fp
    assert "hbplug" not in sys.modules  # nothing was imported to find the files


def test_code_fingerprint_of_itq_does_not_import_torch_or_read_lagnh():
    fp, modules = record.code_fingerprint("hashbench.methods.itq")
    assert "hashbench.methods.itq" in modules and "hashbench.methods._linear" in modules and "hashbench.methods.lagnh" not in modules
    fp2, modules2 = record.code_fingerprint("hashbench.methods.lagnh")
    assert "hashbench.methods.lagnh_model" in modules2 and fp2 != fp


def test_code_fingerprint_holds_the_engine_but_not_the_rest_of_the_harness():
    import hashbench.methods  # noqa: F401 - as in a sweep, the method's package is imported

    _, modules = record.code_fingerprint("hashbench.methods.itq")
    harness = sorted(m for m in modules if m.split(".")[0] == "bench")
    assert harness == ["bench", "bench.evaluation"]  # hashbench's API imports bench.runner: not followed
    assert {"hashbench.methods.base", "hashbench.datasets.features.side"} <= set(modules)
