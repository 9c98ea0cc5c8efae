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

How it is fast. One compiled pass per query over the database computes the distance histogram
:math:`n_d` and, for each relevant item, its distance and its position inside its distance bucket.
Ranks then follow from the histogram (rank = items at smaller distance + position in the bucket), so
no sort is ever run, and every metric (stable AP at any cut, tie-aware AP, radius precision and recall,
P@N) comes from the same pass. Memory is :math:`O(N + Q \\cdot n_{bits})`: nothing of size
:math:`Q \\times N` exists unless `hamming_distances` is called.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterable

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic
from numba.np.unsafe.ndarray import to_fixed_tuple

__all__ = ["average_precision_at_k", "evaluate", "hamming_distances", "pr_curve_by_radius", "precision_at_n",
           "top_k"]

# A relevant item is recorded as (position in its bucket << _DIST_BITS) | distance in one int64.
_DIST_BITS = 16
_MAX_CODE_BYTES = ((1 << _DIST_BITS) - 1) // 8
# Harmonic gaps are summed term by term below this index and from the asymptotic series above it.
_HARMONIC_DIRECT = 64


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------
def evaluate(query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray,
             db_labels: np.ndarray, *, topk: int = 1000) -> dict[str, float]:
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

    Returns:
        A dict of float metrics whose keys are valid MLflow metric names.
    """
    topk = _check_positive_int(topk, "topk")
    data = _prepare(query_codes, db_codes, query_labels, db_labels)
    k = min(topk, data.n_db)
    scan = _scan(data, np.array([k, data.n_db], dtype=np.int64))
    rel_k, rel_all = scan.rel_at_cut[:, 0], scan.rel_at_cut[:, 1]
    within2 = np.minimum(2, scan.hist.shape[1] - 1)
    retrieved_r2 = scan.hist[:, : within2 + 1].sum(axis=1)
    relevant_r2 = scan.rel_hist[:, : within2 + 1].sum(axis=1)
    return {
        f"map_at_{topk}": _mean_ratio(scan.prec_sum_at_cut[:, 0], rel_k),
        "map_all": _mean_ratio(scan.prec_sum_at_cut[:, 1], rel_all),
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
    max_bits = 8 * data.n_bytes
    n_bits = max_bits if n_bits is None else _check_positive_int(n_bits, "n_bits")
    if n_bits > max_bits:
        raise ValueError(f"n_bits={n_bits} exceeds the {max_bits} bits that codes of {data.n_bytes} bytes hold")
    scan = _scan(data, np.zeros(0, dtype=np.int64))
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
    ns = np.array([_check_positive_int(n, "each of ns") for n in ns], dtype=np.int64)
    if ns.size == 0:
        raise ValueError("ns is empty: give at least one list length n")
    data = _prepare(query_codes, db_codes, query_labels, db_labels)
    cuts = np.unique(np.minimum(ns, data.n_db))
    scan = _scan(data, cuts)
    mean_precision = (scan.rel_at_cut / cuts).mean(axis=0)
    return {"n": ns, "precision": mean_precision[np.searchsorted(cuts, np.minimum(ns, data.n_db))]}


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


def _prepare(query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any) -> _Data:
    q_words = _code_words(query_codes, "query_codes")
    db_words = _code_words(db_codes, "db_codes")
    _check_same_width(query_codes, db_codes)
    q_lab, db_lab = np.asarray(query_labels), np.asarray(db_labels)
    for lab, codes, name, codes_name in ((q_lab, q_words, "query_labels", "query_codes"),
                                         (db_lab, db_words, "db_labels", "db_codes")):
        if lab.ndim not in (1, 2):
            raise ValueError(f"{name} must be 1-D class ids or 2-D multi-hot rows, got shape {lab.shape}")
        if lab.shape[0] != codes.shape[0]:
            raise ValueError(f"{name} has {lab.shape[0]} rows but {codes_name} has {codes.shape[0]}: "
                             "give one label row per code")
    if q_lab.ndim != db_lab.ndim:
        kinds = {1: "1-D class ids", 2: "2-D multi-hot"}
        raise ValueError(f"label kinds differ: query_labels are {kinds[q_lab.ndim]}, db_labels are "
                         f"{kinds[db_lab.ndim]}; give both the same kind")
    single = q_lab.ndim == 1
    if single:
        q_lab_words = _class_words(q_lab, "query_labels")
        db_lab_words = _class_words(db_lab, "db_labels")
    else:
        if q_lab.shape[1] != db_lab.shape[1]:
            raise ValueError(f"query_labels have {q_lab.shape[1]} label columns but db_labels have "
                             f"{db_lab.shape[1]}; both must use the same label vocabulary")
        q_lab_words = _multi_hot_words(q_lab, "query_labels")
        db_lab_words = _multi_hot_words(db_lab, "db_labels")
    return _Data(q_words, db_words, q_lab_words, db_lab_words, single, int(np.shape(query_codes)[1]))


def _code_words(codes: Any, name: str) -> np.ndarray:
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
    n_words = -(-n_bytes // 8)
    padded = np.zeros((n, 8 * n_words), dtype=np.uint8)
    padded[:, :n_bytes] = codes
    return padded.view(np.uint64)


def _check_same_width(query_codes: np.ndarray, db_codes: np.ndarray) -> None:
    if query_codes.shape[1] != db_codes.shape[1]:
        raise ValueError(f"query_codes are {query_codes.shape[1]} bytes wide but db_codes are {db_codes.shape[1]} "
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
    n_query, n_words = data.q_words.shape
    n_buckets = 64 * n_words + 1
    hist = np.zeros((n_query, n_buckets), dtype=np.int64)
    rel_hist = np.zeros((n_query, n_buckets), dtype=np.int64)
    rel_at_cut = np.zeros((n_query, cuts.size), dtype=np.int64)
    prec_sum_at_cut = np.zeros((n_query, cuts.size), dtype=np.float64)
    # Work buffers come from numpy rather than from inside the kernel so that tracemalloc sees them.
    records = np.empty(data.n_db, dtype=np.int64)
    before = np.empty(n_buckets, dtype=np.int64)
    rel_seen = np.empty(n_buckets, dtype=np.int64)
    kernel = _scan_kernel(n_words, data.q_labels.shape[1], data.single_label)
    kernel(data.q_words, data.db_words, data.q_labels, data.db_labels, np.ascontiguousarray(cuts, dtype=np.int64),
           hist, rel_hist, rel_at_cut, prec_sum_at_cut, records, before, rel_seen)
    # The kernel adds each relevant item to the first cut it falls under; later cuts include earlier ones.
    return _Scan(hist, rel_hist, np.cumsum(rel_at_cut, axis=1), np.cumsum(prec_sum_at_cut, axis=1))


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


@numba.njit(cache=True, nogil=True)
def _finish_query(i, n_rec, rec, hist, rel_hist, cuts, rel_at_cut, prec_sum_at_cut, before, rel_seen):
    """Turn one query's records into its relevant histogram and the stable-ranking sums per cut.

    Records come in database order, so the running count of relevant items per bucket is each
    relevant item's position among the relevant items of its bucket.
    """
    mask = (1 << _DIST_BITS) - 1
    for t in range(n_rec):
        rel_hist[rec[t] & mask] += 1
    n_seen = 0
    r_seen = 0
    for d in range(hist.shape[0]):
        before[d] = n_seen
        rel_seen[d] = r_seen
        n_seen += hist[d]
        r_seen += rel_hist[d]
    n_cuts = cuts.shape[0]
    for t in range(n_rec):
        v = rec[t]
        d = v & mask
        rank = before[d] + (v >> _DIST_BITS)
        rel_rank = rel_seen[d] + 1
        rel_seen[d] = rel_rank
        c = 0
        while c < n_cuts and cuts[c] < rank:
            c += 1
        if c < n_cuts:
            rel_at_cut[i, c] += 1
            prec_sum_at_cut[i, c] += rel_rank / rank


@functools.cache
def _scan_kernel(n_words: int, n_label_words: int, single_label: bool):
    """Compiled pass for codes of ``n_words`` 64-bit words and labels of ``n_label_words`` words."""

    @numba.njit(cache=True, nogil=True)
    def scan(q_words, db_words, q_labels, db_labels, cuts, hist, rel_hist, rel_at_cut, prec_sum_at_cut,
             rec, before, rel_seen):
        n_db = db_words.shape[0]
        for i in range(q_words.shape[0]):
            code = to_fixed_tuple(q_words[i], n_words)
            label = to_fixed_tuple(q_labels[i], n_label_words)
            h = hist[i]
            n_rec = 0
            for j in range(n_db):
                d = 0
                for w in range(n_words):
                    d += _popcount64(code[w] ^ db_words[j, w])
                in_bucket = h[d] + 1
                h[d] = in_bucket
                if single_label:
                    relevant = label[0] == db_labels[j, 0]
                else:
                    relevant = False
                    for w in range(n_label_words):
                        relevant |= (label[w] & db_labels[j, w]) != 0
                # Writing every item and advancing only past relevant ones avoids a mispredicted branch
                # (n_rec <= j, so the write stays inside the buffer).
                rec[n_rec] = (in_bucket << _DIST_BITS) | d
                n_rec += np.int64(relevant)
            _finish_query(i, n_rec, rec, h, rel_hist[i], cuts, rel_at_cut, prec_sum_at_cut, before, rel_seen)

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
