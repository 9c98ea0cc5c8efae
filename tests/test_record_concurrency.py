"""The record, part 2: concurrent sweeps, interrupts, a killed sweep and a failing server.

Nothing is lost, duplicated or left RUNNING. Sweeps run as real processes (``python -m bench``) on
sqlite stores and against a real ``mlflow server`` on 127.0.0.1; every server and process a test
starts, it stops.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parent.parent
DIGITS = ["--dataset", "digits", "--features", "pixels"]

SLOW_PLUGIN = '''
import os
import time

import numpy as np

from hashbench.methods.base import Hasher
from hashbench.methods.registry import register_method


@register_method
class Slow(Hasher):
    """Random hyperplanes that take SLOW_SECONDS (default 2) to fit: a sweep is caught mid-run. With
    SLOW_UNTIL set, the fit waits instead until that file exists (at most 300 s): a test releases it."""

    name = "slow-for-test"
    reference = "test method"
    _parameter_constraints = {}

    def _fit(self, X):
        gate = os.environ.get("SLOW_UNTIL")
        if gate:
            end = time.monotonic() + 300
            while not os.path.exists(gate) and time.monotonic() < end:
                time.sleep(0.05)
        else:
            time.sleep(float(os.environ.get("SLOW_SECONDS", "2")))
        self.mean_ = X.mean(0)
        self.w_ = np.random.default_rng(self.seed).normal(size=(X.shape[1], self.n_bits))

    def _project(self, X):
        return (X - self.mean_) @ self.w_
'''


@pytest.fixture
def env(tmp_path):
    """Environment of the sweeps a test starts: a private cache (and spool), the slow plug-in importable."""
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "slowplug.py").write_text(SLOW_PLUGIN)
    out = {**os.environ, "HASHBENCH_DATA": str(tmp_path / "cache"), "PYTHONPATH": f"{plug}{os.pathsep}{REPO}",
           "SLOW_SECONDS": "2", "OMP_NUM_THREADS": "1"}
    return out


def _bench(args: list[str], env: dict, **kw) -> subprocess.Popen:
    code = ("import signal, sys, slowplug; from bench.cli import main; status = main(sys.argv[1:]); "
            "signal.signal(signal.SIGINT, signal.SIG_IGN); sys.exit(status)")  # as bench/__main__.py
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def _all_runs(uri: str, *, deleted: bool = False):
    """Every run of every experiment of the store (with ``deleted``: withdrawn claims too)."""
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    view = ViewType.ALL if deleted else ViewType.ACTIVE_ONLY
    return client.search_runs(ids, "", run_view_type=view) if ids else []


def _configs(runs) -> Counter:
    return Counter((r.data.params["method"], r.data.params["hp.n_bits"], r.data.params["hp.seed"])
                   for r in runs if r.data.tags.get("hashbench.kind") == "run" and r.info.status == "FINISHED")


def _wait_for(predicate, timeout: float, what: str, step: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _running_slow(uri: str) -> bool:
    # never create the store from here: the sweep under test must be the one that sets it up
    if uri.startswith("sqlite:///") and not (Path(uri[len("sqlite:///"):]).stat().st_size
                                             if Path(uri[len("sqlite:///"):]).exists() else 0):
        return False
    try:
        return any(r.info.status == "RUNNING" and r.data.params.get("method") == "slow-for-test"
                   for r in _all_runs(uri))
    except Exception:  # noqa: BLE001 -- the store may not exist yet
        return False


# ------------------------------------------------------------------------------ several sweeps at once
def test_three_sweeps_at_once_on_a_new_store_each_configuration_once(tmp_path, env):
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    args = ["run", "--methods", "lsh,pcah,itq", *DIGITS, "--bits", "8,16,24", "--seeds", "0,1", "--tracking-uri", uri]
    procs = [_bench(args, env) for _ in range(3)]
    outs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    runs = _all_runs(uri)  # the store opens afterwards
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix in (".lock", ".new")] == []
    configs = _configs(runs)
    assert len(configs) == 3 * 3 * 2 and set(configs.values()) == {1}, configs
    assert not [r for r in _all_runs(uri, deleted=True) if r.info.status == "RUNNING"]  # lost claims closed too
    assert sum(r.data.tags.get("hashbench.kind") == "sweep" for r in runs) == 3
    # an identical sweep afterwards reuses everything
    again = _bench(args, env)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0 and err.count("reused") == 18
    assert _configs(_all_runs(uri)) == configs


def test_a_live_claim_is_skipped_and_listed_as_running_elsewhere(tmp_path, env):
    uri = f"sqlite:///{tmp_path / 's.db'}"
    release = tmp_path / "release"  # the first sweep's fit lasts until the second sweep has finished
    first = _bench(["run", "--methods", "slow-for-test", *DIGITS, "--bits", "8", "--tracking-uri", uri],
                   {**env, "SLOW_UNTIL": str(release)})
    try:
        _wait_for(lambda: _running_slow(uri), 60, "the first sweep's claim")
        second = _bench(["run", "--methods", "slow-for-test,lsh", *DIGITS, "--bits", "8", "--tracking-uri", uri], env)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert "running elsewhere" in err and "slow-for-test 8 bits seed 0" in err
    finally:
        release.touch()
        first.communicate(timeout=120)
    assert first.returncode == 0
    assert _configs(_all_runs(uri)) == Counter({("slow-for-test", "8", "0"): 1, ("lsh", "8", "0"): 1})
    third = _bench(["run", "--methods", "slow-for-test", *DIGITS, "--bits", "8", "--tracking-uri", uri], env)
    assert third.communicate(timeout=120)[1].count("reused") == 1 and third.returncode == 0


# ------------------------------------------------------------------------------------- a killed sweep
def test_a_sweep_killed_with_sigkill_is_taken_over_after_the_staleness_limit(tmp_path, env):
    uri = f"sqlite:///{tmp_path / 'k.db'}"
    args = ["run", "--methods", "lsh,slow-for-test", *DIGITS, "--bits", "8,16", "--tracking-uri", uri,
            "--stale-after", "3"]
    victim = _bench(args, env)
    _wait_for(lambda: _running_slow(uri), 60, "the slow run")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    before = _all_runs(uri)
    assert [r.info.status for r in before if r.data.params.get("method") == "slow-for-test"] == ["RUNNING"]
    time.sleep(3.5)  # past the (shortened) staleness limit: the killed sweep's heartbeat is old
    rerun = _bench(args, env)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert err.count("reused") == 2  # lsh 8 and 16 finished before the kill
    runs = _all_runs(uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert _configs(runs) == Counter({("lsh", "8", "0"): 1, ("lsh", "16", "0"): 1,
                                      ("slow-for-test", "8", "0"): 1, ("slow-for-test", "16", "0"): 1})
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert sorted(r.data.tags["hashbench.kind"] for r in killed) == ["run", "sweep"]
    assert all("hashbench.closed_as_stale" in r.data.tags for r in killed)


def test_a_short_staleness_limit_never_closes_a_claim_that_beats_on_its_own_schedule(tracking_uri):
    """A sweep started with --stale-after 5 meets the claim of a sweep beating every 15 s, 10 s after its
    last beat: alive (it has not missed its own beats), so it is not closed and not taken over."""
    from bench.tracking import Tracker, is_stale

    tracker = Tracker(tracking_uri).open()
    exp = tracker.experiment_id("x/y")
    tags = {"hashbench.kind": "run", "hashbench.run_key": "k", "hashbench.heartbeat_every": "15"}
    live = tracker.client.create_run(exp, tags={**tags, "hashbench.heartbeat": f"{time.time() - 10:.3f}"})
    claim = tracker.claim(exp, "k", name="n", tags=tags, parent_id=None, reuse=True, stale_after=5,
                          heartbeat_every=1.0)
    assert claim.outcome == "elsewhere" and claim.run.info.run_id == live.info.run_id
    assert tracker.reap_stale(exp, stale_after=5) == 0
    assert tracker.client.get_run(live.info.run_id).info.status == "RUNNING"
    run = tracker.client.get_run(live.info.run_id)
    assert not is_stale(run, 5, now=time.time()) and is_stale(run, 5, now=time.time() + 36)
    assert is_stale(run, 300, now=time.time() + 301) and not is_stale(run, 300, now=time.time() + 200)


def test_a_claim_with_a_fresh_heartbeat_is_never_closed(tracking_uri):
    from bench.tracking import Tracker

    tracker = Tracker(tracking_uri).open()
    exp = tracker.experiment_id("x/y")
    live = tracker.client.create_run(exp, tags={"hashbench.kind": "run", "hashbench.run_key": "k",
                                                "hashbench.heartbeat": f"{time.time():.3f}"}).info.run_id
    claim = tracker.claim(exp, "k", name="n", tags={"hashbench.kind": "run", "hashbench.run_key": "k"},
                          parent_id=None, reuse=True, stale_after=60)
    assert claim.outcome == "elsewhere" and claim.run.info.run_id == live
    assert tracker.reap_stale(exp, stale_after=60) == 0
    assert tracker.client.get_run(live).info.status == "RUNNING"
    old = tracker.client.create_run(exp, tags={"hashbench.kind": "run", "hashbench.run_key": "k2",
                                               "hashbench.heartbeat": f"{time.time() - 120:.3f}",
                                               "hashbench.heartbeat_every": "15"}).info.run_id
    mine = tracker.claim(exp, "k2", name="n", tags={"hashbench.kind": "run", "hashbench.run_key": "k2"},
                         parent_id=None, reuse=True, stale_after=60)
    assert mine.outcome == "mine" and tracker.client.get_run(old).info.status == "KILLED"


# ----------------------------------------------------------------------------------------- interrupts
RECORD_CALLS = ("create_run", "log_batch", "set_terminated", "log_artifact", "search_runs", "set_tag",
                "delete_run", "get_experiment_by_name", "create_experiment", "get_run", "search_experiments")


def _sigint_after_call(monkeypatch, target: int) -> list[str]:
    """Send SIGINT to this process right after the ``target``-th record call of the main thread returns
    (the moment that leaves a run created but unknown when an interrupt is not deferred)."""
    import threading

    from mlflow.tracking import MlflowClient as Client

    calls: list[str] = []
    for name in RECORD_CALLS:
        real = getattr(Client, name)

        def wrapper(self, *a, __real=real, __name=name, **k):
            result = __real(self, *a, **k)
            if threading.current_thread() is threading.main_thread():
                calls.append(__name)
                if len(calls) == target:
                    signal.raise_signal(signal.SIGINT)
            return result

        monkeypatch.setattr(Client, name, wrapper)
    return calls


def test_sigint_inside_every_record_call_leaves_nothing_running(tmp_path, monkeypatch, capsys, _migrated_mlflow_db):
    import shutil

    from bench.cli import main

    args = ["run", "--methods", "lsh", *DIGITS, "--bits", "8,16"]
    counting = _sigint_after_call(monkeypatch, target=0)
    uri0 = f"sqlite:///{tmp_path / 'count.db'}"
    shutil.copy(_migrated_mlflow_db, tmp_path / "count.db")
    assert main(args + ["--tracking-uri", uri0]) == 0
    total = len(counting)
    monkeypatch.undo()
    assert total >= 15
    left_running = 0
    for target in range(1, total + 1):
        path = tmp_path / f"s{target}.db"
        shutil.copy(_migrated_mlflow_db, path)
        _sigint_after_call(monkeypatch, target)
        status = main(args + ["--tracking-uri", f"sqlite:///{path}"])
        monkeypatch.undo()
        assert status == 130, (target, capsys.readouterr().err)
        left_running += sum(r.info.status == "RUNNING" for r in _all_runs(f"sqlite:///{path}"))
    capsys.readouterr()
    assert left_running == 0, f"{left_running} runs left RUNNING over {total} interrupts"


SIGINT_DELAYS = [0.0, 0.05, 0.2, 0.4, 0.7, 1.0, 1.5, 2.0, 2.6, 3.3, 4.0, 5.0]


@pytest.mark.parametrize("delay", SIGINT_DELAYS)
def test_sigint_at_any_moment_of_a_real_sweep_leaves_nothing_running(tmp_path, env, delay):
    """Ctrl-C sent ``delay`` seconds after the sweep announced itself: while it opens the store, loads
    the data, claims, trains, records; the whole sweep takes about 5 s here."""
    uri = f"sqlite:///{tmp_path / 'i.db'}"
    env = {**env, "SLOW_SECONDS": "1"}
    proc = _bench(["run", "--methods", "lsh,slow-for-test,itq", *DIGITS, "--bits", "8,16", "--tracking-uri", uri],
                  env)
    first = ""
    while "loading" not in first and proc.poll() is None:  # "loading digits ...": the sweep has started
        first += proc.stderr.readline()
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = first + err
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err
    runs = _all_runs(uri)
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    if proc.returncode == 130:
        assert "interrupted" in err


# ------------------------------------------------------------------------------------ a failing server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` (sqlite backend, artifacts proxied) on 127.0.0.1, started and stopped here."""

    def __init__(self, root: Path):
        self.root, self.port = root, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.root / 'srv.db'}",
               "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

        def healthy():
            try:
                return urllib.request.urlopen(f"{self.uri}/health", timeout=1).status == 200
            except OSError:
                return False

        _wait_for(healthy, 90, "mlflow server", step=0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def server(tmp_path):
    srv = MlflowServer(tmp_path / "server")
    srv.root.mkdir()
    yield srv
    srv.stop()


def test_a_server_gone_mid_sweep_leaves_a_spool_that_sync_uploads_once(tmp_path, env, server):
    server.start()
    env = {**env, "SLOW_SECONDS": "3", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    args = ["run", "--methods", "lsh,slow-for-test,pcah", *DIGITS, "--bits", "8,16", "--tracking-uri", server.uri]
    sweep = _bench(args, env)
    _wait_for(lambda: _running_slow(server.uri), 120, "the slow run on the server")
    server.stop()
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 1, err
    assert "Traceback" not in err
    assert "python -m bench sync --tracking-uri " + server.uri in err
    spool = Path(env["HASHBENCH_DATA"]) / "spool"
    spooled = [p for p in spool.rglob("*.json") if p.parent.name != "done"]
    n_spooled_runs = sum('"kind": "run"' in p.read_text() for p in spooled)
    assert n_spooled_runs == 4  # slow 8 and 16, pcah 8 and 16: lsh landed before the server went

    server.start()
    sync = subprocess.run([sys.executable, "-m", "bench", "sync", "--tracking-uri", server.uri], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)
    assert sync.returncode == 0, sync.stderr
    assert f"uploaded {n_spooled_runs} run(s)" in sync.stderr
    runs = _all_runs(server.uri)
    assert _configs(runs) == Counter({(m, b, "0"): 1 for m in ("lsh", "slow-for-test", "pcah") for b in ("8", "16")})
    assert not [r for r in runs if r.info.status == "RUNNING"]
    again = subprocess.run([sys.executable, "-m", "bench", "sync", "--tracking-uri", server.uri], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=180)
    assert again.returncode == 0 and "nothing to upload" in again.stderr
    assert len(_all_runs(server.uri)) == len(runs)


def test_sync_is_idempotent_when_interrupted_after_an_upload(tmp_path, monkeypatch, tracking_uri):
    """An entry whose run landed but was not yet moved to done/ is not uploaded a second time."""
    from bench import spool
    from bench.tracking import RunBundle

    monkeypatch.setenv("HASHBENCH_DATA", str(tmp_path / "cache"))
    bundle = RunBundle(experiment="e/p", name="r", tags={"hashbench.kind": "run", "hashbench.run_key": "k1"},
                       params={"method": "lsh"}, metrics={"map_at_100": 0.5}, history={"train.loss": [2.0, 1.0]},
                       texts={"run_config.json": "{}"}, status="FINISHED")
    path = spool.save_run(tracking_uri, bundle, claim_id=None)
    assert spool.sync(tracking_uri).uploaded == 1
    os.replace(path.parent / "done" / path.name, path)  # as if the move had not happened
    report = spool.sync(tracking_uri)
    assert report.uploaded == 0 and report.already_there == 1
    (run,) = [r for r in _all_runs(tracking_uri) if r.data.tags.get("hashbench.run_key") == "k1"]
    assert run.info.status == "FINISHED" and run.data.metrics["map_at_100"] == 0.5
    assert [m.value for m in MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "train.loss")] == [2.0, 1.0]


def test_a_sync_that_fails_part_way_stops_and_keeps_the_rest(tmp_path, monkeypatch, tracking_uri):
    from bench import spool
    from bench.tracking import RunBundle

    monkeypatch.setenv("HASHBENCH_DATA", str(tmp_path / "cache"))
    for key in ("k1", "k2", "k3"):
        spool.save_run(tracking_uri, RunBundle(experiment="e/p", name=key, tags={"hashbench.kind": "run",
                                                                                 "hashbench.run_key": key},
                                               metrics={"map_at_100": 0.5}, status="FINISHED"), claim_id=None)
    real, calls = spool._upload_run, []

    def fails_second(tracker, entry):
        calls.append(entry["id"])
        if len(calls) == 2:
            raise ConnectionError("server gone")
        return real(tracker, entry)

    monkeypatch.setattr(spool, "_upload_run", fails_second)
    report = spool.sync(tracking_uri)
    assert (report.uploaded, report.left, len(calls)) == (1, 2, 2)  # stopped at the failure
    assert len(spool.pending(tracking_uri)) == 2
    monkeypatch.setattr(spool, "_upload_run", real)
    assert spool.sync(tracking_uri).uploaded == 2 and spool.pending(tracking_uri) == []


def test_an_upload_cut_short_is_withdrawn_and_done_again(tmp_path, monkeypatch, tracking_uri):
    """The store fails right after sync created a run: the next sync must not take that empty RUNNING
    run for the upload (that lost the results), but withdraw it and upload again."""
    from bench import spool
    from bench.tracking import RunBundle, Tracker

    monkeypatch.setenv("HASHBENCH_DATA", str(tmp_path / "cache"))
    bundle = RunBundle(experiment="e/p", name="r", tags={"hashbench.kind": "run", "hashbench.run_key": "k9"},
                       params={"method": "lsh"}, metrics={"map_at_100": 0.25}, status="FINISHED")
    spool.save_run(tracking_uri, bundle, claim_id=None)

    def store_dies(self, run_id, bundle, done=None):
        raise ConnectionError("server gone after the run was created")

    real = Tracker.write
    monkeypatch.setattr(Tracker, "write", store_dies)
    assert spool.sync(tracking_uri).left == 1
    assert [r.info.status for r in _all_runs(tracking_uri)] == ["RUNNING"]
    monkeypatch.setattr(Tracker, "write", real)
    report = spool.sync(tracking_uri)
    assert (report.uploaded, report.already_there, report.left) == (1, 0, 0)
    (run,) = _all_runs(tracking_uri)
    assert run.info.status == "FINISHED" and run.data.metrics["map_at_100"] == 0.25
    assert not [r for r in _all_runs(tracking_uri, deleted=True) if r.info.status == "RUNNING"]


def test_a_store_failing_inside_a_claim_leaves_the_claim_to_the_sync(tmp_path, monkeypatch, tracking_uri, capsys):
    """The claim was created, then the store failed before the sweep learnt its id: the spooled result
    names the claim, and the sync closes it, so nothing stays RUNNING beside the uploaded result."""
    from bench import spool
    from bench.cli import main
    from bench.tracking import Tracker

    monkeypatch.setenv("HASHBENCH_DATA", str(tmp_path / "cache"))
    real = Tracker._live_claims
    calls = []

    def fails_after_create(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # the look after creating our claim
            raise ConnectionError("server gone mid-claim")
        return real(self, *a, **k)

    monkeypatch.setattr(Tracker, "_live_claims", fails_after_create)
    status = main(["run", "--methods", "lsh", *DIGITS, "--bits", "8", "--tracking-uri", tracking_uri])
    assert status == 1 and "python -m bench sync" in capsys.readouterr().err
    monkeypatch.setattr(Tracker, "_live_claims", real)
    (entry,) = [p for p in spool.pending(tracking_uri) if '"kind": "run"' in p.read_text()]
    assert '"claim_id": null' not in entry.read_text()
    assert main(["sync", "--tracking-uri", tracking_uri]) == 0
    runs = _all_runs(tracking_uri)
    assert _configs(runs) == Counter({("lsh", "8", "0"): 1})
    assert not [r for r in runs if r.info.status == "RUNNING"]
