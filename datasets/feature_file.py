"""Pre-extracted features with predefined splits, read from .npz, .mat (v5 and v7.3), HDF5 or pickle files.

``data_root`` is one file, or a folder whose feature files (``.npz .mat .h5 .hdf5 .pkl .pickle``) are read
together, as if they were one: the LAGNH authors ship one pickle per split (``train2017.pkl``,
``val2017.pkl``, ``retrieval2017.pkl``).

Named arrays, for each split ``s`` of ``train``, ``query``, ``database``:

* ``s_features``: ``(n_s, d)`` features;
* ``s_labels``: ``(n_s,)`` integer class ids or ``(n_s, C)`` 0/1 multi-hot (evaluation only);
* ``s_tags`` (optional): ``(n_s, T)`` auxiliary semantics, e.g. LAGNH's detector tags.

Names are matched case-insensitively, as ``<split>_<kind>`` or ``<kind>_<split>`` (``X_train``), with
these aliases:

==========  ================================
split       aliases
==========  ================================
train       ``train``
query       ``query``, ``test``, ``val``
database    ``database``, ``retrieval``, ``db``
==========  ================================

==========  ================================
kind        aliases
==========  ================================
features    ``features``, ``feature``, ``X``
labels      ``labels``, ``label``, ``y``
tags        ``tags``, ``tag``, ``plabel``
==========  ================================

Other arrays are ignored; two arrays naming the same split and kind are an error. The query and
database splits are required; without a train split the training set is the database.

Contract: one `Dataset` whose rows are the query rows, then the database rows, then the train rows,
each in file order: ``features`` ``(n, d)`` float32, ``labels``, ``side["tags"]`` ``(n, T)`` float32
when every split has tags, and ``splits`` the row ranges. Rows are not de-duplicated (feature files
carry no image identity), so a train split drawn from the database appears twice.

Array orientation: MATLAB stores column-major, and a MATLAB ``save -v7.3`` file (HDF5 recognised by the
``MATLAB`` header of its 512-byte user block) is read with its axes reversed, so a MATLAB ``n x d`` matrix
comes back ``(n, d)``; any other HDF5 file is read as stored (numpy order). ``(n, 1)`` and ``(1, n)``
label vectors are flattened.

Pickles run code when loaded. They are read only with ``allow_pickle=True`` (``--allow-pickle``), with a
warning; ``.npz`` files are always read with ``allow_pickle=False``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hashbench.datasets.base import Dataset
from hashbench.datasets.errors import DataError
from hashbench.datasets.registry import check_bool_option

SPLITS = ("query", "database", "train")
SPLIT_ALIASES = {"train": ("train",), "query": ("query", "test", "val"), "database": ("database", "retrieval", "db")}
KIND_ALIASES = {"features": ("features", "feature", "x"), "labels": ("labels", "label", "y"),
                "tags": ("tags", "tag", "plabel")}
SUFFIXES = (".npz", ".mat", ".h5", ".hdf5", ".pkl", ".pickle")
_SPLIT_OF = {a: s for s, names in SPLIT_ALIASES.items() for a in names}
_KIND_OF = {a: k for k, names in KIND_ALIASES.items() for a in names}


def _slot(key: str) -> tuple[str, str] | None:
    """``(split, kind)`` that an array name stands for, or None."""
    parts = key.lower().split("_")
    if len(parts) != 2:
        return None
    a, b = parts
    if a in _SPLIT_OF and b in _KIND_OF:
        return _SPLIT_OF[a], _KIND_OF[b]
    if a in _KIND_OF and b in _SPLIT_OF:
        return _SPLIT_OF[b], _KIND_OF[a]
    return None


def _as_array(value: Any, where: str) -> np.ndarray:
    try:
        import scipy.sparse
        if scipy.sparse.issparse(value):
            value = value.toarray()
    except ImportError:
        pass
    try:
        arr = np.asarray(value)
    except Exception as err:  # e.g. ragged lists in a pickle
        raise DataError(f"{where} is not an array ({type(value).__name__}: {err})") from None
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where} holds {arr.dtype} values; store plain numeric arrays")
    return arr


# --- readers: file -> (every array name, {wanted name: array}) -------------------------------------

def _read_npz(path: Path) -> tuple[list[str], dict[str, Any]]:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            return names, {k: z[k] for k in names if _slot(k)}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise DataError(f"{path} stores object arrays, which need pickle; save plain numeric arrays "
                            "(np.savez with numbers only)") from None
        raise DataError(f"cannot read {path} as .npz: {err}") from None
    except (OSError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path} as .npz: {err}") from None


def _matlab_header(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"MATLAB"


def _read_hdf5(path: Path) -> tuple[list[str], dict[str, Any]]:
    import h5py

    matlab = _matlab_header(path)
    out = {}
    try:
        with h5py.File(path, "r") as f:
            names = [k for k in f.keys() if not k.startswith("#")]  # '#refs#' holds MATLAB cell contents
            for k in names:
                if not _slot(k):
                    continue
                node = f[k]
                if not isinstance(node, h5py.Dataset):
                    raise DataError(f"{path}: {k!r} is an HDF5 group (a MATLAB struct, cell or sparse matrix?), "
                                    "not a numeric array; save it as a full numeric matrix")
                arr = node[()]
                out[k] = np.transpose(arr) if matlab else arr
    except OSError as err:
        raise DataError(f"cannot read {path} as HDF5: {err}") from None
    return names, out


def _read_mat(path: Path) -> tuple[list[str], dict[str, Any]]:
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):
        return _read_hdf5(path)
    try:
        names = [name for name, _, _ in scipy.io.whosmat(path)]
        wanted = [k for k in names if _slot(k)]
        found = scipy.io.loadmat(path, variable_names=wanted) if wanted else {}
    except (ValueError, NotImplementedError, OSError, TypeError) as err:
        raise DataError(f"cannot read {path} as a MATLAB .mat file: {err}") from None
    return names, {k: found[k] for k in wanted}


def _read_pickle(path: Path, allow_pickle: bool) -> tuple[list[str], dict[str, Any]]:
    import pickle

    if not allow_pickle:
        raise DataError(f"refusing to read the pickle {path}: loading a pickle can run arbitrary code. If you "
                        "trust the file, pass --allow-pickle (allow_pickle=True), or convert it to .npz")
    warnings.warn(f"reading the pickle {path}: unpickling runs code stored in the file; do this only for "
                  "files you trust", UserWarning, stacklevel=4)
    try:
        with open(path, "rb") as f:
            # latin1 lets Python 2 pickles of numpy arrays load; it changes nothing for Python 3 pickles.
            obj = pickle.load(f, encoding="latin1")
    except Exception as err:
        raise DataError(f"cannot unpickle {path}: {type(err).__name__}: {err}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}; expected a dict of named arrays "
                        "(e.g. {'train_feature': ..., 'train_label': ...})")
    names = [str(k) for k in obj]
    return names, {str(k): v for k, v in obj.items() if _slot(str(k))}


def _read(path: Path, allow_pickle: bool) -> tuple[list[str], dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".mat":
        return _read_mat(path)
    if suffix in (".h5", ".hdf5"):
        return _read_hdf5(path)
    if suffix in (".pkl", ".pickle"):
        return _read_pickle(path, allow_pickle)
    raise DataError(f"{path}: unsupported feature file type {suffix or '(no suffix)'!r}; "
                    f"supported: {' '.join(SUFFIXES)}")


# --- assembling one Dataset ---------------------------------------------------------------------------

def _layout_help() -> str:
    return ("pass data_root=<file or folder> with pre-extracted features: arrays named like test_features, "
            "test_labels, database_features, database_labels, optional train_* and *_tags "
            f"(formats {' '.join(SUFFIXES)}; aliases in the datasets.feature_file docstring)")


def _collect(files: list[Path], allow_pickle: bool) -> tuple[dict[tuple[str, str], tuple[str, Any]], list[str]]:
    slots: dict[tuple[str, str], tuple[str, Any]] = {}
    seen: list[str] = []
    for path in files:
        names, arrays = _read(path, allow_pickle)
        seen += [f"{path.name}:{k}" for k in names if not k.startswith("__")]
        for key, value in arrays.items():
            slot = _slot(key)
            where = f"{path.name}:{key}"
            if slot in slots:
                raise DataError(f"{slots[slot][0]} and {where} both give the {slot[0]} {slot[1]}; "
                                "keep one of them")
            slots[slot] = (where, value)
    return slots, seen


def _labels(arr: np.ndarray, n: int, where: str) -> np.ndarray:
    if arr.ndim == 2 and 1 in arr.shape and arr.size == n:
        arr = arr.reshape(-1)
    if arr.ndim == 1:
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise DataError(f"{where}: class ids must be whole numbers")
        if arr.size and arr.min() < 0:
            raise DataError(f"{where}: class ids must be >= 0, found {arr.min()}")
        return arr.astype(np.int64)
    if arr.ndim == 2:
        bad = int(np.count_nonzero((arr != 0) & (arr != 1)))
        if bad:
            raise DataError(f"{where}: multi-hot labels must be 0 or 1, {bad} entries are not")
        return arr.astype(np.uint8)
    raise DataError(f"{where}: labels must be (n,) class ids or (n, C) multi-hot, got shape {arr.shape}")


def _check_finite(arr: np.ndarray, where: str) -> None:
    nan, inf = np.isnan(arr), np.isinf(arr)
    n_nan, n_inf = int(nan.sum()), int(inf.sum())
    if n_nan or n_inf:
        first = int(np.flatnonzero((nan | inf).any(axis=1))[0])
        raise DataError(f"{where} contain {n_nan} NaN and {n_inf} infinite value(s) (first in row {first}); "
                        "clean or drop those rows before hashing")


def _split_arrays(split: str, slots: dict, source: str) -> dict[str, np.ndarray] | None:
    have = {kind: slots[(split, kind)] for kind in KIND_ALIASES if (split, kind) in slots}
    if not have:
        return None
    for kind in ("features", "labels"):
        if kind not in have:
            names = "/".join(f"{split}_{a}" for a in KIND_ALIASES[kind])
            raise DataError(f"{source}: the {split} split has {', '.join(have)} but no {kind} ({names})")
    where_f, feats = have["features"]
    feats = _as_array(feats, where_f)
    if feats.ndim != 2:
        raise DataError(f"{where_f}: features must be (n, d), got shape {feats.shape}")
    with np.errstate(over="ignore"):  # overflow shows up as inf, reported below with a count
        feats = np.ascontiguousarray(feats, dtype=np.float32)
    n = feats.shape[0]
    if n == 0:
        raise DataError(f"{where_f}: the {split} split has no rows")
    out = {"features": feats}
    where_l, labels = have["labels"]
    labels = _as_array(labels, where_l)
    if labels.shape[0] != n and not (labels.ndim == 2 and labels.shape == (1, n)):
        raise DataError(f"{split}: {where_f} has {n} rows but {where_l} has {labels.shape[0]} (shape {labels.shape})")
    out["labels"] = _labels(labels, n, where_l)
    if "tags" in have:
        where_t, tags = have["tags"]
        tags = _as_array(tags, where_t)
        if tags.ndim != 2 or tags.shape[0] != n:
            raise DataError(f"{split}: tags {where_t} must be ({n}, T) like its features, got shape {tags.shape}")
        with np.errstate(over="ignore"):
            out["tags"] = np.ascontiguousarray(tags, dtype=np.float32)
    # Checked after the float32 cast: values beyond float32's range become inf there.
    _check_finite(out["features"], f"{split} features ({where_f})")
    if "tags" in out:
        _check_finite(out["tags"], f"{split} tags ({have['tags'][0]})")
    return out


def _feature_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise DataError(f"{root} holds no feature file ({' '.join(SUFFIXES)}); " + _layout_help())
        return files
    raise DataError(f"{root} does not exist; " + _layout_help())


def load_feature_file(data_root: str | os.PathLike | None = None, *, allow_pickle: bool = False,
                      name: str = "features") -> Dataset:
    """Read pre-extracted features and their predefined splits (see the module docstring).

    Returns a `Dataset` with ``features`` ``(n, d)`` float32, ``labels`` ``(n,)`` int64 or ``(n, C)``
    uint8, ``splits`` the query / database / train row ranges, ``side["tags"]`` ``(n, T)`` float32 when
    every split has tags, and no images.

    Raises:
        DataError: no ``data_root``, no readable feature file there, missing query or database split,
            inconsistent shapes / label kinds / dimensions, non-finite values, a pickle without
            ``allow_pickle=True``, or an ``allow_pickle`` that is not True or False.
    """
    check_bool_option(name, "allow_pickle", allow_pickle)  # "False" must not allow pickles
    if data_root is None:
        raise DataError("the features dataset reads a file you supply; " + _layout_help())
    root = Path(data_root).expanduser()
    files = _feature_files(root)
    slots, seen = _collect(files, allow_pickle)
    parts = {s: _split_arrays(s, slots, str(root)) for s in SPLITS}
    for s in ("query", "database"):
        if parts[s] is None:
            aliases = "/".join(SPLIT_ALIASES[s])
            raise DataError(f"{root} has no {s} split: expected arrays named <{aliases}>_features and "
                            f"<{aliases}>_labels; found: {', '.join(seen) or 'no arrays'}")
    present = {s: p for s, p in parts.items() if p is not None}

    dims = {s: p["features"].shape[1] for s, p in present.items()}
    if len(set(dims.values())) > 1:
        raise DataError(f"feature dimensions differ across splits ({dims}); all splits need the same features")
    kinds = {s: ("class ids" if p["labels"].ndim == 1 else f"{p['labels'].shape[1]}-label multi-hot")
             for s, p in present.items()}
    if len(set(kinds.values())) > 1:
        raise DataError(f"label kinds differ across splits ({kinds}); use one kind for every split")

    with_tags = [s for s, p in present.items() if "tags" in p]
    side = {}
    if with_tags and len(with_tags) < len(present):
        warnings.warn(f"only the {', '.join(with_tags)} split(s) have tags; tags are ignored", stacklevel=2)
    elif with_tags:
        widths = {s: p["tags"].shape[1] for s, p in present.items()}
        if len(set(widths.values())) > 1:
            raise DataError(f"tag widths differ across splits ({widths})")
        side["tags"] = np.concatenate([p["tags"] for p in present.values()])

    splits, start = {}, 0
    for s, p in present.items():
        splits[s] = np.arange(start, start + len(p["features"]), dtype=np.int64)
        start += len(p["features"])
    if "train" not in splits:
        splits["train"] = splits["database"].copy()

    labels = np.concatenate([p["labels"] for p in present.values()])
    db = labels[splits["database"]]
    if db.ndim == 1 and len(np.unique(db)) > 1 and np.all(np.diff(db) >= 0):
        # Hamming ranking has many ties; broken by database index, a class-sorted database inflates mAP@K.
        warnings.warn(f"the database of {root} is sorted by class; ties in Hamming ranking broken by index "
                      "will favour low class ids (shuffle it, or use an evaluation that averages ties)",
                      stacklevel=2)
    return Dataset(
        name=name,
        labels=labels,
        features=np.concatenate([p["features"] for p in present.values()]),
        splits=splits,
        side=side,
        source=", ".join(str(f.resolve()) for f in files),
    )
