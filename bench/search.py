"""Answer queries from what a run stored, and nothing else: ``python -m bench search --run RUN_ID --query
FEATURES.npy [--side tags=TAGS.npy] --k 10``.

The run's ``model`` artifact (an MLflow pyfunc model, `bench.models`) encodes the query features (with
the side inputs its method's encoding needs); the run's ``index`` artifact (a faiss binary index of the
database codes with the database ids) gives the database. The answer is, per query, the ``k`` nearest
database items in the harness's own order (ascending Hamming distance, ties by database position: the
ranking every run is scored on) with their database ids (the dataset's item indices) and distances.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import models
from bench.errors import UsageError
from hashbench.methods import InputError


@dataclass
class Answer:
    """``ids`` and ``distances``: ``(n_queries, k')`` int64 with ``k' = min(k, n_database)``, row ``i`` the
    neighbours of query ``i`` nearest first; ``positions``: their rows in the database."""

    ids: np.ndarray
    distances: np.ndarray
    positions: np.ndarray


def load_array(path: str, what: str) -> np.ndarray:
    """A ``.npy`` file as an array (no pickles). Raises `UsageError` (one line) when it cannot be read."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"{what} file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {what} file {path} as a .npy array: {str(exc).splitlines()[0]}") from None


def parse_sides(items: list[str] | None) -> dict[str, str]:
    """``["tags=TAGS.npy"]`` -> ``{"tags": "TAGS.npy"}``. Raises `UsageError` for an item without ``=``."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UsageError(f"--side expects NAME=FILE.npy, got {item!r}")
        out[name.strip()] = path.strip()
    return out


def search_run(tracker, run_id: str, queries: np.ndarray, side: dict[str, np.ndarray], k: int) -> Answer:
    """The ``k`` nearest database items of each row of ``queries`` (``(n, d)`` features, or one ``(d,)``
    row) by run ``run_id``'s stored model and index.

    Raises:
        UsageError: no such run, a run without stored model or index (made with ``--no-save-models``
            or before runs kept them), ``k`` < 1.
        hashbench.methods.InputError: features or side inputs the model refuses (wrong width, NaN,
            missing side input).
    """
    from mlflow.exceptions import MlflowException

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"--k must be a positive integer, got {k!r}")
    try:
        tracker.client.get_run(run_id)
    except MlflowException:
        raise UsageError(f"there is no run {run_id!r} in {tracker.uri}") from None
    queries = np.asarray(queries)
    if queries.ndim == 1:
        queries = queries[None, :]
    side = {name: (value[None, ...] if queries.shape[0] == 1 and np.ndim(value) == 1 else value)
            for name, value in side.items()}
    with tempfile.TemporaryDirectory(prefix="hashbench-search-") as tmp:
        local = {}
        for artifact in (models.MODEL_DIR, models.INDEX_DIR):
            try:
                with models.quiet_mlflow():
                    local[artifact] = tracker.client.download_artifacts(run_id, artifact, tmp)
            except Exception:  # noqa: BLE001 -- MLflow raises several kinds for a missing artifact
                raise UsageError(f"run {run_id} has no stored {artifact} (it was made with --no-save-models, "
                                 "or before runs kept their models): rerun it with --force") from None
        model = models.load_model(local[models.MODEL_DIR])
        db_codes, ids = models.read_index(Path(local[models.INDEX_DIR]) / models.INDEX_FILE)
        try:
            codes = model.predict({"features": queries, **side} if side else queries)
        except InputError as exc:
            if "needs the side input" not in str(exc):
                raise
            raise InputError(f"{exc} (give each with --side NAME=FILE.npy)") from None
    if codes.shape[1] != db_codes.shape[1]:
        raise UsageError(f"the run's model gives {codes.shape[1]}-byte codes but its index holds "
                         f"{db_codes.shape[1]}-byte codes")
    positions, distances = models.search_index(codes, db_codes, k)
    return Answer(ids[positions], distances, positions)


def format_answer(answer: Answer) -> str:
    """The answer as a text table: one line per (query, rank) with the database id and the distance."""
    lines = [f"{'query':>5}  {'rank':>4}  {'database_id':>11}  {'hamming':>7}"]
    for q in range(answer.ids.shape[0]):
        for rank in range(answer.ids.shape[1]):
            lines.append(f"{q:>5}  {rank + 1:>4}  {answer.ids[q, rank]:>11}  {answer.distances[q, rank]:>7}")
    return "\n".join(lines)
