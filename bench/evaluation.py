"""Retrieval metrics for packed binary codes: the one evaluation engine of hashbench.

Contract. Codes are ``uint8`` arrays of shape ``(n, ceil(n_bits / 8))`` as written by
``np.packbits(bits, axis=1, bitorder="little")``; padding bits are zero, so Hamming distances need no
``n_bits``. Labels are either 1-D class ids (an item is relevant to a query of the same class) or 2-D
multi-hot 0/1 rows (relevant when they share at least one label; an item without labels is relevant
to nothing). For a query :math:`q`, the database is ranked by ascending Hamming distance with ties
broken by ascending database index ("stable"). With :math:`\\mathrm{rel}(k)` the relevance of rank
:math:`k`, :math:`P(k)` the precision of the first :math:`k` items and :math:`R_K` the relevant items
among the first :math:`K`:

.. math::
    \\mathrm{AP@}K = \\frac{1}{R_K} \\sum_{k \\le K} P(k)\\,\\mathrm{rel}(k), \\qquad
    \\mathrm{AP@}K = 0 \\text{ when } R_K = 0,

averaged over all queries. ``map_tie_aware`` is the expectation of AP@all over uniformly random orders
inside each group of equal distance (McSherry & Najork, ECIR 2008), so it does not depend on the
database order. Radius metrics count the items within Hamming distance :math:`r` of the query.

How it is fast. One compiled pass over the database, for a group of eight queries at a time (four for
codes over 128 bits; each database word is loaded once per group), computes each query's distance
histograms (all items, relevant items) and, for each relevant item, its distance and its positions
inside its distance bucket among all and among the relevant items. Queries of one class are grouped,
so one branch per item skips the irrelevant items' bookkeeping for the whole group; without ``map_all``
such a group visits its relevant items from a per-class index list instead, so that the loop over all
items only counts, and stops only at the few items that can still reach the top K. Ranks then follow
from the histograms (rank = items at smaller distance + position in the bucket), so no sort is ever
run, and every metric (stable AP at any cut, tie-aware AP, radius precision and recall, P@N) comes from
the same pass. Memory is :math:`O(N + Q \\cdot n_{bits})`: nothing of size :math:`Q \\times N` exists
unless `hamming_distances` is called. The compiled loops are serial: the engine uses one thread.

Exact sums. The sum :math:`\\sum_k P(k)\\,\\mathrm{rel}(k)` of a query adds each term (a ``float64``
quotient) as the integer ``term * 2**92`` into a 128-bit accumulator, which is exact for every term of a
database under :math:`2^{39}` items, and rounds the exact total to ``float64`` once. Integer sums do not
depend on the order or grouping of their terms, which is what makes sharded evaluation exact.

Sharded evaluation (`evaluate_sharded`). Histograms add across database shards taken in index order, and
the stable rank of an item is (items at smaller distance in the whole database) + (items at its distance
in earlier shards) + (its position in its bucket inside its shard); the same holds for its rank among the
relevant items. A first pass over the shards gathers their histograms; a second gives each shard those
integer offsets, so each shard computes the exact global ranks of its relevant items and its exact part
of every query's sum. The result equals `evaluate` on the concatenated database bit for bit.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic
from numba.np.unsafe.ndarray import to_fixed_tuple

__all__ = ["average_precision_at_k", "evaluate", "evaluate_sharded", "hamming_distances", "pr_curve_by_radius",
           "pr_curve_by_radius_sharded", "precision_at_n", "precision_at_n_sharded", "top_k"]

# A relevant item is recorded as (position in its bucket << _DIST_BITS) | distance in one int64.
_DIST_BITS = 16
_MAX_CODE_BYTES = ((1 << _DIST_BITS) - 1) // 8
# Queries scanned together in one pass over the database: eight while their words fit in registers.
_GROUP = 8
_GROUP_WIDE = 4
_GROUP_MAX_WORDS = 2
# Database items between two updates of a query's pruning radius (see `_scan_kernel`).
_BOUND_EVERY = 4096
# Terms of the last cut summed per chunk, so that each query's records are read once (see `_finish_query`).
_TERM_CHUNK = 2048
# Exact sums: each term in (0, 1] is added as the integer term * 2**92 to a 128-bit accumulator; for
# terms of at least 2**-39 (ranks below 2**39) the scaled float64 is an integer, so no bit is lost. A
# query's sum at a cut has at most N terms of at most 2**92, so it stays below 2**128 for N below 2**36
# (about 6.9e10 items): the database limit.
_FIXED_POINT_BITS = 92
_MAX_DB_ITEMS = 1 << 36
# Harmonic gaps are summed term by term below this index and from the asymptotic series above it.
_HARMONIC_DIRECT = 64


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------
def evaluate(query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray,
             db_labels: np.ndarray, *, topk: int = 1000, map_all: bool = True) -> dict[str, float]:
    """Score a Hamming ranking: mAP@K, mAP@all, tie-aware mAP, P@K and precision/recall within radius 2.

    With :math:`K = \\min(\\mathrm{topk}, N)` for a database of :math:`N` codes, per query:

    * ``map_at_{topk}``: AP@K of the stable ranking (see the module docstring); the key keeps the
      requested ``topk`` even when the database is smaller.
    * ``map_all``: AP@N of the stable ranking.
    * ``map_tie_aware``: :math:`\\mathbb{E}[\\mathrm{AP@}N]` over random orders within equal distances;
      0 for a query with no relevant item.
    * ``precision_at_{topk}``: :math:`R_K / K`.
    * ``precision_r2``: relevant / retrieved within Hamming distance 2, 0 when nothing is retrieved.
    * ``recall_r2``: relevant within distance 2 / all relevant, 0 when nothing is relevant.

    Every value is the mean over all queries, queries without relevant items included.

    Args:
        query_codes: ``uint8`` ``(Q, n_bytes)`` packed codes.
        db_codes: ``uint8`` ``(N, n_bytes)`` packed codes of the same width.
        query_labels: ``(Q,)`` integer class ids or ``(Q, C)`` multi-hot 0/1.
        db_labels: ``(N,)`` or ``(N, C)``, the same kind as ``query_labels``.
        topk: the cut :math:`K` of mAP@K and P@K.
        map_all: also compute ``map_all``, which needs the rank of every relevant item: the pass keeps
            one record per relevant item, so its memory and time grow with the database. ``False``
            returns the other five metrics, equal to the last bit, and records only the items that can
            still reach the top :math:`K` (1.7x faster at 1,000 x 10,000,000 64-bit codes, README).

    Returns:
        A dict of float metrics whose keys are valid MLflow metric names.

    Raises:
        ValueError: codes that are not packed ``uint8`` of one width, labels of the wrong shape or kind,
            ``topk`` not a positive integer, ``map_all`` not a bool.
    """
    topk = _check_positive_int(topk, "topk")
    map_all = _check_bool(map_all, "map_all")
    data = _prepare(query_codes, db_codes, query_labels, db_labels)
    k = min(topk, data.n_db)
    return _metrics(_scan(data, _cuts(k, data.n_db, map_all)), topk, k)


def evaluate_sharded(query_codes: np.ndarray, query_labels: np.ndarray,
                     shards: Sequence[tuple[np.ndarray | str | os.PathLike, np.ndarray]], *, topk: int = 1000,
                     map_fn: Callable[[Callable[[Any], Any], list], Iterable[Any]] | None = None,
                     map_all: bool = True) -> dict[str, float]:
    """`evaluate` over a database given as shards in index order, equal to one pass bit for bit.

    The database is the concatenation of the shards in the order given (so the stable tie-break by
    database index runs across shards). Each shard is scanned twice: once for its distance histograms,
    once with the integer rank offsets that the histograms of all shards give it (see the module
    docstring); every sum is exact, so the returned dict is ``==`` to
    ``evaluate(query_codes, concatenated_codes, query_labels, concatenated_labels, topk=topk)``.
    The shard work (two calls per shard) goes through ``map_fn``: the built-in ``map`` (sequential) by
    default, or any function with the same contract, e.g. one that runs each call as a Ray task and
    returns the results in order. Work items are picklable and hold the query codes, the shard's labels
    and its codes (a path travels as the path and is memory-mapped where it runs).

    Args:
        query_codes: ``uint8`` ``(Q, n_bytes)`` packed codes.
        query_labels: ``(Q,)`` integer class ids or ``(Q, C)`` multi-hot 0/1.
        shards: non-empty sequence of ``(codes, labels)``; codes ``uint8`` ``(N_s, n_bytes)`` (an
            ``np.memmap`` or ``np.load(..., mmap_mode="r")`` array is read without a copy when
            ``n_bytes`` is a multiple of 8) or the path of such a ``.npy`` file; labels ``(N_s,)`` or
            ``(N_s, C)``, the same kind as ``query_labels``.
        topk: the cut :math:`K` of mAP@K and P@K, with :math:`K = \\min(\\mathrm{topk}, \\sum_s N_s)`.
        map_fn: ``map_fn(function, items)`` returning ``[function(item) for item in items]`` in order.
        map_all: as in `evaluate`.

    Returns:
        The dict of `evaluate`.

    Raises:
        ValueError: empty ``shards``, a shard that is not a ``(codes, labels)`` pair, or any input error
            of `evaluate` (named after the shard), or ``map_fn`` returning the wrong number of results.
    """
    topk = _check_positive_int(topk, "topk")
    map_all = _check_bool(map_all, "map_all")
    query, tasks = _prepare_shards(query_codes, query_labels, shards)
    n_db = sum(task.n_items for task in tasks)
    k = min(topk, n_db)
    scan = _scan_shards(query, tasks, _cuts(k, n_db, map_all), map_fn)
    return _metrics(scan, topk, k)


def _cuts(k: int, n_db: int, map_all: bool) -> np.ndarray:
    return np.array([k, n_db] if map_all else [k], dtype=np.int64)


def _metrics(scan: "_Scan", topk: int, k: int) -> dict[str, float]:
    """The metrics of `evaluate`; ``map_all`` when the scan had the whole database as its second cut."""
    rel_k = scan.rel_at_cut[:, 0]
    rel_all = scan.rel_hist.sum(axis=1)
    within2 = np.minimum(2, scan.hist.shape[1] - 1)
    retrieved_r2 = scan.hist[:, : within2 + 1].sum(axis=1)
    relevant_r2 = scan.rel_hist[:, : within2 + 1].sum(axis=1)
    everything = {"map_all": _mean_ratio(scan.prec_sum_at_cut[:, 1], rel_all)} if scan.rel_at_cut.shape[1] > 1 else {}
    return {
        f"map_at_{topk}": _mean_ratio(scan.prec_sum_at_cut[:, 0], rel_k),
        **everything,
        "map_tie_aware": float(np.mean(_tie_aware_ap(scan.hist, scan.rel_hist))),
        f"precision_at_{topk}": float(np.mean(rel_k / k)),
        "precision_r2": _mean_ratio(relevant_r2, retrieved_r2),
        "recall_r2": _mean_ratio(relevant_r2, rel_all),
    }


def pr_curve_by_radius(query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray,
                       db_labels: np.ndarray, *, n_bits: int | None = None) -> dict[str, np.ndarray]:
    """Mean precision and recall of Hamming-ball retrieval for every radius :math:`r = 0 .. n_{bits}`.

    Per query, the ball of radius :math:`r` retrieves :math:`N_{\\le r}` items of which
    :math:`R_{\\le r}` are relevant; precision is :math:`R_{\\le r} / N_{\\le r}` (0 for an empty ball)
    and recall :math:`R_{\\le r} / R` (0 when nothing is relevant), each averaged over all queries.

    Args:
        query_codes, db_codes, query_labels, db_labels: as in `evaluate`.
        n_bits: the code length; defaults to ``8 * n_bytes`` (larger radii repeat the last row).

    Returns:
        ``{"radius": int64 (n_bits + 1,), "precision": float64, "recall": float64}``, columns of a table.
    """
    data = _prepare(query_codes, db_codes, query_labels, db_labels)
    n_bits = _check_curve_bits(n_bits, data.n_bytes)
    return _pr_curve(_scan(data, np.zeros(0, dtype=np.int64)), n_bits)


def pr_curve_by_radius_sharded(query_codes: np.ndarray, query_labels: np.ndarray, shards: Sequence[tuple[Any, Any]],
                               *, n_bits: int | None = None, map_fn: Callable[..., Iterable[Any]] | None = None
                               ) -> dict[str, np.ndarray]:
    """`pr_curve_by_radius` over a database given as shards (as in `evaluate_sharded`), equal to it bit for
    bit; histograms only, so each shard is scanned once."""
    query, tasks = _prepare_shards(query_codes, query_labels, shards)
    n_bits = _check_curve_bits(n_bits, query.n_bytes)
    return _pr_curve(_scan_shards(query, tasks, np.zeros(0, dtype=np.int64), map_fn), n_bits)


def _check_curve_bits(n_bits: Any, n_bytes: int) -> int:
    max_bits = 8 * n_bytes
    n_bits = max_bits if n_bits is None else _check_positive_int(n_bits, "n_bits")
    if n_bits > max_bits:
        raise ValueError(f"n_bits={n_bits} exceeds the {max_bits} bits that codes of {n_bytes} bytes hold")
    return n_bits


def _pr_curve(scan: "_Scan", n_bits: int) -> dict[str, np.ndarray]:
    retrieved = np.cumsum(scan.hist, axis=1)[:, : n_bits + 1]
    relevant = np.cumsum(scan.rel_hist, axis=1)[:, : n_bits + 1]
    total = scan.rel_hist.sum(axis=1, keepdims=True)
    return {
        "radius": np.arange(n_bits + 1, dtype=np.int64),
        "precision": _safe_ratio(relevant, retrieved).mean(axis=0),
        "recall": _safe_ratio(relevant, np.broadcast_to(total, relevant.shape)).mean(axis=0),
    }


def precision_at_n(query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray,
                   db_labels: np.ndarray, *, ns: Iterable[int] = tuple(range(100, 1001, 100))
                   ) -> dict[str, np.ndarray]:
    """Mean precision of the first :math:`n` items of the stable ranking, for each :math:`n` in ``ns``.

    :math:`P@n = R_{n'} / n'` with :math:`n' = \\min(n, N)`, averaged over all queries.

    Returns:
        ``{"n": int64 (len(ns),), "precision": float64 (len(ns),)}`` in the order of ``ns``.
    """
    ns = _check_list_lengths(ns)
    data = _prepare(query_codes, db_codes, query_labels, db_labels)
    cuts = np.unique(np.minimum(ns, data.n_db))
    return _precision_at(_scan(data, cuts), ns, cuts, data.n_db)


def precision_at_n_sharded(query_codes: np.ndarray, query_labels: np.ndarray, shards: Sequence[tuple[Any, Any]], *,
                           ns: Iterable[int] = tuple(range(100, 1001, 100)),
                           map_fn: Callable[..., Iterable[Any]] | None = None) -> dict[str, np.ndarray]:
    """`precision_at_n` over a database given as shards (as in `evaluate_sharded`), equal to it bit for bit."""
    ns = _check_list_lengths(ns)
    query, tasks = _prepare_shards(query_codes, query_labels, shards)
    n_db = sum(task.n_items for task in tasks)
    cuts = np.unique(np.minimum(ns, n_db))
    return _precision_at(_scan_shards(query, tasks, cuts, map_fn), ns, cuts, n_db)


def _check_list_lengths(ns: Iterable[int]) -> np.ndarray:
    ns = np.array([_check_positive_int(n, "each of ns") for n in ns], dtype=np.int64)
    if ns.size == 0:
        raise ValueError("ns is empty: give at least one list length n")
    return ns


def _precision_at(scan: "_Scan", ns: np.ndarray, cuts: np.ndarray, n_db: int) -> dict[str, np.ndarray]:
    mean_precision = (scan.rel_at_cut / cuts).mean(axis=0)
    return {"n": ns, "precision": mean_precision[np.searchsorted(cuts, np.minimum(ns, n_db))]}


def average_precision_at_k(query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray,
                           db_labels: np.ndarray, *, topk: int = 1000) -> np.ndarray:
    """AP@K of every query (the per-query values whose mean is ``map_at_{topk}`` of `evaluate`).

    With :math:`K = \\min(\\mathrm{topk}, N)`; 0 for a query without a relevant item in its top K.
    Paired tests between two methods compare these values query by query.

    Returns:
        ``float64`` ``(Q,)`` in the order of ``query_codes``.
    """
    topk = _check_positive_int(topk, "topk")
    data = _prepare(query_codes, db_codes, query_labels, db_labels)
    scan = _scan(data, np.array([min(topk, data.n_db)], dtype=np.int64))
    return _safe_ratio(scan.prec_sum_at_cut[:, 0], scan.rel_at_cut[:, 0].astype(np.float64))


def top_k(query_codes: np.ndarray, db_codes: np.ndarray, *, k: int = 10) -> np.ndarray:
    """The first ``k`` database positions of each query's stable Hamming ranking (ascending distance,
    ties by ascending database index), as `evaluate` ranks them.

    Builds the ``(Q, N)`` distance matrix: meant for a few queries (retrieval examples).

    Returns:
        ``int64`` ``(Q, min(k, N))`` database positions.
    """
    k = _check_positive_int(k, "k")
    distances = hamming_distances(query_codes, db_codes)
    order = np.argsort(distances, axis=1, kind="stable")
    return order[:, : min(k, distances.shape[1])].astype(np.int64)


def hamming_distances(query_codes: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
    """All Hamming distances :math:`D_{ij} = \\mathrm{popcount}(q_i \\oplus x_j)` as a ``(Q, N)`` matrix.

    Returns ``uint8`` when codes have at most 255 bits, else ``uint16``. Meant for small inputs and
    tests; the metrics never build this matrix.
    """
    q = _code_words(query_codes, "query_codes")
    db = _code_words(db_codes, "db_codes")
    _check_same_width(query_codes, db_codes)
    dtype = np.uint8 if 8 * query_codes.shape[1] <= 255 else np.uint16
    out = np.empty((q.shape[0], db.shape[0]), dtype=dtype)
    _distance_kernel(q.shape[1])(q, db, out)
    return out


# --------------------------------------------------------------------------------------------------
# Input checks and packing into 64-bit words
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Data:
    """Validated inputs: codes and labels as C-contiguous ``uint64`` words."""

    q_words: np.ndarray
    db_words: np.ndarray
    q_labels: np.ndarray
    db_labels: np.ndarray
    single_label: bool
    n_bytes: int

    @property
    def n_db(self) -> int:
        return self.db_words.shape[0]


def _prepare(query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, *,
             db_names: tuple[str, str] = ("db_codes", "db_labels"), db_words: bool = True) -> _Data:
    """Validate and pack; ``db_names`` name the database side in errors, ``db_words=False`` only checks
    the database codes (``_Data.db_words`` is then the unconverted array)."""
    codes_name, labels_name = db_names
    q_words = _code_words(query_codes, "query_codes")
    db_converted = _code_words(db_codes, codes_name, convert=db_words)
    _check_same_width(query_codes, db_codes, codes_name)
    q_lab, db_lab = np.asarray(query_labels), np.asarray(db_labels)
    for lab, codes, name, c_name in ((q_lab, query_codes, "query_labels", "query_codes"),
                                     (db_lab, db_codes, labels_name, codes_name)):
        if lab.ndim not in (1, 2):
            raise ValueError(f"{name} must be 1-D class ids or 2-D multi-hot rows, got shape {lab.shape}")
        if lab.shape[0] != codes.shape[0]:
            raise ValueError(f"{name} has {lab.shape[0]} rows but {c_name} has {codes.shape[0]}: "
                             "give one label row per code")
    if q_lab.ndim != db_lab.ndim:
        kinds = {1: "1-D class ids", 2: "2-D multi-hot"}
        raise ValueError(f"label kinds differ: query_labels are {kinds[q_lab.ndim]}, {labels_name} are "
                         f"{kinds[db_lab.ndim]}; give both the same kind")
    single = q_lab.ndim == 1
    if single:
        q_lab_words = _class_words(q_lab, "query_labels")
        db_lab_words = _class_words(db_lab, labels_name)
    else:
        if q_lab.shape[1] != db_lab.shape[1]:
            raise ValueError(f"query_labels have {q_lab.shape[1]} label columns but {labels_name} have "
                             f"{db_lab.shape[1]}; both must use the same label vocabulary")
        q_lab_words = _multi_hot_words(q_lab, "query_labels")
        db_lab_words = _multi_hot_words(db_lab, labels_name)
    return _Data(q_words, db_converted, q_lab_words, db_lab_words, single, int(np.shape(query_codes)[1]))


def _code_words(codes: Any, name: str, *, convert: bool = True) -> np.ndarray:
    if not isinstance(codes, np.ndarray):
        raise ValueError(f"{name} must be a numpy array of packed uint8 codes, got {type(codes).__name__}")
    if codes.dtype != np.uint8:
        raise ValueError(f"{name} must be packed uint8 codes (np.packbits(bits, axis=1, bitorder='little')), "
                         f"got dtype {codes.dtype}")
    if codes.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_items, n_bytes), got shape {codes.shape}")
    n, n_bytes = codes.shape
    if n == 0 or n_bytes == 0:
        raise ValueError(f"{name} is empty (shape {codes.shape})")
    if n_bytes > _MAX_CODE_BYTES:
        raise ValueError(f"{name} has {8 * n_bytes} bits per code; at most {8 * _MAX_CODE_BYTES} are supported")
    if not convert:
        return codes
    if n_bytes % 8 == 0 and codes.flags.c_contiguous and codes.ctypes.data % 8 == 0:
        # Whole words already: a view, so a memory-mapped database is read in place, never copied.
        return np.asarray(codes).view(np.uint64)
    n_words = -(-n_bytes // 8)
    padded = np.zeros((n, 8 * n_words), dtype=np.uint8)
    padded[:, :n_bytes] = codes
    return padded.view(np.uint64)


def _check_same_width(query_codes: np.ndarray, db_codes: np.ndarray, db_name: str = "db_codes") -> None:
    if query_codes.shape[1] != db_codes.shape[1]:
        raise ValueError(f"query_codes are {query_codes.shape[1]} bytes wide but {db_name} are {db_codes.shape[1]} "
                         "bytes wide; encode both with the same number of bits")


def _class_words(labels: np.ndarray, name: str) -> np.ndarray:
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{name} are 1-D, so they must be integer class ids; got dtype {labels.dtype}")
    if labels.dtype.kind == "u" and labels.size and labels.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has class ids that do not fit in int64")
    return np.ascontiguousarray(labels.astype(np.int64).view(np.uint64).reshape(-1, 1))


def _multi_hot_words(labels: np.ndarray, name: str) -> np.ndarray:
    if labels.dtype != np.bool_:
        if labels.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be multi-hot 0/1 numbers, got dtype {labels.dtype}")
        bad = np.count_nonzero((labels != 0) & (labels != 1))
        if bad:
            raise ValueError(f"{name} must be multi-hot 0/1, but {bad} entries are neither 0 nor 1 (NaN included)")
    n, n_labels = labels.shape
    n_words = max(1, -(-n_labels // 64))
    packed = np.zeros((n, 8 * n_words), dtype=np.uint8)
    packed[:, : -(-n_labels // 8)] = np.packbits(labels != 0, axis=1, bitorder="little")
    return packed.view(np.uint64)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# The shared pass and the formulas on its histograms
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Scan:
    """Per query: distance histograms and stable-ranking sums at the requested cuts.

    ``hist[i, d]`` items and ``rel_hist[i, d]`` relevant items at distance ``d``; for each cut
    :math:`K_c`, ``rel_at_cut[i, c]`` is :math:`R_{K_c}` and ``prec_sum_at_cut[i, c]`` is
    :math:`\\sum_{k \\le K_c} P(k)\\,\\mathrm{rel}(k)`.
    """

    hist: np.ndarray
    rel_hist: np.ndarray
    rel_at_cut: np.ndarray
    prec_sum_at_cut: np.ndarray


def _scan(data: _Data, cuts: np.ndarray) -> _Scan:
    """Run the compiled pass; ``cuts`` must be sorted ascending (duplicates allowed)."""
    _check_database_size(data.n_db)
    hist, rel_hist, rel_at_cut, acc = _rank_pass(data.q_words, data.q_labels, data.single_label, data.db_words,
                                                 data.db_labels, cuts, None, None)
    return _Scan(hist, rel_hist, np.cumsum(rel_at_cut, axis=1), _exact_cumsum_to_float(acc))


def _check_database_size(n_db: int) -> None:
    if n_db >= _MAX_DB_ITEMS:
        raise ValueError(f"the database has {n_db} items; exact sums support fewer than {_MAX_DB_ITEMS}")


def _query_groups(q_labels: np.ndarray, single_label: bool, group: int) -> tuple[np.ndarray, int]:
    """Order in which the kernel scans the queries, in groups of ``group`` slots, and how many leading
    slots form uniform groups.

    With class ids, queries of one class are relevant to the same items, so full groups of one class
    share one relevance test and one record counter (`_scan_kernel`, `_class_scan_kernel`). A class's
    remainder of at least ``group // 2`` queries fills one more group of its own, padded by repeating its
    last query: a slot of a mixed group costs 2.0-2.4x a slot of a one-class group (1,000,000 codes,
    64 bits, measured with and without ``map_all``), so such a padded group is the cheaper home. The
    other remainders (and all multi-hot queries) fill mixed groups, the last padded by repeating its last
    query. Padding slots are dropped after the scan. Returns the query index of every slot and the number
    of uniform slots.
    """
    n_query = q_labels.shape[0]
    uniform: list[np.ndarray] = []
    rest: list[np.ndarray] = [np.arange(n_query)]
    if single_label:
        order = np.argsort(q_labels[:, 0].view(np.int64), kind="stable")
        _, starts = np.unique(q_labels[order, 0].view(np.int64), return_index=True)
        rest = []
        for members in np.split(order, starts[1:]):
            left = members.size % group
            if left >= group // 2:
                uniform.append(np.concatenate([members, np.repeat(members[-1:], group - left)]))
            else:
                uniform.append(members[:members.size - left])
                rest.append(members[members.size - left:])
    rest_slots = np.concatenate(rest) if rest else np.zeros(0, dtype=np.int64)
    if rest_slots.size % group:
        rest_slots = np.concatenate([rest_slots, np.repeat(rest_slots[-1:], -rest_slots.size % group)])
    n_uniform = int(sum(u.size for u in uniform))
    return np.concatenate(uniform + [rest_slots]).astype(np.int64), n_uniform


def _record_slots(q_labels: np.ndarray, db_labels: np.ndarray, single_label: bool) -> int:
    """Record buffer length per query: at most (relevant items + 1) are written (see the scan kernel)."""
    n_db = db_labels.shape[0]
    if q_labels.shape[0] == 0:
        return 1
    if not single_label:
        return n_db
    q_ids, db_ids = q_labels[:, 0].view(np.int64), db_labels[:, 0].view(np.int64)
    if db_ids.min() >= 0 and db_ids.max() < 1 << 20:
        counts = np.bincount(db_ids)
        relevant = np.where((q_ids >= 0) & (q_ids < counts.size), counts[np.clip(q_ids, 0, counts.size - 1)], 0)
    else:
        classes, counts = np.unique(db_ids, return_counts=True)
        at = np.minimum(np.searchsorted(classes, q_ids), classes.size - 1)
        relevant = np.where(classes[at] == q_ids, counts[at], 0)
    return int(min(n_db, relevant.max() + 1))


def _rank_pass(q_words: np.ndarray, q_labels: np.ndarray, single_label: bool, db_words: np.ndarray,
               db_labels: np.ndarray, cuts: np.ndarray, off_all: np.ndarray | None, off_rel: np.ndarray | None,
               reach: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One scan of a database (or shard): histograms, relevant counts per cut and exact sums per cut.

    Without offsets the ranks are those inside this database. With them (``int64`` ``(Q, n_buckets)``,
    see `_scan_shards`), an item at distance ``d`` in bucket position ``p`` has rank ``off_all[d] + p``
    and its relevant rank continues from ``off_rel[d]``; ``reach`` (``(Q,)``, with the offsets) is each
    query's largest distance to an item of this shard, so that a pruning radius beyond it, where no
    item lies, does not count as pruning. Returns ``hist``, ``rel_hist`` ``(Q, n_buckets)``,
    ``rel_at_cut`` ``(Q, C)`` (each relevant item counted under the first cut at or above its rank) and
    ``acc`` ``uint64`` ``(Q, C, 2)`` (high and low words of 128-bit sums of ``term * 2**92``).
    """
    n_query, n_words = q_words.shape
    n_buckets = 64 * n_words + 1
    group = _group_size(n_words)
    slots, n_uniform = _query_groups(q_labels, single_label, group)
    n_slots = slots.size
    given = off_all is not None
    if given:
        off_all, off_rel = np.ascontiguousarray(off_all[slots]), np.ascontiguousarray(off_rel[slots])
    else:
        off_all = off_rel = np.zeros((n_slots, n_buckets), dtype=np.int64)
    hist = np.zeros((n_slots, n_buckets), dtype=np.int64)
    rel_hist = np.zeros((n_slots, n_buckets), dtype=np.int64)
    rel_at_cut = np.zeros((n_slots, cuts.size), dtype=np.int64)
    acc = np.zeros((n_slots, cuts.size, 2), dtype=np.uint64)
    # Work buffers come from numpy rather than from inside the kernel so that tracemalloc sees them:
    # per query of a group, each relevant item's position in its bucket among all items (with its
    # distance) and among the relevant items.
    # The pruning radius of each query: items farther away cannot reach the last cut, so they are not
    # recorded. Given offsets (a shard), it is the largest distance whose items can still rank within
    # the cut in the whole database; in one pass it starts at the largest distance and the kernel
    # narrows it as the histogram fills.
    adapt = False
    bound = np.full(n_slots, n_buckets - 1, dtype=np.int64)
    if cuts.size and given:
        bound = np.count_nonzero(off_all < cuts[-1], axis=1) - 1
    elif cuts.size and cuts[-1] < db_words.shape[0]:
        adapt = True
    rows = _record_slots(q_labels, db_labels, single_label)
    positions = np.empty((group, rows), dtype=np.int64)
    rel_positions = np.empty((group, rows), dtype=np.uint32 if db_words.shape[0] < 1 << 32 else np.int64)
    before = np.empty(n_buckets, dtype=np.int64)
    rel_before = np.empty(n_buckets, dtype=np.int64)
    terms = np.empty((2, _TERM_CHUNK), dtype=np.int64)
    # A pass with nothing to prune (the whole database as the last cut) runs without the radius tests,
    # in `_scan_kernel` (with every relevant item recorded it beat the class lists: 0.95 against 1.46 s
    # at 1,000 x 1,000,000); a shard's radius below the largest distance but beyond its farthest item
    # prunes nothing either.
    reach = np.full(n_slots, n_buckets - 1) if reach is None else reach[slots]
    prune = adapt or bool((bound < reach).any())
    cuts = np.ascontiguousarray(cuts, dtype=np.int64)
    q_flat = np.ascontiguousarray(q_words[slots]).ravel()
    db_flat = db_words.reshape(-1)
    # With pruning, one-class groups take the class-list pass (`_class_scan_kernel`; with map_all every
    # relevant item is recorded and `_scan_kernel`'s branch measured faster); the others `_scan_kernel`.
    split = n_uniform if prune else 0
    u = split * n_words
    if split:
        items, item_start, item_stop = _class_items(q_labels[slots[:split:group], 0].copy(), db_labels)
        _class_scan_kernel(n_words, True)(
            q_flat[:u], db_flat, items, item_start, item_stop, cuts, off_all[:split], off_rel[:split], given,
            hist[:split], rel_hist[:split], rel_at_cut[:split], acc[:split], positions, rel_positions, before,
            rel_before, terms, bound[:split], adapt, np.empty((group * _BOUND_EVERY, 3), dtype=np.int64))
    if split < n_slots:
        _scan_kernel(n_words, q_labels.shape[1], single_label, True, prune)(
            q_flat[u:], db_flat, np.ascontiguousarray(q_labels[slots[split:]]).ravel(), db_labels.reshape(-1),
            n_uniform - split, cuts, off_all[split:], off_rel[split:], given, hist[split:], rel_hist[split:],
            rel_at_cut[split:], acc[split:], positions, rel_positions, before, rel_before, terms, bound[split:], adapt)
    # Padding slots repeat a query already scanned; the first slot of each query is kept.
    first = np.unique(slots, return_index=True)[1]
    back = first[np.argsort(slots[first])]
    return hist[back], rel_hist[back], rel_at_cut[back], acc[back]


def _histogram_pass(q_words: np.ndarray, q_labels: np.ndarray, single_label: bool, db_words: np.ndarray,
                    db_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance histograms of all items and of the relevant items, ``int64`` ``(Q, n_buckets)`` each."""
    n_query, n_words = q_words.shape
    group = _group_size(n_words)
    slots, n_uniform = _query_groups(q_labels, single_label, group)
    n_buckets = 64 * n_words + 1
    hist = np.zeros((slots.size, n_buckets), dtype=np.int64)
    rel_hist = np.zeros_like(hist)
    unused = np.zeros((1, 1), dtype=np.int64)
    no_cuts = np.zeros(0, np.int64)
    no_acc = np.zeros((1, 1, 2), dtype=np.uint64)
    q_flat = np.ascontiguousarray(q_words[slots]).ravel()
    db_flat = db_words.reshape(-1)
    u = n_uniform * n_words
    if n_uniform:
        items, item_start, item_stop = _class_items(q_labels[slots[:n_uniform:group], 0].copy(), db_labels)
        _class_scan_kernel(n_words, False)(
            q_flat[:u], db_flat, items, item_start, item_stop, no_cuts, unused, unused, False, hist[:n_uniform],
            rel_hist[:n_uniform], unused, no_acc, unused, unused, unused[0], unused[0], unused,
            np.full(n_uniform, n_buckets - 1, dtype=np.int64), False, np.empty((1, 3), dtype=np.int64))
    if n_uniform < slots.size:
        _scan_kernel(n_words, q_labels.shape[1], single_label, False)(
            q_flat[u:], db_flat, np.ascontiguousarray(q_labels[slots[n_uniform:]]).ravel(), db_labels.reshape(-1),
            0, no_cuts, unused, unused, False, hist[n_uniform:], rel_hist[n_uniform:], unused, no_acc, unused,
            unused, unused[0], unused[0], unused, unused[0], False)
    first = np.unique(slots, return_index=True)[1]
    back = first[np.argsort(slots[first])]
    return hist[back], rel_hist[back]


def _class_items(group_labels: np.ndarray, db_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The database items of each one-class group's class: ``items[start[k]:stop[k]]`` are the ascending
    indices (``uint32``, or ``uint64`` from 2**32 items) of the items whose class id is ``group_labels[k]``
    (class-id words, ``uint64`` ``(G,)``; ``db_labels`` ``uint64`` ``(N, 1)``)."""
    db_ids = db_labels[:, 0].view(np.int64)
    low = int(db_ids.min()) if db_ids.size else 0
    span = int(db_ids.max()) - low if db_ids.size else 0
    # A stable argsort of 16-bit keys is a radix sort (8x faster than that of int64 keys at 10,000,000).
    keys = (db_ids - low).astype(np.int16) if span < 1 << 15 else db_ids
    # Unsigned, so that indexing with them needs no negative-index test.
    items = np.argsort(keys, kind="stable").astype(np.uint32 if db_ids.size < 1 << 32 else np.uint64)
    ordered = db_ids[items]
    group_ids = group_labels.view(np.int64)
    return items, np.searchsorted(ordered, group_ids, "left"), np.searchsorted(ordered, group_ids, "right")


def _group_size(n_words: int) -> int:
    """Queries per pass of the scan for codes of ``n_words`` words (see `_scan_kernel`)."""
    return _GROUP if n_words <= _GROUP_MAX_WORDS else _GROUP_WIDE


def _add_exact(acc: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Sum of two arrays of 128-bit integers stored as ``uint64`` (high, low) pairs in the last axis."""
    low = acc[..., 1] + other[..., 1]                       # wraps modulo 2**64
    carry = (low < acc[..., 1]).astype(np.uint64)
    return np.stack([acc[..., 0] + other[..., 0] + carry, low], axis=-1)


def _exact_cumsum_to_float(acc: np.ndarray) -> np.ndarray:
    """``float64`` ``(Q, C)``: the running sums over cuts of ``acc`` (``(Q, C, 2)`` 128-bit integers scaled
    by ``2**92``), each rounded once (Python's int-to-float conversion rounds to nearest)."""
    out = np.empty(acc.shape[:2])
    for i, row in enumerate(acc.tolist()):
        total = 0
        for c, (high, low) in enumerate(row):
            total += (high << 64) | low
            out[i, c] = math.ldexp(float(total), -_FIXED_POINT_BITS)
    return out


# --------------------------------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ShardTask:
    """One shard's work item, picklable: the queries, the shard (codes as an array or a ``.npy`` path)
    and, for the second pass, its rank offsets and each query's largest distance to an item of the shard."""

    q_words: np.ndarray
    q_labels: np.ndarray
    single_label: bool
    codes: Any
    db_labels: np.ndarray
    cuts: np.ndarray | None = None
    off_all: np.ndarray | None = None
    off_rel: np.ndarray | None = None
    reach: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return self.db_labels.shape[0]

    def db_words(self) -> np.ndarray:
        codes = self.codes if isinstance(self.codes, np.ndarray) else np.load(self.codes, mmap_mode="r")
        return _code_words(codes, "shard codes")


def _shard_histograms(task: _ShardTask) -> tuple[np.ndarray, np.ndarray]:
    return _histogram_pass(task.q_words, task.q_labels, task.single_label, task.db_words(), task.db_labels)


def _shard_ranks(task: _ShardTask) -> tuple[np.ndarray, np.ndarray]:
    _, _, rel_at_cut, acc = _rank_pass(task.q_words, task.q_labels, task.single_label, task.db_words(),
                                       task.db_labels, task.cuts, task.off_all, task.off_rel, task.reach)
    return rel_at_cut, acc


def _prepare_shards(query_codes: Any, query_labels: Any, shards: Any) -> tuple[_Data, list[_ShardTask]]:
    if isinstance(shards, (np.ndarray, str, os.PathLike)) or not isinstance(shards, Sequence) or not shards:
        raise ValueError("shards must be a non-empty sequence of (codes, labels) pairs in database order")
    query = None
    tasks = []
    for i, shard in enumerate(shards):
        if not isinstance(shard, (tuple, list)) or len(shard) != 2:
            raise ValueError(f"shards[{i}] must be a (codes, labels) pair, got {type(shard).__name__}")
        codes, labels = shard
        opened = np.load(codes, mmap_mode="r") if isinstance(codes, (str, os.PathLike)) else codes
        data = _prepare(query_codes, opened, query_labels, labels,
                        db_names=(f"shards[{i}] codes", f"shards[{i}] labels"), db_words=False)
        query = query or data
        tasks.append(_ShardTask(query.q_words, query.q_labels, data.single_label, codes, data.db_labels))
    _check_database_size(sum(task.n_items for task in tasks))
    return query, tasks


def _scan_shards(query: _Data, tasks: list[_ShardTask], cuts: np.ndarray, map_fn: Any) -> _Scan:
    """Two passes over the shards (histograms, then ranks with integer offsets); the same `_Scan` as one
    pass over the concatenated database, bit for bit."""
    map_fn = map if map_fn is None else map_fn

    def run(function: Callable[[_ShardTask], Any], items: list[_ShardTask]) -> list[Any]:
        results = list(map_fn(function, items))
        if len(results) != len(items):
            raise ValueError(f"map_fn returned {len(results)} results for {len(items)} shards")
        return results

    hists = run(_shard_histograms, tasks)
    hist = np.sum([h for h, _ in hists], axis=0)
    rel_hist = np.sum([r for _, r in hists], axis=0)
    # Items (relevant items) at smaller distances in the whole database, then those at the same
    # distance in earlier shards: exact integers.
    off_all = np.cumsum(hist, axis=1) - hist
    off_rel = np.cumsum(rel_hist, axis=1) - rel_hist
    second = []
    for task, (h, r) in zip(tasks, hists):
        # Each query's farthest item in this shard (the largest distance for an empty shard).
        reach = h.shape[1] - 1 - np.argmax(h[:, ::-1] > 0, axis=1)
        second.append(_ShardTask(task.q_words, task.q_labels, task.single_label, task.codes, task.db_labels,
                                 cuts, off_all.copy(), off_rel.copy(), reach))
        off_all += h
        off_rel += r
    if cuts.size == 0:                                    # histograms are all the radius curve needs
        empty = np.zeros((hist.shape[0], 0), dtype=np.int64)
        return _Scan(hist, rel_hist, empty, empty.astype(np.float64))
    ranks = run(_shard_ranks, second)
    rel_at_cut = np.sum([c for c, _ in ranks], axis=0)
    acc = functools.reduce(_add_exact, [a for _, a in ranks])
    return _Scan(hist, rel_hist, np.cumsum(rel_at_cut, axis=1), _exact_cumsum_to_float(acc))


def _tie_aware_ap(hist: np.ndarray, rel_hist: np.ndarray) -> np.ndarray:
    """Expected AP@all per query when each group of equal distance is in uniformly random order.

    For bucket :math:`d` with :math:`n_d` items of which :math:`r_d` are relevant, after
    :math:`N_{<d}` items of which :math:`R_{<d}` are relevant, a relevant item at a uniform position
    :math:`p` has :math:`(p - 1) f_d` relevant items before it inside the bucket on average,
    :math:`f_d = (r_d - 1) / (n_d - 1)`. Averaging :math:`(R_{<d} + 1 + (p - 1) f_d) / (N_{<d} + p)`
    over :math:`p` gives the bucket's expected contribution

    .. math::
        E_d = \\frac{r_d}{n_d}\\Big[(R_{<d} + 1)\\,h_d + f_d\\,\\big(n_d - (N_{<d} + 1)\\,h_d\\big)\\Big],
        \\qquad h_d = H_{N_{<d} + n_d} - H_{N_{<d}},

    and :math:`\\mathrm{AP} = \\sum_d E_d / R` (0 when :math:`R = 0`), :math:`H` the harmonic numbers.
    """
    n = hist.astype(np.float64)
    r = rel_hist.astype(np.float64)
    n_before = np.cumsum(n, axis=1) - n
    r_before = np.cumsum(r, axis=1) - r
    h = _harmonic_gap(n_before, n)
    occupied = n > 0
    f = np.divide(r - 1, n - 1, out=np.zeros_like(n), where=n > 1)
    expected = np.divide(r * ((r_before + 1) * h + f * (n - (n_before + 1) * h)), n,
                         out=np.zeros_like(n), where=occupied)
    total = r.sum(axis=1)
    return np.divide(expected.sum(axis=1), total, out=np.zeros_like(total), where=total > 0)


def _harmonic_gap(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """:math:`H_{s + c} - H_s = \\sum_{p=1}^{c} 1/(s + p)` to near machine precision, elementwise.

    A difference of two harmonic numbers would lose a small gap to cancellation. So, for :math:`s < 64`,
    the first :math:`\\min(c, 64)` terms are summed one by one; the rest, and whole gaps that start at
    :math:`s \\ge 64`, use ``log1p`` plus the differences of the asymptotic series
    :math:`H_x = \\ln x + \\gamma + \\frac{1}{2x} - \\frac{1}{12x^2} + \\frac{1}{120x^4} - \\frac{1}{252x^6}`,
    whose next term is below :math:`10^{-16}` for :math:`x \\ge 64`.
    """
    start = np.asarray(start, dtype=np.float64)
    count = np.asarray(count, dtype=np.float64)
    start, count = np.broadcast_arrays(start, count)
    out = np.zeros(start.shape)
    small = (count > 0) & (start < _HARMONIC_DIRECT)
    large = (count > 0) & ~small
    out[large] = _series_gap(start[large], count[large])
    s, c = start[small], count[small]
    head = np.minimum(c, _HARMONIC_DIRECT)
    p = np.arange(1, _HARMONIC_DIRECT + 1, dtype=np.float64)
    terms = np.where(p <= head[:, None], 1.0 / (s[:, None] + p), 0.0)
    out[small] = terms.sum(axis=1) + _series_gap(s + head, c - head)
    return out


def _series_gap(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """:math:`H_{s + c} - H_s` from the asymptotic series, for :math:`s \\ge 64`."""
    end = start + count
    return (np.log1p(count / start) - count / (2 * start * end) - (1 / end**2 - 1 / start**2) / 12
            + (1 / end**4 - 1 / start**4) / 120 - (1 / end**6 - 1 / start**6) / 252)


def _mean_ratio(num: np.ndarray, den: np.ndarray) -> float:
    return float(np.mean(_safe_ratio(num, den)))


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=np.asarray(den) > 0)


# --------------------------------------------------------------------------------------------------
# Compiled kernels (numba). Word and label-word counts are compile-time constants so that the query's
# words live in registers and the inner loop is fully unrolled.
# --------------------------------------------------------------------------------------------------
@intrinsic
def _popcount64(typingctx, x):
    def codegen(context, builder, signature, args):
        ctpop = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(ctpop, args)

    return types.int64(types.uint64), codegen


@intrinsic
def _float_bits(typingctx, x):
    """The IEEE-754 bits of a ``float64`` as a ``uint64``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.uint64(types.float64), codegen


# For a float64 term x in [2**-40, 1] with biased exponent E and 53-bit significand m (implicit bit set),
# x * 2**92 = m << (E - 1075 + 92); the shift lies in [0, 40].
_SIGNIFICAND = np.uint64((1 << 52) - 1)
_IMPLICIT_BIT = np.uint64(1 << 52)
_SHIFT_BIAS = np.uint64(1075 - _FIXED_POINT_BITS)
# `_add_terms` adds 32-bit limbs into 64-bit sums: at most 2**32 terms (`_TERM_CHUNK` per call).
_LOW_LIMB = np.uint64(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _finish_query(n_rec, positions, rel_positions, hist, rel_hist, cuts, rel_at_cut, acc, off_all, off_rel, given,
                  before, rel_before, terms):
    """Turn one query's records into the stable-ranking sums per cut.

    A relevant item at distance ``d`` with position ``p`` in its bucket (among all items) and ``p_r``
    (among the relevant items) has rank ``before[d] + p`` and relevant rank ``rel_before[d] + p_r``.
    Without ``given`` offsets those start at this database's own histograms; with them, at the offsets
    (a shard of a larger database). Each term goes to the first cut at or above its rank, as an exact
    128-bit fixed-point integer. Terms of the last cut (the usual home of most of them) are set aside
    in ``terms`` (``int64`` ``(2, chunk)``: rank, relevant rank) and, each time it is full, summed in a
    loop without branches, which the compiler vectorises (`_add_terms`). The chunk stays in cache, so
    each record is read from memory once: with a million records per query (``map_all`` at 10,000,000
    codes) writing the terms back over the records and summing them in a second pass took 4.6 of the
    pass's 11.7 s (Intel, 1,000 queries).
    """
    if cuts.shape[0] == 0:                                # histograms only (the radius curve)
        return
    if given:
        for d in range(hist.shape[0]):
            before[d] = off_all[d]
            rel_before[d] = off_rel[d]
    else:
        n_seen = 0
        r_seen = 0
        for d in range(hist.shape[0]):
            before[d] = n_seen
            rel_before[d] = r_seen
            n_seen += hist[d]
            r_seen += rel_hist[d]
    mask = (1 << _DIST_BITS) - 1
    last = cuts.shape[0] - 1
    last_cut = cuts[last]
    inner_cut = cuts[last - 1] if last > 0 else 0
    one = np.uint64(1)
    m = 0
    for t in range(n_rec):
        v = positions[t]
        d = v & mask
        rank = before[d] + (v >> _DIST_BITS)
        if rank > last_cut:
            continue
        rel_rank = rel_before[d] + np.int64(rel_positions[t])
        if rank > inner_cut:
            terms[0, m] = rank
            terms[1, m] = rel_rank
            m += 1
            if m == terms.shape[1]:
                _add_terms(terms, m, acc[last])
                rel_at_cut[last] += m
                m = 0
            continue
        bits = _float_bits(rel_rank / rank)
        significand = (bits & _SIGNIFICAND) | _IMPLICIT_BIT
        shift = (bits >> np.uint64(52)) - _SHIFT_BIAS
        low_add = significand << shift
        high_add = (significand >> one) >> (np.uint64(63) - shift)
        c = 0
        while cuts[c] < rank:
            c += 1
        summed = acc[c, 1] + low_add
        acc[c, 0] += high_add + np.uint64(summed < acc[c, 1])
        acc[c, 1] = summed
        rel_at_cut[c] += 1
    _add_terms(terms, m, acc[last])
    rel_at_cut[last] += m


# error_model="numpy": no zero-division check (ranks start at 1), which would keep the loop scalar.
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _add_terms(terms, m, acc):
    """Add the terms ``terms[1, t] / terms[0, t]`` (relevant rank / rank) for ``t < m`` (``m`` below 2**32)
    to the 128-bit sum ``acc`` (``uint64`` high and low words). Each ``term * 2**92`` is split into limbs,
    bits 0-31, bits 32-63 and bits 64 and up, each summed in a ``uint64`` that cannot overflow below
    2**32 terms; no branch, so the compiler vectorises the loop."""
    one = np.uint64(1)
    low32 = np.uint64(0)
    mid32 = np.uint64(0)
    high = np.uint64(0)
    for t in range(m):
        bits = _float_bits(np.float64(terms[1, t]) / np.float64(terms[0, t]))
        significand = (bits & _SIGNIFICAND) | _IMPLICIT_BIT
        shift = (bits >> np.uint64(52)) - _SHIFT_BIAS
        low_add = significand << shift
        low32 += low_add & _LOW_LIMB
        mid32 += low_add >> np.uint64(32)
        high += (significand >> one) >> (np.uint64(63) - shift)
    # low32 + mid32 * 2**32 + high * 2**64 as a 128-bit (high, low) pair
    low = low32 + (mid32 << np.uint64(32))
    high += (mid32 >> np.uint64(32)) + np.uint64(low < low32)
    summed = acc[1] + low
    acc[0] += high + np.uint64(summed < acc[1])
    acc[1] = summed


@numba.njit(cache=True, nogil=True)
def _narrow_radii(h, n_buckets, radius, last_cut):
    """Shrink each query's pruning radius (``radius``, ``int64`` ``(G,)``, in place) to one less than the
    smallest distance ``d`` whose running count in ``h`` (the group's histograms, flat, ``n_buckets`` per
    query) already reaches ``last_cut``: the items seen so far fill the last cut up to ``d``, so a later
    item at distance ``d`` or farther ranks after at least ``last_cut`` items whatever comes after it (ties
    go to the smaller index). ``-1`` (no item can still reach the cut) is a valid radius."""
    for g in range(radius.shape[0]):
        seen = 0
        for d in range(radius[g] + 1):
            seen += h[g * n_buckets + d]
            if seen >= last_cut:
                radius[g] = d - 1
                break


@numba.njit(cache=True, nogil=True)
def _finish_group(i, counts, positions, rel_positions, hist, rel_hist, cuts, rel_at_cut, acc, off_all, off_rel,
                  given, before, rel_before, terms):
    """`_finish_query` for each query of the group starting at slot ``i`` (``counts`` records each)."""
    for g in range(counts.shape[0]):
        _finish_query(counts[g], positions[g], rel_positions[g], hist[i + g], rel_hist[i + g], cuts, rel_at_cut[i + g],
                      acc[i + g], off_all[i + g], off_rel[i + g], given, before, rel_before, terms)


@functools.cache
def _scan_kernel(n_words: int, n_label_words: int, single_label: bool, ranks: bool, prune: bool = False):
    """Compiled pass for codes of ``n_words`` 64-bit words and labels of ``n_label_words`` words.

    Queries are scanned `_group_size` at a time (slots from `_query_groups`), so each database word and
    label is loaded once for the group and the group's histograms give the CPU independent chains of
    increments. Every item increments its bucket in ``hist``; a relevant one also increments ``rel_hist``
    and, with ``ranks``, records both counts (its position in its bucket among all and among the relevant
    items) for `_finish_query`. In a uniform group (one class) relevance is the same for every query, so
    one branch per item skips all of that for the irrelevant ones (relevance is random in database order,
    so it is mispredicted about once per relevant item); a mixed group tests per query and writes without
    branching (the write of an irrelevant item is overwritten by the next one). Histograms, codes and
    labels are indexed flat from zero-based loops over each block, as in `_class_scan_kernel`.

    Pruning. Only items that can rank within the last cut need a record. ``bound`` holds each query's
    radius: an item farther away is counted in the histograms but not recorded. A shard's radius comes
    from the global offsets and is fixed; with ``adapt`` (one pass, last cut below the database size) it
    starts at the largest distance and, every `_BOUND_EVERY` items, shrinks to the smallest distance
    whose running count already reaches the last cut: every later item farther away has at least that
    many items ranked before it. With the whole database as the last cut (``map_all``) nothing is pruned,
    and the kernel is compiled without the radius tests (``prune=False``).
    """
    group = _group_size(n_words)
    group_words = group * n_words
    group_label_words = group * n_label_words
    n_buckets = 64 * n_words + 1

    @numba.njit(cache=True, nogil=True)
    def scan(q_flat, db_flat, q_label_flat, label_flat, n_uniform, cuts, off_all, off_rel, given, hist, rel_hist,
             rel_at_cut, acc, positions, rel_positions, before, rel_before, terms, bound, adapt):
        n_db = db_flat.shape[0] // n_words
        counts = np.zeros(group, dtype=np.int64)
        for i in range(0, hist.shape[0], group):
            codes = to_fixed_tuple(q_flat[i * n_words:(i + group) * n_words], group_words)
            labels = to_fixed_tuple(q_label_flat[i * n_label_words:(i + group) * n_label_words], group_label_words)
            h = hist[i:i + group].reshape(group * n_buckets)
            r = rel_hist[i:i + group].reshape(group * n_buckets)
            radius = bound[i:i + group] if ranks else bound[:1]
            counts[:] = 0
            step = _BOUND_EVERY if prune else max(1, n_db)
            for start in range(0, n_db, step):
                stop = min(n_db, start + step)
                block = db_flat[start * n_words:stop * n_words].reshape(stop - start, n_words)
                block_labels = label_flat[start * n_label_words:stop * n_label_words]
                if i < n_uniform:
                    label = labels[0]
                    shared = counts[0]  # without pruning every query of the group records the same items
                    for t in range(stop - start):
                        words = to_fixed_tuple(block[t], n_words)
                        if block_labels[t * n_label_words] == label:
                            for g in range(group):
                                d = 0
                                for w in range(n_words):
                                    d += _popcount64(codes[g * n_words + w] ^ words[w])
                                b = h[g * n_buckets + d] + 1
                                h[g * n_buckets + d] = b
                                c = r[g * n_buckets + d] + 1
                                r[g * n_buckets + d] = c
                                if ranks and not prune:
                                    positions[g, shared] = (b << _DIST_BITS) | d
                                    rel_positions[g, shared] = c
                                elif ranks and d <= radius[g]:
                                    n = counts[g]
                                    positions[g, n] = (b << _DIST_BITS) | d
                                    rel_positions[g, n] = c
                                    counts[g] = n + 1
                            shared += 1
                        else:
                            for g in range(group):
                                d = 0
                                for w in range(n_words):
                                    d += _popcount64(codes[g * n_words + w] ^ words[w])
                                h[g * n_buckets + d] += 1
                    if not prune:
                        counts[:] = shared
                else:
                    for t in range(stop - start):
                        words = to_fixed_tuple(block[t], n_words)
                        for g in range(group):
                            d = 0
                            for w in range(n_words):
                                d += _popcount64(codes[g * n_words + w] ^ words[w])
                            if single_label:
                                relevant = labels[g] == block_labels[t]
                            else:
                                relevant = False
                                for w in range(n_label_words):
                                    shared_labels = labels[g * n_label_words + w] & block_labels[t * n_label_words + w]
                                    relevant |= shared_labels != 0
                            b = h[g * n_buckets + d] + 1
                            h[g * n_buckets + d] = b
                            c = r[g * n_buckets + d] + np.int64(relevant)
                            r[g * n_buckets + d] = c
                            if ranks:
                                n = counts[g]
                                positions[g, n] = (b << _DIST_BITS) | d
                                rel_positions[g, n] = c
                                counts[g] = n + np.int64(relevant and (not prune or d <= radius[g]))
                if prune and adapt:
                    _narrow_radii(h, n_buckets, radius, cuts[cuts.shape[0] - 1])
            if ranks:
                _finish_group(i, counts, positions, rel_positions, hist, rel_hist, cuts, rel_at_cut, acc, off_all,
                              off_rel, given, before, rel_before, terms)

    return scan


@functools.cache
def _class_scan_kernel(n_words: int, ranks: bool):
    """Compiled pass for groups of queries of one class (class ids): `_scan_kernel`'s results without a
    relevance test in the loop over all items.

    The database is scanned in blocks of `_BOUND_EVERY` items. First the block's items of the group's
    class, taken from ``class_items`` (the database indices of each class, ascending), are counted in
    ``rel_hist`` (their positions among the relevant items) and, with ``ranks``, those within a query's
    radius become records whose bucket position is still to be filled in. Then every item of the block
    increments each query's histogram; the loop stops only at the items that have such records, to read
    their bucket positions from the running histogram. Records, positions, radius updates and every sum
    made from them are those of `_scan_kernel`; the loop over all items has no branch that depends on
    relevance, which is random in database order.

    Arrays are indexed flat with compile-time strides, from zero-based loops: the compiler then keeps
    the group's codes in registers and addresses every histogram from one base (a 2-D histogram with a
    run-time stride needs a register per query and spilled the codes; a loop from a run-time start
    adds a negative-index test per item): 1.7x faster in a micro-benchmark of the loop.
    An item's words are read into a tuple before the loop over the queries: indexed inside that loop,
    they were loaded again for every query, since the compiler cannot prove that the histogram stores
    leave the codes alone, and the extra loads spilled query codes to the stack (the counting loop alone
    at 1,000 x 1,000,000: 0.386 s before, 0.312 s after; the same holds in `_scan_kernel`).

    The counting loop is written in the kernel rather than as a compiled helper: numba keys its disk
    cache on the closure's variables, and a compiled function among them is pickled with an id drawn
    afresh in every process, so the kernel was compiled again in every process (about 2 s).
    """
    group = _group_size(n_words)
    group_words = group * n_words
    n_buckets = 64 * n_words + 1

    @numba.njit(cache=True, nogil=True)
    def scan(q_flat, db_flat, class_items, item_start, item_stop, cuts, off_all, off_rel, given, hist, rel_hist,
             rel_at_cut, acc, positions, rel_positions, before, rel_before, terms, bound, adapt, pending):
        n_db = db_flat.shape[0] // n_words
        db_rows = db_flat.reshape(n_db, n_words)
        counts = np.zeros(group, dtype=np.int64)
        for i in range(0, hist.shape[0], group):
            codes = to_fixed_tuple(q_flat[i * n_words:(i + group) * n_words], group_words)
            items = class_items[item_start[i // group]:item_stop[i // group]]
            h = hist[i:i + group].reshape(group * n_buckets)
            r = rel_hist[i:i + group].reshape(group * n_buckets)
            counts[:] = 0
            next_item = 0
            for start in range(0, n_db, _BOUND_EVERY):
                stop = min(n_db, start + _BOUND_EVERY)
                radius = to_fixed_tuple(bound[i:i + group], group)
                n_pending = 0
                while next_item < items.shape[0] and items[next_item] < stop:
                    j = items[next_item]
                    next_item += 1
                    words = to_fixed_tuple(db_rows[j], n_words)
                    for g in range(group):
                        d = 0
                        for w in range(n_words):
                            d += _popcount64(codes[g * n_words + w] ^ words[w])
                        c = r[g * n_buckets + d] + 1
                        r[g * n_buckets + d] = c
                        if ranks and d <= radius[g]:
                            n = counts[g]
                            positions[g, n] = d
                            rel_positions[g, n] = c
                            counts[g] = n + 1
                            pending[n_pending, 0] = j
                            pending[n_pending, 1] = g
                            pending[n_pending, 2] = n
                            n_pending += 1
                # Count the block's items in stretches that end at the next item with pending records,
                # whose bucket positions are then read from the running histograms.
                done = start
                k = 0
                while done < stop:
                    upto = pending[k, 0] + 1 if k < n_pending else stop
                    block = db_flat[done * n_words:upto * n_words].reshape(upto - done, n_words)
                    for t in range(upto - done):
                        words = to_fixed_tuple(block[t], n_words)
                        for g in range(group):
                            d = 0
                            for w in range(n_words):
                                d += _popcount64(codes[g * n_words + w] ^ words[w])
                            h[g * n_buckets + d] += 1
                    while k < n_pending and pending[k, 0] == upto - 1:
                        g = pending[k, 1]
                        n = pending[k, 2]
                        d = positions[g, n]
                        positions[g, n] = (h[g * n_buckets + d] << _DIST_BITS) | d
                        k += 1
                    done = upto
                if ranks and adapt:
                    _narrow_radii(h, n_buckets, bound[i:i + group], cuts[cuts.shape[0] - 1])
            if ranks:
                _finish_group(i, counts, positions, rel_positions, hist, rel_hist, cuts, rel_at_cut, acc, off_all,
                              off_rel, given, before, rel_before, terms)

    return scan


@functools.cache
def _distance_kernel(n_words: int):
    @numba.njit(cache=True, nogil=True)
    def distances(q_words, db_words, out):
        for i in range(q_words.shape[0]):
            code = to_fixed_tuple(q_words[i], n_words)
            for j in range(db_words.shape[0]):
                d = 0
                for w in range(n_words):
                    d += _popcount64(code[w] ^ db_words[j, w])
                out[i, j] = d

    return distances
