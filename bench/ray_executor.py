"""Sweeps on a Ray cluster (``python -m bench run ... --executor ray [--ray-address ADDR]``).

With `bench.tune`, the only module of hashbench that imports Ray. The driver (the ``python -m bench run`` process) keeps
everything the record owns: it claims each (method, bits, seed) through `bench.tracking` and records it
through the runner (claims, heartbeats, the spool), exactly as a local sweep does. A Ray task only
computes: it runs `bench.runner.compute_run` (fit, encode, score, save the model and codes), the same
function the local executor runs, with the same ``--threads`` applied first, and returns the
measurements and the saved files' bytes. So the same seeds and threads give the same numbers on both
executors, and a worker lost mid-task loses no record: Ray runs the task again (``max_retries``) while
the driver's claim, kept alive by its heartbeat, stops every other sweep from taking the run, and the
driver records it once when a try comes back.

Each task asks for ``threads`` CPUs, and one GPU for a method that runs on torch devices (it declares
``device`` in its ``execution_params`` and was not pinned to ``device=cpu``) when the cluster has GPUs.
The prepared arrays (`bench.prepare.Prepared`) are put into Ray's object store once per split and handed
to every task by reference: workers on one node share one copy, read in place.

Without an address a private, light Ray instance is started on this machine (its cores, no dashboard,
a 512 MiB object store, which spills to disk beyond that) and stopped at the end; with an address
(``HOST:PORT`` of a head's GCS, ``ray://HOST:PORT`` of a Ray client server, or ``auto``) the sweep joins
that cluster and leaves it running.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.errors import UsageError

# Tries of a task whose worker process died (killed, out of memory, its node lost) before the run is
# recorded as FAILED; each try starts from scratch on a live worker.
MAX_RETRIES = 3
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 ** 2
PROBE_SECONDS = 5.0
POLL_SECONDS = 0.5  # ray.wait returns at least this often, so that Ctrl-C is handled promptly


def _import_ray(what: str = "--executor ray"):
    try:
        import ray
    except ImportError:
        raise UsageError(f"{what} needs Ray, which is not installed: pip install -c constraints.txt "
                         "'hashbench[ray]' (setup.sh installs it)") from None
    return ray


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _listens(host: str, port: int) -> str:
    """"" when something accepts TCP connections at ``host:port`` within `PROBE_SECONDS`, else why not."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            return ""
    except OSError as exc:
        return exc.strerror or str(exc)


def _probe(ray, address: str) -> None:
    """Refuse a ``HOST:PORT`` (or ``ray://HOST:PORT``) nothing listens on, in seconds: Ray itself retries an
    unreachable address for a long time. Ray joins a loopback address through this machine's own address
    (unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), so a head that listens on the loopback only is refused
    with what to do."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"--ray-address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    why = _listens(host, int(port))
    if why:
        raise UsageError(f"cannot reach the Ray cluster at {address}: {why}")
    if host in LOOPBACK and "://" not in address:
        own = ray.util.get_node_ip_address()  # where Ray will really connect
        if own not in LOOPBACK and _listens(own, int(port)):
            raise UsageError(f"the Ray head at {address} listens on the loopback only, but Ray joins it through this "
                             f"machine's address {own}: start the head without --node-ip-address {host}, or set "
                             "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for the head and the sweep")


def _reason(exc: BaseException) -> str:
    """The first line of Ray's error, or what to do when the cluster refused this process's token."""
    seen = exc
    while seen is not None:
        if type(seen).__name__ == "AuthenticationError":
            return ("the cluster uses token authentication and refused this process (set RAY_AUTH_MODE=token and "
                    "the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token)")
        seen = seen.__cause__ or seen.__context__
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _read_tree(local: Path) -> dict[str, bytes]:
    """``{path relative to local: bytes}`` of a folder's files, or ``{"": bytes}`` for a file."""
    if local.is_file():
        return {"": local.read_bytes()}
    return {str(p.relative_to(local)): p.read_bytes() for p in sorted(local.rglob("*")) if p.is_file()}


def _write_tree(contents: dict[str, bytes], local: Path) -> Path:
    """Write what `_read_tree` read under ``local`` (a file's bytes as ``local`` itself); returns ``local``."""
    for rel, data in contents.items():
        path = local / rel if rel else local
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return local


def _compute(prep, planned, save_models: bool, threads: int):
    """The body of a task, run in a Ray worker: `bench.runner.compute_run` with ``threads`` applied, the
    saved files returned as bytes (the driver may be on another machine)."""
    from bench.runner import compute_run
    from bench.threads import set_threads

    set_threads(threads)
    with tempfile.TemporaryDirectory(prefix="hashbench-task-") as scratch:
        computed = compute_run(planned, prep, Path(scratch), save_models)
        files = {artifact: _read_tree(Path(local)) for artifact, local in computed.files.items()}
    computed.files = {}
    return computed, files, socket.gethostname()


@dataclass
class Done:
    """A task that came back: its ``token``, what it computed (files unpacked under the folder it was
    given), the node that computed it, or ``lost`` (the one-line reason) when no try of it came back."""

    token: Any
    computed: Any = None
    node: str = ""
    lost: str = ""


def start_ray(ray: Any, address: str | None, cpus: int) -> None:
    """Start a private, light Ray instance on this machine (``cpus`` CPUs, no dashboard, a 512 MiB object
    store) when ``address`` is None, else join the cluster at ``address`` (probed first: an address nothing
    answers on fails in seconds). Ray's own Ctrl-C handlers are removed again, so the caller's stay in
    charge. Shared by `RayExecutor` and ``bench tune`` (`bench.tune`).

    Raises:
        UsageError: (one line) the address is unreachable or malformed, or Ray cannot start or join.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reporting home from a benchmark machine
    if address is not None:
        _probe(ray, address)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if address is None:
            ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001 -- Ray raises ConnectionError, RuntimeError, ValueError ...
        where = "start a local Ray instance" if address is None else f"join the Ray cluster at {address}"
        raise UsageError(f"cannot {where}: {_reason(exc)}") from None
    finally:
        for s, h in handlers.items():
            if h is not None:
                signal.signal(s, h)


class RayExecutor:
    """Runs `bench.runner.compute_run` as Ray tasks; the driver submits, waits, records (see the module).

    Raises `UsageError` (one line) when Ray is not installed, the address is unreachable or malformed, Ray
    cannot start or join, or ``threads`` exceeds the CPUs of every node of the cluster.
    """

    def __init__(self, address: str | None, threads: int, cpus: int, say: Callable[[str], None] | None = None):
        self.ray = ray = _import_ray()
        self._pending: dict[Any, tuple[Any, Path]] = {}  # object ref -> (token, folder for its files)
        self._shared: dict[int, Any] = {}
        say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        say(f"starting a local Ray instance ({cpus} CPUs) ..." if address is None else
            f"joining the Ray cluster at {address} ...")
        self.threads = threads
        self.started = address is None
        start_ray(ray, address, cpus)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.node_cpus = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
        self.gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
        if threads > self.node_cpus:
            self.shutdown()
            raise UsageError(f"--threads {threads} asks each task for more CPUs than any node of the Ray cluster "
                             f"has ({self.node_cpus:g}); use --threads {max(1, int(self.node_cpus))} or less")
        self._task = ray.remote(max_retries=MAX_RETRIES)(_compute)

    @property
    def slots(self) -> int:
        """How many tasks of ``threads`` CPUs the cluster runs at once (at least 1)."""
        total = self.ray.cluster_resources().get("CPU", 0.0)
        return max(1, int(total // self.threads))

    def share(self, prep) -> Any:
        """``prep`` in the object store, put there once (later calls return the same reference)."""
        key = id(prep)
        if key not in self._shared:
            self._shared[key] = (prep, self.ray.put(prep))  # keeps prep alive, so its id stays unique
        return self._shared[key][1]

    def wants_gpu(self, planned) -> bool:
        """A torch method (it declares ``device``) not pinned to the CPU, on a cluster with GPUs."""
        return bool(self.gpus) and "device" in planned.cls.execution_params and planned.params.get("device") != "cpu"

    def submit(self, token: Any, prep, planned, save_models: bool, folder: Path) -> None:
        """Start computing ``planned`` on ``prep``; its saved files will be written under ``folder``."""
        options = {"num_cpus": self.threads, "num_gpus": 1 if self.wants_gpu(planned) else 0}
        ref = self._task.options(**options).remote(self.share(prep), planned, save_models, self.threads)
        self._pending[ref] = (token, folder)

    def __len__(self) -> int:
        return len(self._pending)

    def done(self) -> Iterator[Done]:
        """The tasks that came back since the last call, waiting up to `POLL_SECONDS` for the first."""
        ray = self.ray
        if not self._pending:
            return
        ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=POLL_SECONDS)
        if ready:
            ready, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0)
        for ref in ready:
            token, folder = self._pending.pop(ref)
            try:
                computed, files, node = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # the task itself raised: not the method (caught inside)
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                yield Done(token, lost=f"the Ray task raised {type(cause).__name__}: "
                                       f"{(str(cause).strip().splitlines() or [''])[0][:300]}")
                continue
            except ray.exceptions.RayError as exc:  # worker or node lost on every try
                yield Done(token, lost=f"the Ray worker computing it was lost on all {MAX_RETRIES + 1} tries "
                                       f"({type(exc).__name__})")
                continue
            computed.files = {artifact: str(_write_tree(contents, folder / artifact))
                              for artifact, contents in files.items()}
            yield Done(token, computed, node)

    def shutdown(self) -> None:
        """Cancel what is still running, then leave the cluster (and stop the instance this started)."""
        ray = self.ray
        for ref in list(self._pending):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 -- best effort: the task's result is not wanted any more
                pass
        self._pending.clear()
        if ray.is_initialized():
            ray.shutdown()

