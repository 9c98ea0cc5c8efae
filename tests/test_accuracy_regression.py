"""CI's accuracy guard: the committed reference scores must be reproduced."""
import json
import os

import pytest

from bench import regression
from bench.cli import main as cli_main


@pytest.mark.parametrize("sweep", [s for s in regression.SWEEPS if s.gated], ids=lambda s: s.name)
def test_reference_scores_are_reproduced(sweep):
    if sweep.dataset == "cifar10":
        from hashbench.datasets.cifar10 import ENV_VAR

        if not os.environ.get(ENV_VAR):
            pytest.skip(f"no CIFAR-10 copy here (${ENV_VAR}); CI and development machines have one")
    if (why := regression.machine_mismatch(sweep)):
        pytest.skip(why)
    # fits in one single-threaded process per core: the same values as one process (test below), half the time
    problems = regression.compare(sweep, regression.compute(sweep, workers=regression.default_workers()))
    assert not problems, "\n".join(problems)


def test_reference_values_do_not_depend_on_the_number_of_worker_processes():
    sweep = regression.ReferenceSweep("t", "digits", ("itq", "sgh", "greedyhash"), (16, 32), features="pixels")
    serial = regression.compute(sweep)
    assert regression.compute(sweep, workers=2) == serial
    assert len(serial) == 6 and all(0 < v["map_all"] <= 1 for v in serial.values())


def test_the_guard_notices_a_moved_score():
    sweep = regression.SWEEPS[0]
    want = json.loads(sweep.path.read_text())["scores"]
    key = next(iter(want))
    moved = {k: dict(v) for k, v in want.items()}
    moved[key]["map_tie_aware"] += 2 * regression.TOLERANCE
    assert regression.compare(sweep, moved) and not regression.compare(sweep, want)


def test_a_method_without_a_reference_entry_fails_until_one_is_added():
    sweep = regression.SWEEPS[0]
    want = json.loads(sweep.path.read_text())["scores"]
    got = {**want, "newhash/16/0": {"map_tie_aware": 0.5, "map_all": 0.5}}
    problems = regression.compare(sweep, got)
    assert problems == [f"{sweep.name}: newhash/16/0 has no reference entry: run `python -m bench reference --update`"]


def test_every_builtin_method_is_in_the_cifar10_sweep():
    from hashbench.methods.registry import BUILTIN

    sweep = next(s for s in regression.SWEEPS if s.name == "cifar10-ci")
    assert set(sweep.method_names()) == set(BUILTIN)
    assert sweep.bits == (32, 64) and sweep.protocol == "ci" and sweep.seeds == (0,)
    files = sweep.kind_files()
    assert files  # at least one kind of CPU has a reference
    for f in files:  # every kind's file holds every method, so CI fails on any kind until one is added
        stored = json.loads(f.read_text())
        assert {key.split("/")[0] for key in stored["scores"]} == set(BUILTIN), f.name
        assert not stored["produced_with"]["git_commit"].endswith("+dirty")  # --update names a real commit
        assert f.name == f"cifar10-ci.{regression.machine_kind(stored['machine'])}.json"


def test_update_refuses_a_dirty_tree_and_writes_nothing(monkeypatch, capsys):
    import bench.environment

    before = {s.name: s.path.read_bytes() for s in regression.SWEEPS if s.path.is_file()}
    monkeypatch.setattr(bench.environment, "git_commit", lambda: "0123abcd+dirty")
    computed = []
    monkeypatch.setattr(regression, "compute", lambda sweep, workers=1: computed.append(sweep) or {})
    assert cli_main(["reference", "--update"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "clean tree" in err
    assert computed == []
    assert before == {s.name: s.path.read_bytes() for s in regression.SWEEPS if s.path.is_file()}


def test_unknown_sweep_is_a_usage_error(capsys):
    assert cli_main(["reference", "--sweep", "nope"]) == 2
    assert "unknown reference sweep 'nope'" in capsys.readouterr().err


def test_a_machine_bound_reference_is_compared_on_its_kind_of_cpu_only(monkeypatch, tmp_path):
    here = {"torch_cpu_capability": "AVX512", "isa": ["avx2", "avx512f"]}
    other = {**here, "torch_cpu_capability": "AVX2"}
    monkeypatch.setattr(regression, "REFERENCE_DIR", tmp_path)
    sweep = regression.ReferenceSweep("bound", "cifar10", ("itq",), (32,), machine_bound=True)
    monkeypatch.setattr(regression, "machine", lambda: dict(here))
    assert regression.machine_mismatch(sweep) is None and "is missing" in regression.compare(sweep, {})[0]
    sweep.path.write_text(json.dumps({"machine": here, "scores": {"itq/32/0": {"map_all": 0.5}}}))
    assert sweep.path.name == f"bound.{regression.machine_kind(here)}.json"
    assert regression.machine_mismatch(sweep) is None
    # Another kind of CPU reads its own file: none yet, so it skips, naming the kinds there are.
    monkeypatch.setattr(regression, "machine", lambda: dict(other))
    why = regression.machine_mismatch(sweep)
    assert why and str(here) in why and str(other) in why
    # Its --update adds a file beside the first one, which stays as it was.
    sweep.path.write_text(json.dumps({"machine": other, "scores": {"itq/32/0": {"map_all": 0.4}}}))
    assert regression.machine_mismatch(sweep) is None
    assert regression.compare(sweep, {"itq/32/0": {"map_all": 0.4}}) == []
    assert regression.compare(sweep, {"itq/32/0": {"map_all": 0.5}})  # the other kind's value is not this one's
    assert [f.name for f in sweep.kind_files()] == sorted(f"bound.{regression.machine_kind(m)}.json"
                                                          for m in (here, other))
    free = regression.ReferenceSweep("free", "digits", ("itq",), (32,))
    free.path.write_text(json.dumps({"machine": here, "scores": {}}))
    assert free.path.name == "free.json" and regression.machine_mismatch(free) is None  # any CPU
    assert not next(s for s in regression.SWEEPS if s.name == "digits-shallow").machine_bound


def test_the_machine_fingerprint_names_the_kernels_torch_picks():
    m = regression.machine()
    import torch

    assert m["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(m["isa"]) <= set(regression.ISA_FLAGS)


def test_reference_sweeps_compute_on_one_thread_and_restore_the_setting(monkeypatch):
    import torch

    import bench.prepare
    import bench.runner

    seen = []
    monkeypatch.setattr(bench.prepare, "prepare", lambda *a, **k: seen.append(("prepare", torch.get_num_threads())))
    monkeypatch.setattr(bench.runner, "run_one",
                        lambda cls, params, prep: (seen.append(("fit", torch.get_num_threads())) or
                                                   ({"map_all": 0.5, "map_tie_aware": 0.5}, None, None)))
    before = torch.get_num_threads()
    sweep = regression.ReferenceSweep("t", "digits", ("itq",), (16,), features="pixels")
    assert regression.compute(sweep) == {"itq/16/0": {"map_all": 0.5, "map_tie_aware": 0.5}}
    assert seen == [("prepare", regression.THREADS), ("fit", regression.THREADS)]
    assert torch.get_num_threads() == before


def test_reference_on_a_kind_of_cpu_without_a_file_says_so_and_trains_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(regression, "REFERENCE_DIR", tmp_path)
    bound = regression.ReferenceSweep("bound", "cifar10", ("itq",), (32,), machine_bound=True)
    monkeypatch.setattr(regression, "SWEEPS", [bound])
    monkeypatch.setattr(regression, "machine", lambda: {"torch_cpu_capability": "AVX512", "isa": ["avx512f"]})
    bound.path.write_text(json.dumps({"machine": regression.machine(), "scores": {}}))
    monkeypatch.setattr(regression, "machine", lambda: {"torch_cpu_capability": "AVX2", "isa": ["avx2"]})
    computed = []
    monkeypatch.setattr(regression, "compute", lambda sweep, workers=1: computed.append(sweep) or {})
    assert regression.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bound: not compared:") and "AVX2" in out and "AVX512" in out and computed == []


@pytest.mark.parametrize("entry", ["cli", "module"])
def test_a_worker_count_below_one_is_one_line_and_status_2(monkeypatch, capsys, entry):
    computed = []
    monkeypatch.setattr(regression, "compute", lambda sweep, workers=1: computed.append(sweep) or {})
    status = cli_main(["reference", "--workers", "0"]) if entry == "cli" else regression.main(["--workers", "0"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "--workers must be at least 1, got 0" in err
    assert computed == []


@pytest.mark.parametrize("cores, want", [(1, 1), (2, 2), (64, regression.MAX_DEFAULT_WORKERS)])
def test_the_default_worker_count_is_the_core_count_capped(monkeypatch, cores, want):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert regression.default_workers() == want
