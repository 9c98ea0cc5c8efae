"""Results the tracking store could not take, kept on disk until ``python -m bench sync`` uploads them.

When writing a run fails (a tracking server gone for longer than MLflow's bounded retries, a store that
refuses writes), the sweep keeps the complete run (`bench.tracking.RunBundle`) as one JSON file in the
spool and records the rest of the sweep there too; nothing is lost. The spool of a store is the folder
``<cache>/spool/<sha256 of the tracking URI, 16 hex>/`` (the cache folder is ``$HASHBENCH_DATA`` or
``~/.cache/hashbench``), one file per entry, written atomically.

Entries:

* ``{"kind": "run", "id", "uri", "claim_id", "bundle"}``: a finished (or failed) run; ``claim_id`` is
  the RUNNING run the sweep had claimed for it in the store (None when the store was unreachable
  before the claim). The bundle's binary artifacts (``files``: the saved model, the faiss index) are
  copied into ``files/<id>/<artifact path>`` of the spool first and named relative to the spool, so
  the entry is complete on disk before its JSON appears.
* ``{"kind": "close", "id", "uri", "run_id", "status", "metrics", "texts"}``: a run (a sweep, a claim)
  to close, with what to log first.

`sync` uploads run entries as new runs tagged ``hashbench.spool_id`` = the entry id, closes their
claims as KILLED (superseded), applies close entries, and moves each entry to ``done/`` once it is in
the store. An entry already uploaded (a run with its spool id and its final status is in the store) or
whose run key already has a FINISHED run there is not uploaded again, so a re-sync, or a sync
interrupted and redone, is a no-op for what already landed; an upload that was cut short (its run is
still RUNNING) is withdrawn and done again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.record import TAG_RUN_KEY
from bench.tracking import RunBundle, Tracker

TAG_SPOOL_ID = "hashbench.spool_id"
TAG_SUPERSEDED = "hashbench.superseded_by"


def spool_dir(uri: str) -> Path:
    """The spool folder of tracking URI ``uri`` (not created)."""
    from hashbench.datasets.cache import cache_dir

    return cache_dir() / "spool" / hashlib.sha256(uri.encode()).hexdigest()[:16]


def _write_atomic(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


FILES = "files"


def save_run(uri: str, bundle: RunBundle, claim_id: str | None) -> Path:
    """Keep a run that could not be written, with copies of its binary artifacts; returns the entry's file."""
    entry_id = uuid.uuid4().hex
    folder = spool_dir(uri)
    data = bundle.as_dict()
    if bundle.files:
        kept = {}
        for artifact, local in bundle.files.items():
            target = folder / FILES / entry_id / artifact
            target.parent.mkdir(parents=True, exist_ok=True)
            if Path(local).is_dir():
                shutil.copytree(local, target, dirs_exist_ok=True)
            else:
                shutil.copy2(local, target)
            kept[artifact] = str(target.relative_to(folder))
        data["files"] = kept
    path = folder / f"{entry_id}.json"
    _write_atomic(path, {"kind": "run", "id": entry_id, "uri": uri, "claim_id": claim_id, "bundle": data})
    return path


def save_close(uri: str, run_id: str, status: str, metrics: dict[str, float] | None = None,
               texts: dict[str, str] | None = None) -> Path:
    """Remember to close run ``run_id`` with ``status`` (and log ``metrics`` and artifacts ``texts`` first)."""
    entry_id = uuid.uuid4().hex
    path = spool_dir(uri) / f"{entry_id}.json"
    _write_atomic(path, {"kind": "close", "id": entry_id, "uri": uri, "run_id": run_id, "status": status,
                         "metrics": dict(metrics or {}), "texts": dict(texts or {})})
    return path


def pending(uri: str) -> list[Path]:
    """Entries of ``uri`` not yet uploaded, oldest first."""
    folder = spool_dir(uri)
    files = [p for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


@dataclass
class SyncReport:
    """What `sync` did: runs uploaded, runs already in the store (not uploaded again), runs closed."""

    uploaded: int = 0
    already_there: int = 0
    closed: int = 0
    left: int = 0


def sync(uri: str, say: Callable[[str], None] = lambda m: None) -> SyncReport:
    """Upload the spool of ``uri`` into its store (see the module docstring); returns what was done.

    Raises `bench.errors.UsageError` when the store cannot be opened. When an entry fails to upload
    (the store failed again), the sync stops there: that entry and the rest stay in the spool (counted
    in ``left``) for the next sync, instead of each waiting out the retries of a store that is down.
    """
    tracker = Tracker(uri).open()
    report = SyncReport()
    runs: list[tuple[Path, dict]] = []
    closes: list[tuple[Path, dict]] = []
    for path in pending(uri):
        entry = json.loads(path.read_text())
        (runs if entry["kind"] == "run" else closes).append((path, entry))
    entries = runs + closes  # closing a sweep comes after its runs are in
    for number, (path, entry) in enumerate(entries):
        try:
            if entry["kind"] == "run":
                uploaded = _upload_run(tracker, entry)
                if uploaded:
                    report.uploaded += 1
                else:
                    report.already_there += 1
            else:
                report.closed += _apply_close(tracker, entry)
        except Exception as exc:  # noqa: BLE001 -- the store failed again: stop, keep the rest for later
            say(f"could not upload {path.name}: {type(exc).__name__}: {str(exc).strip()[:300]}; "
                "stopping: run the sync again when the store answers")
            report.left = len(entries) - number
            break
        done = path.parent / "done" / path.name
        done.parent.mkdir(exist_ok=True)
        files = path.parent / FILES / entry["id"]
        if files.is_dir():  # uploaded: the copies of the binary artifacts go with their entry
            (done.parent / FILES).mkdir(exist_ok=True)
            os.replace(files, done.parent / FILES / entry["id"])
        os.replace(path, done)
    return report


def _run_state(tracker: Tracker, run_id: str | None):
    if not run_id:
        return None
    from mlflow.exceptions import MlflowException

    try:
        return tracker.client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":  # deleted, or in another store: nothing to update
            return None
        raise


def _upload_run(tracker: Tracker, entry: dict) -> bool:
    bundle = RunBundle.from_dict(entry["bundle"])
    folder = spool_dir(entry["uri"])
    bundle.files = {artifact: str(folder / local) for artifact, local in bundle.files.items()}
    exp_id = tracker.experiment_id(bundle.experiment)
    already = []
    for run in tracker.client.search_runs([exp_id], f"tags.`{TAG_SPOOL_ID}` = '{entry['id']}'"):
        if run.info.status == bundle.status:
            already.append(run)
        else:  # an upload cut short (the store failed again mid-way): withdrawn and done again
            if run.info.status == "RUNNING":
                tracker.finish(run.info.run_id, "KILLED")
            tracker.client.delete_run(run.info.run_id)
    run_key = bundle.tags.get(TAG_RUN_KEY)
    if not already and run_key and bundle.status == "FINISHED":
        already = [r for r in [tracker.find_finished(exp_id, run_key)] if r is not None]
    new_id = None
    if not already:
        parent = _run_state(tracker, bundle.parent_id)
        run_id = tracker.start_run(exp_id, bundle.name, tags={**bundle.tags, TAG_SPOOL_ID: entry["id"]},
                                   parent_id=bundle.parent_id if parent is not None else None)
        tracker.write(run_id, bundle)
        new_id = run_id
    claim = _run_state(tracker, entry.get("claim_id"))
    if claim is not None and claim.info.status == "RUNNING":
        tracker.set_tags(claim.info.run_id, {TAG_SUPERSEDED: new_id or already[0].info.run_id})
        tracker.finish(claim.info.run_id, "KILLED")
    return new_id is not None


def _apply_close(tracker: Tracker, entry: dict) -> int:
    run = _run_state(tracker, entry["run_id"])
    if run is None or run.info.status != "RUNNING":
        return 0
    tracker.write(run.info.run_id, RunBundle(experiment="", name="", metrics=entry.get("metrics", {}),
                                             texts=entry.get("texts", {}), status=entry["status"]))
    return 1
