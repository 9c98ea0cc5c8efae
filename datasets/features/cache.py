"""Disk cache of per-image arrays (features, tags, rotated views) computed from a dataset's images.

Each computed quantity lives in a *store*::

    cache_dir()/features/<dataset id>/<kind>-<settings hash>/
        layout.json                 n, row shape, dtype, rows per block (written once, atomically)
        info.json                   what produced the rows (the extractor's info; written atomically)
        block-00003.values.npy      rows [3 B, 4 B) of the full (n, ...) array; zeros where not done
        block-00003.done.npy        (B,) bool: rows whose values are final

Only requested rows are computed, so a store may be partial; rows computed for one index subset are
reused by any other. Safety against interruption rests on one invariant: *a row is marked done only
after its values are on disk*. A block is committed by writing its values file, then its done file,
each to a temporary name that is fsync'ed and renamed over the old one; a reader loads the done mask
first. A crash, an exception or Ctrl-C therefore loses at most the rows of blocks not yet committed
(they are recomputed next time) and can never make missing rows look done. Blocks are committed as
soon as their rows are all computed (every ~20 MB of values), which is what lets an interrupted long
extraction resume. Writers of one store take an advisory lock (``fcntl.flock``), so two processes
extracting the same rows do not both compute them.

Dataset identity (`dataset_identity`): the name, the source string, n, the loader's ``fingerprint``
(when it has one), the labels' dtype/shape/bytes and the bytes of three images (first, middle,
last). It stays stable across runs and processes, and it changes when the labels, the item count or
the sampled pixels change. It does not read every image, so an edit that spares the labels and those
three images is not detected; delete the store (or pass ``cache=False``) in that case.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from hashbench.datasets.base import Dataset
from hashbench.datasets.cache import cache_dir
from hashbench.datasets.errors import DataError

FORMAT_VERSION = 1
BLOCK_BYTES = 24 << 20  # ~24 MB of values per block: cheap to rewrite, few files for 60k images
log = logging.getLogger("hashbench.datasets.features")


def as_rows(indices: Any, n: int) -> np.ndarray:
    """``indices`` as an int64 array of row numbers in ``[0, n)``; a clear `DataError` otherwise."""
    rows = np.asarray(indices)
    if rows.ndim != 1:
        raise DataError(f"indices must be a 1-d array of row numbers, got shape {rows.shape}")
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise DataError(f"indices must be integers, got dtype {rows.dtype}")
    rows = rows.astype(np.int64, copy=False)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise DataError(f"indices must lie in [0, {n}) for a dataset of {n} items; "
                        f"got values from {rows.min()} to {rows.max()}")
    return rows


def dataset_identity(data: Dataset) -> str:
    """``<name>-n<n>-<16 hex>``: stable key of a dataset's content (see the module docstring)."""
    n = len(data)
    digest = hashlib.sha256()
    digest.update(f"v{FORMAT_VERSION}|{data.name}|{data.source}|{n}|{data.fingerprint}".encode())
    labels = np.ascontiguousarray(data.labels)
    digest.update(f"|{labels.dtype.str}|{labels.shape}|".encode())
    digest.update(labels.tobytes())
    if data.images is not None and n:
        for i in sorted({0, n // 2, n - 1}):
            img = np.ascontiguousarray(np.asarray(data.images[i]))
            digest.update(f"|{img.dtype.str}|{img.shape}|".encode())
            digest.update(img.tobytes())
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", data.name) or "dataset"
    return f"{safe_name}-n{n}-{digest.hexdigest()[:16]}"


def settings_hash(settings: dict[str, Any]) -> str:
    text = json.dumps({"format": FORMAT_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/filesystem can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write via ``write(file)`` to a temporary sibling, fsync it, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with contextlib.suppress(AttributeError, OSError):  # mkstemp makes 0600; a cache may be shared
            os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _write_json(path: Path, obj: dict) -> None:
    _atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=1, sort_keys=True, default=str).encode()))


def _write_npy(path: Path, array: np.ndarray) -> None:
    _atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): concurrent writers only duplicate work
        yield
        return
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process writing %s", path.parent)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class RowStore:
    """The store of one quantity for one dataset (see the module docstring)."""

    def __init__(self, path: Path, n: int, row_shape: tuple[int, ...], dtype: Any, info: dict[str, Any]):
        self.path = Path(path)
        self.n, self.row_shape, self.dtype = int(n), tuple(int(s) for s in row_shape), np.dtype(dtype)
        row_bytes = max(1, int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize)
        layout = {"format": FORMAT_VERSION, "n": self.n, "row_shape": list(self.row_shape),
                  "dtype": self.dtype.str, "block_rows": int(min(8192, max(1, BLOCK_BYTES // row_bytes)))}
        self.path.mkdir(parents=True, exist_ok=True)
        layout_file = self.path / "layout.json"
        if layout_file.exists():
            try:
                stored = json.loads(layout_file.read_text())
            except ValueError as err:
                raise DataError(f"feature cache {layout_file} is unreadable ({err}); delete {self.path}") from err
            if {k: stored.get(k) for k in layout if k != "block_rows"} != \
                    {k: v for k, v in layout.items() if k != "block_rows"}:
                raise DataError(f"feature cache {self.path} holds rows of another shape ({stored}, expected "
                                f"{layout}); delete that folder to recompute")
            layout["block_rows"] = int(stored["block_rows"])
        else:
            _write_json(layout_file, layout)
        self.block_rows = layout["block_rows"]
        if not (self.path / "info.json").exists():
            _write_json(self.path / "info.json", info)

    def _file(self, block: int, what: str) -> Path:
        return self.path / f"block-{block:05d}.{what}.npy"

    def _block_len(self, block: int) -> int:
        return min(self.block_rows, self.n - block * self.block_rows)

    def _done(self, block: int) -> np.ndarray:
        try:
            done = np.load(self._file(block, "done"), allow_pickle=False)
        except FileNotFoundError:
            return np.zeros(self._block_len(block), bool)
        except ValueError as err:  # a torn file cannot exist (atomic renames) unless edited by hand
            raise DataError(f"feature cache block {self._file(block, 'done')} is unreadable ({err}); "
                            f"delete {self.path}") from err
        if done.shape != (self._block_len(block),) or done.dtype != bool:
            raise DataError(f"feature cache block {self._file(block, 'done')} is malformed; delete {self.path}")
        return done

    def missing(self, rows: np.ndarray) -> np.ndarray:
        """Sorted unique rows of ``rows`` that are not done."""
        rows = np.unique(rows)
        todo = []
        for block in np.unique(rows // self.block_rows):
            start = block * self.block_rows
            mine = rows[(rows >= start) & (rows < start + self.block_rows)]
            todo.append(mine[~self._done(int(block))[mine - start]])
        return np.concatenate(todo) if todo else rows

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Values of ``rows`` (in that order); every row must be done."""
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        blocks = rows // self.block_rows
        for block in np.unique(blocks):
            block = int(block)
            where = np.flatnonzero(blocks == block)
            local = rows[where] - block * self.block_rows
            if not self._done(block)[local].all():  # done first: values on disk are never older
                raise DataError(f"feature cache {self.path}: rows of block {block} vanished while reading")
            out[where] = np.load(self._file(block, "values"), mmap_mode="r", allow_pickle=False)[local]
        return out

    def commit(self, block: int, local: np.ndarray, values: np.ndarray) -> None:
        """Store ``values`` for the block's local rows ``local``, values first, then the done mask."""
        done = self._done(block)
        if done.any():
            merged = np.array(np.load(self._file(block, "values"), allow_pickle=False))
        else:
            merged = np.zeros((self._block_len(block), *self.row_shape), self.dtype)
        merged[local] = values
        done[local] = True
        _write_npy(self._file(block, "values"), merged)
        _write_npy(self._file(block, "done"), done)


def store_path(data: Dataset, kind: str, key: dict[str, Any]) -> Path:
    safe_kind = re.sub(r"[^A-Za-z0-9._-]+", "_", kind)
    return cache_dir() / "features" / dataset_identity(data) / f"{safe_kind}-{settings_hash(key)}"


def cached_rows(data: Dataset, rows: np.ndarray, compute: Callable[[np.ndarray], np.ndarray], *,
                kind: str, key: dict[str, Any], row_shape: tuple[int, ...], dtype: Any,
                info: dict[str, Any], batch_size: int, use_cache: bool = True) -> tuple[np.ndarray, str]:
    """``A[rows]`` for ``A[i] = compute([i])[0]``, computed in batches and cached on disk.

    ``compute(batch_rows)`` returns ``(len(batch_rows), *row_shape)`` values. Only rows missing from
    the store ``(data, kind, key)`` are computed, in increasing order, ``batch_size`` at a time, with a
    progress bar (shown on terminals only). Returns the values and the store path ("" without cache).
    """
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise DataError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not use_cache:
        todo = np.unique(rows)
        computed = _compute_in_batches(todo, compute, None, row_shape, dtype, batch_size, kind)
        return computed[np.searchsorted(todo, rows)], ""
    store = RowStore(store_path(data, kind, key), len(data), row_shape, dtype, info)
    if len(store.missing(rows)):
        with _locked(store.path / ".lock"):
            todo = store.missing(rows)  # another process may have finished some while we waited
            log.info("%s: computing %d of %d rows into %s", kind, len(todo), len(np.unique(rows)), store.path)
            _compute_in_batches(todo, compute, store, row_shape, dtype, batch_size, kind)
    return store.read(rows), str(store.path)


def _compute_in_batches(todo, compute, store, row_shape, dtype, batch_size, kind):
    """Compute ``todo`` (sorted); with a store, commit each block as soon as its rows are all done."""
    from tqdm import tqdm

    keep_all = store is None
    out = np.empty((len(todo), *row_shape), dtype) if keep_all else None
    pending: list[tuple[np.ndarray, np.ndarray]] = []  # computed, not yet committed (row, value) batches

    def commit_before(limit_row: int) -> None:
        first_open_row = (limit_row // store.block_rows) * store.block_rows
        if not pending or pending[0][0][0] >= first_open_row:  # rows ascend: nothing is ready yet
            return
        rows = np.concatenate([r for r, _ in pending])
        vals = np.concatenate([v for _, v in pending])
        blocks = rows // store.block_rows
        ready = rows < first_open_row
        for block in np.unique(blocks[ready]):
            sel = blocks == block
            store.commit(int(block), rows[sel] - int(block) * store.block_rows, vals[sel])
        pending[:] = [(rows[~ready], vals[~ready])] if (~ready).any() else []

    started = time.perf_counter()
    with tqdm(total=len(todo), desc=kind, unit="img", disable=None, leave=False) as bar:
        try:
            for lo in range(0, len(todo), batch_size):
                batch = todo[lo:lo + batch_size]
                values = np.asarray(compute(batch), dtype=dtype)
                if values.shape != (len(batch), *row_shape):
                    raise RuntimeError(f"{kind}: computed shape {values.shape}, expected {(len(batch), *row_shape)}")
                if keep_all:
                    out[lo:lo + len(batch)] = values
                else:
                    pending.append((batch, values))
                    nxt = int(todo[lo + batch_size]) if lo + batch_size < len(todo) else store.n + store.block_rows
                    commit_before(nxt)
                bar.update(len(batch))
        except BaseException:
            if not keep_all:  # keep the rows already computed (they are complete) so a rerun resumes
                with contextlib.suppress(Exception):
                    commit_before(store.n + store.block_rows)
            raise
    log.info("%s: %d rows in %.1f s", kind, len(todo), time.perf_counter() - started)
    return out
