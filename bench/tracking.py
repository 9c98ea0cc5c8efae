"""MLflow is the record: this module writes runs and reads finished ones back. What a run *is* (its
identity, keys and layout) is decided in `bench.record`; this module only talks to the store.

The tracking URI is, in order: ``--tracking-uri``, ``$MLFLOW_TRACKING_URI``, else a sqlite file
``mlflow.db`` in the working folder (git-ignored). For sqlite stores, artifacts go to
``mlartifacts/`` beside the database file, so a store and its artifacts move together.

`Tracker.open` checks a store before anything is computed: a sqlite store must be a file that can be
written in an existing (or creatable) folder, with MLflow's current schema; a server must answer
within a few seconds. A brand-new sqlite store gets its schema in a temporary file that is renamed
into place under a lock on its folder, so several sweeps may start on one new store at once and a store is
never left half-migrated.

Retries against a tracking server are bounded: unless the user set them, MLflow's documented
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``_BACKOFF_FACTOR`` / ``_TIMEOUT`` are set to 5 retries, factor
2 and 30 s (about a minute of retrying, which bridges a server restart); MLflow's own defaults retry
for about four minutes. The first contact (`Tracker.open`) is one try of at most 5 s. MLflow's "View
run" lines on stdout are switched off (``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``) unless set.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from bench.errors import UsageError
from bench.record import TAG_HEARTBEAT, TAG_HEARTBEAT_EVERY, TAG_KIND, TAG_RUN_KEY, Layout

STALE_AFTER = 300.0  # seconds without a heartbeat after which a RUNNING run is taken to be dead
HEARTBEAT_EVERY = 15.0
# A run is dead only once it has missed this many of *its own* beats as well: a sweep started with a
# short --stale-after never takes over a live claim of a sweep that beats every 15 s.
MISSED_BEATS = 3

SWEEP_RUNS = "runs.json"  # artifact of a sweep: the ids of the runs its table shows, reused ones included

# MLflow's documented settings (mlflow.environment_variables), set only where the user has not.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# For the first contact only: one try of at most 5 s, so a closed port, a wrong host or a server that
# accepts connections but never answers is reported in seconds, not minutes.
HTTP_PROBE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
# MLflow prints "View run ... at: URL" on stdout for every run on a server; stdout carries tables only.
QUIET_DEFAULTS = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db`` (sqlite).

    A plain path ending in ``.db``, ``.sqlite`` or ``.sqlite3`` means that sqlite file (relative to the
    working folder), as the default does.

    Raises:
        UsageError: any other plain path. MLflow would take it for its folder store, which MLflow 3
            keeps in maintenance mode and refuses here with a message about migrating; a ``file:`` URI
            still reaches MLflow as given.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if "://" in uri or uri.startswith(("file:", "databricks")):
        return uri
    if uri.lower().endswith(SQLITE_SUFFIXES):
        return f"sqlite:///{Path(uri).expanduser().resolve()}"
    raise UsageError(f"tracking URI {uri!r} is a plain path: give a sqlite file ending in .db (e.g. {uri}.db or "
                     "sqlite:///path/to/mlflow.db) or a tracking server (http://host:5000)")


def absolute_tracking_uri(uri: str | None = None) -> str:
    """`resolve_tracking_uri` with a sqlite file's path made absolute, so the URI names the same store
    from any folder (Ray's workers run in folders of their own; a sweep file may be run from elsewhere)."""
    uri = resolve_tracking_uri(uri)
    if (path := sqlite_path(uri)) is not None and not path.is_absolute():
        uri = f"sqlite:///{path.resolve()}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock (``fcntl.flock``) on ``folder`` itself for the duration of the block:
    every process setting up a store in that folder takes it, and no lock file is left behind."""
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): concurrent set-up is then not protected
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    import logging

    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]


class Tracker:
    """Thin wrapper over `MlflowClient`: explicit run ids, no global active-run state.

    Create it, call `open` (checks the store; `UsageError` with one line when it cannot be used), then
    write runs. Reading finished runs back: `finished_runs`.
    """

    def __init__(self, uri: str | None = None):
        self.uri = resolve_tracking_uri(uri)
        if is_http(self.uri):
            for key, value in {**HTTP_RETRY_DEFAULTS, **QUIET_DEFAULTS}.items():
                os.environ.setdefault(key, value)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    @property
    def artifact_root(self) -> str | None:
        """Where a sqlite store's experiments keep artifacts: ``mlartifacts/`` beside the file."""
        path = sqlite_path(self.uri)
        return (path.parent / "mlartifacts").resolve().as_uri() if path is not None else None

    # --------------------------------------------------------------- opening the store
    def open(self, *, create: bool = True) -> "Tracker":
        """Check that the store can be used, creating a new sqlite store's schema when ``create``.

        Raises `UsageError` (one line) for a sqlite path that cannot be a writable file, a store with
        an out-of-date or foreign schema, or a server that does not answer.
        """
        path = sqlite_path(self.uri)
        if path is not None:
            self._check_sqlite_path(path, create)
            if create:
                self._create_sqlite_schema(path)
            elif not path.is_file():
                raise UsageError(f"there is no MLflow store at {path}")
        # Another program (mlflow ui, a plain MlflowClient) may be creating a new sqlite store's schema
        # right now without our lock: its tables appear within seconds, so those errors are retried.
        deadline = time.monotonic() + (10.0 if path is not None else 0.0)
        while True:
            try:
                with _environ(HTTP_PROBE) if is_http(self.uri) else contextlib.nullcontext():
                    self.client.search_experiments(max_results=1)
                return self
            except Exception as exc:  # noqa: BLE001 -- any failure to talk to the store is the user's to fix
                transient = any(t in str(exc) for t in ("no such table", "database is locked", "alembic"))
                if transient and time.monotonic() < deadline:
                    self._client = None
                    time.sleep(0.5)
                    continue
                if is_http(self.uri):
                    raise UsageError(f"cannot reach the MLflow tracking server at {self.uri}: {_first_line(exc)}; "
                                     "start it, or pass another --tracking-uri") from None
                raise UsageError(f"cannot use the MLflow store {self.uri}: {_first_line(exc)}") from None

    @staticmethod
    def _check_sqlite_path(path: Path, create: bool) -> Path:
        """Refuse a sqlite path that cannot be a file (returns the nearest existing folder above it);
        with ``create``, make its folders and an empty file."""
        where = f"the MLflow store {path}"
        nearest = None
        for parent in [path.parent, *path.parent.parents]:
            if parent.exists():
                if not parent.is_dir():
                    raise UsageError(f"cannot create {where}: {parent} is not a folder")
                nearest = parent
                break
        if path.is_dir():
            raise UsageError(f"{where} is a folder; give a file path (sqlite:///path/to/mlflow.db)")
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "ab"):
                    pass
            except OSError as exc:
                raise UsageError(f"cannot write {where}: {exc.strerror or exc}") from None
        return nearest

    def check(self) -> "Tracker":
        """What `open` checks, without creating anything: a sqlite store that does not exist yet is
        left uncreated (its folder must accept a file: one is made and removed); an existing store or
        a server is opened and probed. For a sweep, before its data is prepared, so that a command that
        fails on its data leaves no new store behind.

        Raises `UsageError` (one line) as `open`."""
        path = sqlite_path(self.uri)
        if path is None or (path.is_file() and path.stat().st_size > 0):
            return self.open(create=False)
        nearest = self._check_sqlite_path(path, create=False)
        try:
            fd, probe = tempfile.mkstemp(dir=nearest, prefix=".hashbench-write-check-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UsageError(f"cannot write the MLflow store {path}: {exc.strerror or exc}") from None
        return self

    def _create_sqlite_schema(self, path: Path) -> None:
        """Give an empty sqlite file MLflow's schema, atomically: migrate a private temporary file, then
        rename it over the empty one, under a lock shared by every process opening this store."""
        with folder_lock(path.parent):
            if path.stat().st_size > 0:
                return
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".new")
            os.close(fd)
            try:
                with _quiet("mlflow.store.db.utils", "alembic"):  # their INFO lines say nothing a user needs
                    store = SqlAlchemyStore(f"sqlite:///{tmp}", self.artifact_root)
                store.engine.dispose()
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    # --------------------------------------------------------------- experiments
    def experiment_id(self, name: str, *, create: bool = True) -> str | None:
        """The id of experiment ``name``; created when missing and ``create`` (several processes may
        create it at once: the losers read the winner's)."""
        from mlflow.exceptions import MlflowException

        for attempt in range(5):
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                if exp.lifecycle_stage == "deleted":
                    raise UsageError(f"experiment {name!r} is deleted in {self.uri}; restore it "
                                     "(mlflow experiments restore) or use another store")
                return exp.experiment_id
            if not create:
                return None
            try:
                return self.client.create_experiment(name, artifact_location=self.artifact_root)
            except MlflowException:
                time.sleep(0.05 * (attempt + 1))  # created meanwhile by another process: read it
        raise UsageError(f"cannot create experiment {name!r} in {self.uri}")

    def experiment_names(self) -> list[str]:
        return [e.name for e in self.client.search_experiments() if e.name != "Default"]

    # --------------------------------------------------------------- writing
    def start_run(self, experiment_id: str, name: str, *, tags: Mapping[str, str] | None = None,
                  parent_id: str | None = None) -> str:
        tags = dict(tags or {})
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        return self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id

    def log_text(self, run_id: str, filename: str, text: str, *, folder: str | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / filename
            path.write_text(text)
            self.client.log_artifact(run_id, str(path), artifact_path=folder)

    def log_file(self, run_id: str, path: str, local: str) -> None:
        """Log the local file or folder ``local`` as the run's artifact ``path`` (a folder's content goes
        under ``path``; a file is logged under its own name inside ``path``'s folder, renamed when needed)."""
        source = Path(local)
        if source.is_dir():
            self.client.log_artifacts(run_id, str(source), artifact_path=path)
            return
        folder, _, filename = path.rpartition("/")
        if source.name == filename:
            self.client.log_artifact(run_id, str(source), artifact_path=folder or None)
            return
        with tempfile.TemporaryDirectory() as tmp:
            renamed = Path(tmp) / filename
            shutil.copy2(source, renamed)
            self.client.log_artifact(run_id, str(renamed), artifact_path=folder or None)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def write(self, run_id: str, bundle: "RunBundle", *, done: set[str] | None = None) -> None:
        """Log what of ``bundle`` is not in ``done`` (tags, params and metrics by key, artifacts by path), then
        close the run with ``bundle.status`` unless it is RUNNING. ``done`` is updated as parts land, so
        a second call after a failure sends only the rest."""
        from mlflow.entities import Metric, Param, RunTag

        done = set() if done is None else done
        now = int(time.time() * 1000)
        tags = [RunTag(k, str(v)[:5000]) for k, v in bundle.tags.items() if f"t:{k}={v}" not in done]
        if tags:
            self.client.log_batch(run_id, tags=tags)
            done.update(f"t:{k}={v}" for k, v in bundle.tags.items())
        params = [Param(k, v) for k, v in bundle.params.items() if f"p:{k}" not in done]
        for i in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[i:i + 100])
            done.update(f"p:{p.key}" for p in params[i:i + 100])
        metrics = [Metric(k, v, now, 0) for k, v in bundle.metrics.items() if f"m:{k}" not in done]
        metrics += [Metric(k, float(v), now, step) for k, values in bundle.history.items() if f"m:{k}" not in done
                    for step, v in enumerate(values)]
        for i in range(0, len(metrics), 500):
            self.client.log_batch(run_id, metrics=metrics[i:i + 500])
        done.update(f"m:{m.key}" for m in metrics)
        for path, text in bundle.texts.items():
            if f"a:{path}" not in done:
                folder, _, filename = path.rpartition("/")
                self.log_text(run_id, filename, text, folder=folder or None)
                done.add(f"a:{path}")
        for path, local in bundle.files.items():
            if f"f:{path}" not in done:
                self.log_file(run_id, path, local)
                done.add(f"f:{path}")
        if bundle.status != "RUNNING":
            self.finish(run_id, bundle.status)

    # --------------------------------------------------------------- claims
    def claim(self, experiment_id: str, run_key: str, *, name: str, tags: Mapping[str, str],
              parent_id: str | None, reuse: bool, stale_after: float = STALE_AFTER,
              heartbeat_every: float = HEARTBEAT_EVERY, opened: list[str] | None = None) -> "Claim":
        """Take a configuration for this sweep, or say why not (see `Claim`).

        A finished run of ``run_key`` is reused when ``reuse``. A RUNNING run of the key is a live claim
        of another sweep unless it is stale (`is_stale`): then its sweep died, it is closed as KILLED and
        the configuration taken over. Two sweeps that claim at once both create a run, then both look
        again: the earlier claim (start time, then run id) wins, the other closes and deletes its claim.
        A claim never closes another live claim. The new claim carries a heartbeat and the interval
        ``heartbeat_every`` at which its owner will refresh it; its id is appended to ``opened`` as soon
        as it exists (and removed if it is given up), so a caller whose store fails mid-claim knows it.
        """
        for _ in range(20):
            if reuse:
                finished = self.find_finished(experiment_id, run_key)
                if finished is not None:
                    return Claim("reuse", run=finished)
            live = self._live_claims(experiment_id, run_key, stale_after)
            if live:
                return Claim("elsewhere", run=live[0])
            mine = self.client.create_run(experiment_id, run_name=name, tags={
                **tags, TAG_HEARTBEAT: f"{time.time():.3f}", TAG_HEARTBEAT_EVERY: f"{heartbeat_every:g}",
                **({"mlflow.parentRunId": parent_id} if parent_id else {})})
            my_id, my_start = mine.info.run_id, mine.info.start_time
            if opened is not None:
                opened.append(my_id)
            if reuse:
                finished = self.find_finished(experiment_id, run_key)
                if finished is not None:
                    self._give_up(my_id, opened)
                    return Claim("reuse", run=finished)
            others = [r for r in self._live_claims(experiment_id, run_key, stale_after) if r.info.run_id != my_id]
            if not others:
                return Claim("mine", run_id=my_id)
            earlier = [r for r in others if r.info.start_time < my_start]
            self._give_up(my_id, opened)
            if earlier:
                return Claim("elsewhere", run=min(earlier, key=lambda r: (r.info.start_time, r.info.run_id)))
            # claims made in the same millisecond: every party yields and tries again after a random wait
            time.sleep(random.uniform(0.05, 0.5))
        raise UsageError(f"could not claim run {run_key[:12]} in {self.uri}: too many concurrent claims")

    def _give_up(self, run_id: str, opened: list[str] | None) -> None:
        """Withdraw a claim that lost: closed first (so nothing RUNNING remains, deleted or not), then
        deleted, since it holds no result."""
        self.finish(run_id, "KILLED")
        self.client.delete_run(run_id)
        if opened is not None and run_id in opened:
            opened.remove(run_id)

    def _live_claims(self, experiment_id: str, run_key: str, stale_after: float) -> list:
        running = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{TAG_RUN_KEY}` = '{run_key}' and attributes.status = 'RUNNING'",
            max_results=1000)
        now = time.time()
        live = []
        for run in running:
            if is_stale(run, stale_after, now):
                self.close_stale(run)
            else:
                live.append(run)
        return sorted(live, key=lambda r: (r.info.start_time, r.info.run_id))

    def close_stale(self, run) -> None:
        """Close a RUNNING run whose heartbeat stopped (its process was killed) as KILLED."""
        self.set_tags(run.info.run_id, {"hashbench.closed_as_stale": f"{time.time():.3f}"})
        self.finish(run.info.run_id, "KILLED")

    def reap_stale(self, experiment_id: str, stale_after: float = STALE_AFTER) -> int:
        """Close every stale (`is_stale`) RUNNING hashbench run or sweep of an experiment; return how many."""
        now, count, token = time.time(), 0, None
        while True:
            page = self.client.search_runs(
                [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000, page_token=token)
            for run in page:
                if TAG_KIND in run.data.tags and is_stale(run, stale_after, now):
                    self.close_stale(run)
                    count += 1
            token = page.token
            if not token:
                return count

    # --------------------------------------------------------------- reading
    def find_finished(self, experiment_id: str, run_key: str):
        """The latest FINISHED run carrying ``run_key``, or None."""
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_RUN_KEY}` = '{run_key}' and attributes.status = 'FINISHED'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return runs[0] if runs else None

    def sweep_runs(self, experiment_id: str, prefix: str) -> set[str]:
        """Ids of the runs of the sweeps whose run id starts with ``prefix``: those each sweep listed in
        its ``runs.json`` (reused runs of other sweeps included) and those nested under it.

        Raises `UsageError` when no sweep of the experiment has such an id."""
        sweeps = [r for r in self.client.search_runs([experiment_id], f"tags.`{TAG_KIND}` = 'sweep'", max_results=5000)
                  if r.info.run_id.startswith(prefix)]
        if not sweeps:
            raise UsageError(f"no sweep whose id starts with {prefix!r} in this experiment")
        ids: set[str] = set()
        for sweep in sweeps:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    path = self.client.download_artifacts(sweep.info.run_id, SWEEP_RUNS, tmp)
                    ids.update(json.loads(Path(path).read_text())["runs"])
                except Exception:  # noqa: BLE001 -- sweeps recorded before runs.json existed, or cut short
                    pass
            nested = self.client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{sweep.info.run_id}'",
                                             max_results=5000)
            ids.update(r.info.run_id for r in nested)
        return ids

    def read_text(self, run_id: str, path: str) -> str | None:
        """The text of artifact ``path`` of run ``run_id``; None when the run has no such artifact (runs
        recorded before it existed)."""
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a report reads many small files
        with tempfile.TemporaryDirectory() as tmp:
            try:
                return Path(self.client.download_artifacts(run_id, path, tmp)).read_text()
            except Exception:  # noqa: BLE001 -- MLflow raises several types for a missing artifact
                return None

    def finished_runs(self, experiment_id: str) -> Iterator[Any]:
        """Every FINISHED per-(method, bits, seed) run of an experiment, oldest first, page by page."""
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id], filter_string=f"tags.`{TAG_KIND}` = 'run' and attributes.status = 'FINISHED'",
                max_results=1000, page_token=token, order_by=["attributes.start_time ASC"])
            yield from page
            token = page.token
            if not token:
                return


# ------------------------------------------------------------------------------------ results as data
@dataclass
class RunBundle:
    """Everything a run records, as plain data: what `Tracker.write` logs and the spool keeps on disk.

    ``history`` maps MLflow keys (``train.<name>``) to per-epoch values; ``texts`` maps artifact paths
    (``run_config.json``, ``params/<key>.txt``) to their text; ``files`` maps artifact paths (``model``,
    ``index``) to local files or folders holding binary artifacts (the saved model, the faiss index),
    which the spool copies and keeps until they are uploaded; ``status`` is FINISHED, FAILED or KILLED.
    """

    experiment: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    status: str = "RUNNING"
    parent_id: str | None = None

    def add_layout(self, layout: Layout) -> None:
        self.params.update(layout.params)
        self.metrics.update(layout.metrics)
        self.texts.update({f"params/{k}.txt": v for k, v in layout.long_values.items()})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunBundle":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Claim:
    """The outcome of `Tracker.claim`: ``"mine"`` (``run_id`` is this sweep's new RUNNING run),
    ``"reuse"`` (``run`` is a FINISHED run of the same key) or ``"elsewhere"`` (``run`` is a live
    claim of another sweep)."""

    outcome: str
    run_id: str = ""
    run: Any = None


def heartbeat_of(run) -> float:
    """Unix seconds of a run's last heartbeat (its start for runs that never beat: legacy or killed early)."""
    try:
        return float(run.data.tags[TAG_HEARTBEAT])
    except (KeyError, ValueError):
        return run.info.start_time / 1000.0


def is_stale(run, stale_after: float, now: float | None = None) -> bool:
    """Whether a RUNNING run's sweep is dead: no heartbeat for ``stale_after`` seconds *and* for
    `MISSED_BEATS` of the run's own beat intervals (tag ``hashbench.heartbeat_every``; 15 s for runs
    that do not say), whichever is longer. A live sweep beats every interval, so its runs are never
    stale, whatever limit the sweep looking at them was given."""
    try:
        every = float(run.data.tags.get(TAG_HEARTBEAT_EVERY, HEARTBEAT_EVERY))
    except ValueError:
        every = HEARTBEAT_EVERY
    age = (time.time() if now is None else now) - heartbeat_of(run)
    return age > max(stale_after, MISSED_BEATS * every)


class Heartbeat:
    """A daemon thread that sets ``hashbench.heartbeat`` = now on the open runs every ``interval``
    seconds. Errors are ignored: a missed beat only makes a claim look older, and a claim is only taken
    over after `STALE_AFTER` seconds without one."""

    def __init__(self, tracker: "Tracker", interval: float):
        self.tracker, self.interval = tracker, interval
        self.runs: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hashbench-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def add(self, run_id: str) -> None:
        with self._lock:
            self.runs.add(run_id)

    def discard(self, run_id: str) -> None:
        with self._lock:
            self.runs.discard(run_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                runs = list(self.runs)
            for run_id in runs:
                try:
                    self.tracker.client.set_tag(run_id, TAG_HEARTBEAT, f"{time.time():.3f}")
                except Exception:  # noqa: BLE001 -- see the class docstring
                    pass

