"""Sweeps on Ray (``--executor ray``): a real Ray head (``ray start --head`` on 127.0.0.1, 2 CPUs, no
dashboard, free ports) and a real ``mlflow server`` (sqlite backend) on 127.0.0.1, both started here and
stopped by the fixtures whatever happens.

* the same sweep (three shallow methods and one torch method on digits, same seeds, ``--threads 1``) gives
  the same metrics, run for run, under ``--executor local`` and ``--executor ray``;
* a Ray worker killed (SIGKILL) in the middle of a task: the run is computed again and every run lands in
  the tracking server exactly once, nothing left RUNNING;
* the user's mistakes (Ray missing, an unreachable address, ``--ray-address`` without Ray) are one line and
  exit status 2.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

from test_record_concurrency import MlflowServer, _free_port, _wait_for

REPO = Path(__file__).resolve().parent.parent
DIGITS = ["--dataset", "digits", "--features", "pixels"]
# three shallow methods and a small torch method (a few epochs on CPU): what the executors must agree on
SWEEP = ["--methods", "itq,lsh,pcah,greedyhash", "--bits", "16,32", "--seeds", "0",
         "--param", "greedyhash.epochs=3", "--param", "greedyhash.device=cpu", "--threads", "1", *DIGITS]
# what depends on the machine's load, not on the codes
TIMINGS = {"fit_seconds", "encode_seconds", "encode_database_seconds", "encode_query_seconds", "save_seconds",
           "peak_rss_mb", "process_peak_rss_mb"}

PID_PLUGIN = '''
import os
import time
from pathlib import Path

import numpy as np

from hashbench.methods.base import Hasher
from hashbench.methods.registry import register_method


@register_method
class PidSlow(Hasher):
    """Random hyperplanes whose fit writes the process id into $PID_DIR and takes $SLOW_SECONDS: a test
    knows which Ray worker to kill while a run is under way."""

    name = "pid-slow-for-test"
    reference = "test method"
    _parameter_constraints = {}

    def _fit(self, X):
        Path(os.environ["PID_DIR"], f"{self.n_bits}-{self.seed}-{os.getpid()}").touch()
        time.sleep(float(os.environ.get("SLOW_SECONDS", "3")))
        self.mean_ = X.mean(0)
        self.w_ = np.random.default_rng(self.seed).normal(size=(X.shape[1], self.n_bits))

    def _project(self, X):
        return (X - self.mean_) @ self.w_
'''


# The test cluster: on the loopback only (Ray would otherwise join 127.0.0.1 through the machine's own
# address), with token authentication and a token of its own (nothing written into ~/.ray), no usage report.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module", autouse=True)
def _ray_env():
    """The test cluster's settings in this process too, for the whole module: Ray reads some of them once,
    when it is first imported (whichever test imports it first)."""
    old = {name: os.environ.get(name) for name in RAY_ENV}
    os.environ.update(RAY_ENV)
    yield
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def env(_ray_env, tmp_path_factory):
    """Environment of the Ray head and of the sweeps: a private cache, the plug-in importable everywhere."""
    root = tmp_path_factory.mktemp("ray-env")
    (root / "plug").mkdir()
    (root / "plug" / "pidplug.py").write_text(PID_PLUGIN)
    (root / "pids").mkdir()
    return {**os.environ, "HASHBENCH_DATA": str(root / "cache"), "PYTHONPATH": f"{root / 'plug'}{os.pathsep}{REPO}",
            "PID_DIR": str(root / "pids"), "SLOW_SECONDS": "3", "OMP_NUM_THREADS": "1", **RAY_ENV}


class RayHead:
    """``ray start --head --block`` on 127.0.0.1 with 2 CPUs, every port free, no dashboard, its session in
    a private temporary folder; stopped by killing the processes it started (by pid, never ``ray stop``,
    which would stop every Ray instance of the machine)."""

    def __init__(self, env: dict):
        self.env = env
        # Ray's Unix sockets live in the session folder, whose path must stay short (sun_path: 107 bytes)
        self.temp = tempfile.mkdtemp(prefix="hbray", dir="/tmp")
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> None:
        ports = {flag: str(_free_port()) for flag in (
            "--node-manager-port", "--object-manager-port", "--metrics-export-port",
            "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port")}
        cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address",
               "127.0.0.1", "--port", str(self.port), "--num-cpus", "2", "--include-dashboard", "false",
               "--disable-usage-stats", "--temp-dir", self.temp, "--object-store-memory", str(200 * 1024 ** 2),
               *[a for flag, port in ports.items() for a in (flag, port)]]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"ray start exited with {self.proc.returncode}: {self.proc.stderr.read()}")
            try:  # the head's GCS first: a driver started before it listens can hang instead of failing
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                    "sys.exit(0 if ray.cluster_resources().get('CPU') == 2 else 1)")
            return subprocess.run([sys.executable, "-c", code, self.address], env=self.env, capture_output=True,
                                  timeout=60).returncode == 0

        _wait_for(up, 120, "the Ray head", step=1.0)

    def processes(self):
        import psutil

        if self.proc is None:
            return []
        try:
            return [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        import psutil

        started = self.processes()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # ray start --block stops what it started
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for proc in started:  # whatever did not stop with it
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(started, timeout=10)
        self.proc = None


@pytest.fixture(scope="module")
def ray_head(env):
    head = RayHead(env)
    try:
        head.start()
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("ray-mlflow"))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def _bench(args: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    code = "import sys, pidplug; from bench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _runs(uri: str, method: str | None = None):
    """Every run (kind "run") of the store's experiments, of one method if given."""
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, "") if ids else []
    return [r for r in runs if r.data.tags.get("hashbench.kind") == "run"
            and (method is None or r.data.params.get("method") == method)]


def _by_identity(runs) -> dict[str, dict[str, float]]:
    out = {}
    for r in runs:
        assert r.info.status == "FINISHED", (r.data.params.get("method"), r.info.status)
        key = r.data.tags["hashbench.run_key"]
        assert key not in out, f"run key {key[:12]} recorded twice"
        out[key] = {k: v for k, v in r.data.metrics.items() if k not in TIMINGS}
    return out


def test_local_and_ray_give_the_same_metrics_run_for_run(tmp_path, env, ray_head, server):
    local_uri = f"sqlite:///{tmp_path / 'local.db'}"
    local = _bench(["run", *SWEEP, "--tracking-uri", local_uri], env)
    assert local.returncode == 0, local.stderr
    remote = _bench(["run", *SWEEP, "--executor", "ray", "--ray-address", ray_head.address,
                     "--tracking-uri", server.uri], env)
    assert remote.returncode == 0, remote.stderr
    assert "greedyhash" in remote.stdout and "itq" in remote.stdout

    local_runs, ray_runs = _by_identity(_runs(local_uri)), _by_identity(_runs(server.uri))
    assert len(local_runs) == 8
    assert set(ray_runs) == set(local_runs)  # the same identities: the executor is not part of a run
    for key, metrics in local_runs.items():
        assert "map_at_100" in metrics and "distinct_codes" in metrics
        assert ray_runs[key] == metrics, key  # every metric of the codes, to the last bit
    recorded = _runs(server.uri)
    assert {r.data.params["env.executor"] for r in recorded} == {"ray"}
    assert all(r.data.params.get("env.ray_node") for r in recorded)
    assert all(r.data.params["env.threads"] == "1" for r in recorded)
    client = MlflowClient(server.uri)
    run = next(r for r in recorded if r.data.params["method"] == "greedyhash")
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "index", "query_ap.csv", "run_config.json"} <= names  # computed on a worker, logged here

    again = _bench(["run", *SWEEP, "--executor", "ray", "--ray-address", ray_head.address,
                    "--tracking-uri", server.uri], env)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("reused") == 8 and len(_runs(server.uri)) == 8  # claims: nothing is redone


def test_a_worker_killed_mid_task_is_redone_and_every_run_lands_once(env, ray_head, server):
    pids = Path(env["PID_DIR"])
    args = ["run", "--methods", "pid-slow-for-test", "--bits", "8,16", "--seeds", "0,1", *DIGITS,
            "--threads", "1", "--executor", "ray", "--ray-address", ray_head.address, "--tracking-uri", server.uri,
            "--no-save-models"]
    code = "import sys, pidplug; from bench.cli import main; sys.exit(main(sys.argv[1:]))"
    sweep = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first = _wait_for(lambda: sorted(pids.iterdir()), 120, "a task to start fitting")[0]
        victim = int(first.name.rsplit("-", 1)[1])
        os.kill(victim, signal.SIGKILL)  # the Ray worker process computing that run
        out, err = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
    assert sweep.returncode == 0, err
    started = Counter(p.name.rsplit("-", 1)[0] for p in pids.iterdir())
    assert started[first.name.rsplit("-", 1)[0]] >= 2  # the killed run was computed again
    runs = _runs(server.uri, "pid-slow-for-test")
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    per_identity = Counter(r.data.tags["hashbench.run_key"] for r in runs)
    assert len(per_identity) == 4 and set(per_identity.values()) == {1}
    client = MlflowClient(server.uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    assert not client.search_runs(ids, "attributes.status = 'RUNNING'")  # no claim, no sweep left open


# ----------------------------------------------------------------------------------- the user's mistakes
def _main(args, capsys) -> tuple[int, str]:
    from bench.cli import main

    status = main(args)
    return status, capsys.readouterr().err


def test_an_unreachable_ray_address_is_one_line_and_status_2(tmp_path, capsys, tracking_uri):
    port = _free_port()
    start = time.monotonic()
    status, err = _main(["run", "--methods", "itq", *DIGITS, "--executor", "ray", "--ray-address",
                         f"127.0.0.1:{port}", "--tracking-uri", tracking_uri], capsys)
    assert status == 2 and time.monotonic() - start < 30
    assert f"error: cannot reach the Ray cluster at 127.0.0.1:{port}" in err and "Traceback" not in err
    assert not _runs(tracking_uri)


def test_the_executor_keys_of_a_sweep_file_are_read(tmp_path, capsys, tracking_uri):
    port = _free_port()
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"methods: [itq]\ndataset: digits\nfeatures: pixels\nexecutor: ray\n"
                     f"ray_address: '127.0.0.1:{port}'\n")
    status, err = _main(["run", "--config", str(sweep), "--tracking-uri", tracking_uri], capsys)
    assert status == 2 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err
    sweep.write_text("methods: [itq]\ndataset: digits\nexecutor: spark\n")
    status, err = _main(["run", "--config", str(sweep), "--tracking-uri", tracking_uri], capsys)
    assert status == 2 and "executor in the sweep file must be local or ray, got 'spark'" in err


def test_ray_missing_is_one_line_and_status_2(monkeypatch, capsys, tracking_uri):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    status, err = _main(["run", "--methods", "itq", *DIGITS, "--executor", "ray", "--tracking-uri", tracking_uri],
                        capsys)
    assert status == 2 and "error: --executor ray needs Ray, which is not installed" in err
    assert len(err.strip().splitlines()) == 1


def test_a_ray_address_without_the_ray_executor_is_refused(capsys, tracking_uri):
    status, err = _main(["run", "--methods", "itq", *DIGITS, "--ray-address", "127.0.0.1:6379",
                         "--tracking-uri", tracking_uri], capsys)
    assert status == 2 and "--ray-address is read by --executor ray only" in err


def test_more_threads_than_a_node_has_is_refused(capsys, tracking_uri, ray_head):
    status, err = _main(["run", "--methods", "itq", *DIGITS, "--executor", "ray", "--ray-address", ray_head.address,
                         "--threads", "3", "--tracking-uri", tracking_uri], capsys)
    assert status == 2 and "--threads 3 asks each task for more CPUs than any node of the Ray cluster has (2)" in err


def test_the_prepared_arrays_go_into_the_object_store_once(monkeypatch, tracking_uri, ray_head):
    import ray

    from bench.runner import run_sweep
    from bench.sweep import SweepSpec

    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(type(value).__name__) or real_put(value, **kw))
    spec = SweepSpec(methods=("itq", "lsh"), dataset="digits", features="pixels", bits=(8, 16), seeds=(0, 1),
                     save_models=False)
    result = run_sweep(spec, tracking_uri=tracking_uri, threads=1, executor="ray", ray_address=ray_head.address,
                       progress=lambda message: None)
    assert [r.status for r in result.results] == ["FINISHED"] * 8
    assert [(r.method, r.n_bits, r.seed) for r in result.results] == [  # the sweep's order, whatever finished first
        (m, b, s) for m in ("itq", "lsh") for b in (8, 16) for s in (0, 1)]
    assert puts == ["Prepared"]  # one put for eight tasks
    assert not ray.is_initialized()  # the sweep left the cluster
