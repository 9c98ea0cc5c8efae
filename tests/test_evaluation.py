"""bench.evaluation against slow, obviously correct references on tie-heavy codes."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bench import evaluation as ev


# --------------------------------------------------------------------------------------------------
# References: one query at a time, unpacked bits, an explicit stable sort, plain Python sums.
# --------------------------------------------------------------------------------------------------
def ref_distances(q_codes, db_codes):
    qb = np.unpackbits(q_codes, axis=1, bitorder="little").astype(np.int64)
    db = np.unpackbits(db_codes, axis=1, bitorder="little").astype(np.int64)
    return np.array([[int(np.sum(qrow != drow)) for drow in db] for qrow in qb])


def ref_relevance(q_labels, db_labels):
    if q_labels.ndim == 1:
        return np.array([[a == b for b in db_labels] for a in q_labels])
    return np.array([[bool(np.any((a != 0) & (b != 0))) for b in db_labels] for a in q_labels])


def ref_ap(rel_in_order, cut):
    hits, total = 0, 0.0
    for k in range(cut):
        if rel_in_order[k]:
            hits += 1
            total += hits / (k + 1)
    return total / hits if hits else 0.0


def ref_metrics(q_codes, db_codes, q_labels, db_labels, topk):
    dist = ref_distances(q_codes, db_codes)
    rel = ref_relevance(q_labels, db_labels)
    n_db = db_codes.shape[0]
    k = min(topk, n_db)
    rows = []
    for i in range(len(q_codes)):
        order = np.argsort(dist[i], kind="stable")
        ranked = rel[i][order]
        within2 = dist[i] <= 2
        n_rel_r2 = int(np.sum(rel[i] & within2))
        rows.append((
            ref_ap(ranked, k),
            ref_ap(ranked, n_db),
            ref_tie_aware_ap(dist[i], rel[i]),
            int(np.sum(ranked[:k])) / k,
            n_rel_r2 / int(np.sum(within2)) if np.any(within2) else 0.0,
            n_rel_r2 / int(np.sum(rel[i])) if np.any(rel[i]) else 0.0,
        ))
    names = [f"map_at_{topk}", "map_all", "map_tie_aware", f"precision_at_{topk}", "precision_r2", "recall_r2"]
    return dict(zip(names, np.mean(np.array(rows), axis=0).tolist()))


def ref_tie_aware_ap(dist, rel):
    """Expected AP@all by averaging over every position of every relevant item inside its tie group.

    By linearity of expectation, a relevant item at position p of a group of n items (r relevant) after
    n_before items (r_before relevant) has on average (p - 1)(r - 1)/(n - 1) relevant items before it in
    the group; summed term by term, without harmonic numbers.
    """
    total_rel = int(np.sum(rel))
    if total_rel == 0:
        return 0.0
    expected, n_before, r_before = 0.0, 0, 0
    for d in np.unique(dist):
        n = int(np.sum(dist == d))
        r = int(np.sum(rel[dist == d]))
        f = (r - 1) / (n - 1) if n > 1 else 0.0
        for p in range(1, n + 1):
            expected += (r / n) * (r_before + 1 + (p - 1) * f) / (n_before + p)
        n_before += n
        r_before += r
    return expected / total_rel


def brute_tie_aware_ap(dist, rel):
    """Mean AP@all over every ordering that sorts by distance (all permutations inside each tie)."""
    groups = [np.flatnonzero(dist == d) for d in np.unique(dist)]
    values = []
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = np.concatenate(perms)
        values.append(ref_ap(rel[order], len(order)))
    return float(np.mean(values))


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def random_codes(rng, n, n_bits):
    return np.packbits(rng.random((n, n_bits)) < 0.5, axis=1, bitorder="little")


def clustered(rng, n_query, n_db, n_bits, n_classes, flip=0.3):
    protos = rng.random((n_classes, n_bits)) < 0.5

    def draw(n):
        y = rng.integers(0, n_classes, n)
        bits = protos[y] ^ (rng.random((n, n_bits)) < flip)
        return np.packbits(bits, axis=1, bitorder="little"), y

    (q, yq), (db, ydb) = draw(n_query), draw(n_db)
    return q, db, yq, ydb


def multi_hot(rng, n, n_labels, p=0.15, empty_rows=()):
    labels = (rng.random((n, n_labels)) < p).astype(np.uint8)
    labels[list(empty_rows)] = 0
    return labels


def assert_metrics_match(got, want):
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12), key
        assert isinstance(got[key], float)


# --------------------------------------------------------------------------------------------------
# evaluate against the reference
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_bits", [4, 6, 8, 12])
@pytest.mark.parametrize("topk", [1, 7, 40, 1000])
def test_single_label_matches_reference(n_bits, topk):
    rng = np.random.default_rng(n_bits * 1000 + topk)
    q, db = random_codes(rng, 15, n_bits), random_codes(rng, 70, n_bits)
    yq, ydb = rng.integers(0, 4, 15), rng.integers(0, 4, 70)
    yq[0] = 99                                      # a query whose class is absent from the database
    got = ev.evaluate(q, db, yq, ydb, topk=topk)
    assert_metrics_match(got, ref_metrics(q, db, yq, ydb, topk))


@pytest.mark.parametrize("n_bits,n_labels", [(5, 6), (8, 21), (12, 70), (70, 3), (130, 65)])
def test_multi_label_matches_reference(n_bits, n_labels):
    rng = np.random.default_rng(n_bits + n_labels)
    q, db = random_codes(rng, 12, n_bits), random_codes(rng, 60, n_bits)
    yq = multi_hot(rng, 12, n_labels, empty_rows=[0, 5])        # queries with no label: relevant to nothing
    ydb = multi_hot(rng, 60, n_labels, empty_rows=[3, 4, 59])   # items with no label: relevant to nothing
    for topk in (1, 10, 60, 61):
        assert_metrics_match(ev.evaluate(q, db, yq, ydb, topk=topk), ref_metrics(q, db, yq, ydb, topk))


def test_multi_label_accepts_bool_and_float_rows():
    rng = np.random.default_rng(3)
    q, db = random_codes(rng, 8, 6), random_codes(rng, 30, 6)
    yq, ydb = multi_hot(rng, 8, 5, p=0.4), multi_hot(rng, 30, 5, p=0.4)
    want = ev.evaluate(q, db, yq, ydb, topk=10)
    assert ev.evaluate(q, db, yq.astype(bool), ydb.astype(np.float32), topk=10) == want


def test_clustered_64_bits_matches_reference():
    rng = np.random.default_rng(7)
    q, db, yq, ydb = clustered(rng, 20, 600, 64, 5)
    assert_metrics_match(ev.evaluate(q, db, yq, ydb, topk=100), ref_metrics(q, db, yq, ydb, 100))


# The scan takes eight queries per pass up to 128 bits and four beyond; queries of one class fill
# whole groups that share one relevance branch (queries 0-11 share a class here), the rest fill mixed
# groups whose writes are branch-free. Short tie-heavy codes, every group width and database sizes
# around the group sizes and the SIMD widths.
@pytest.mark.parametrize("n_db", [1, 63, 64, 65, 128, 130, 257])
@pytest.mark.parametrize("n_bits", [3, 64, 128, 129, 192, 256, 300])
def test_group_widths_and_database_sizes_match_reference(n_db, n_bits):
    rng = np.random.default_rng(n_db * 1000 + n_bits)
    q, db, yq, ydb = clustered(rng, 23, n_db, n_bits, 3, flip=0.45)
    yq[:12] = 1
    for topk in (1, 50, n_db):
        assert_metrics_match(ev.evaluate(q, db, yq, ydb, topk=topk), ref_metrics(q, db, yq, ydb, topk))


@pytest.mark.parametrize("n_db", [63, 65, 200])
def test_multi_label_mixed_groups_match_reference(n_db):
    rng = np.random.default_rng(n_db)
    q, db = random_codes(rng, 9, 10), random_codes(rng, n_db, 10)   # 10 bits: many ties across blocks
    yq, ydb = multi_hot(rng, 9, 70, p=0.05), multi_hot(rng, n_db, 70, p=0.05)
    assert_metrics_match(ev.evaluate(q, db, yq, ydb, topk=40), ref_metrics(q, db, yq, ydb, 40))


# Without map_all the pass records only the items that can still reach the top K: each query's radius
# narrows every 4,096 database items as its histogram fills. Databases of several such stretches, small
# and large K, long tie runs (6 bits), uniform and mixed groups, multi-label rows.
@pytest.mark.parametrize("n_bits", [6, 64, 200])
def test_without_map_all_the_pruned_pass_equals_the_full_one_and_the_reference(n_bits):
    rng = np.random.default_rng(n_bits)
    n_db = 3 * 4096 + 17
    q, db, yq, ydb = clustered(rng, 21, n_db, n_bits, 3, flip=0.3)
    yq[:9] = 0
    for topk in (1, 37, 5000, n_db):
        full = ev.evaluate(q, db, yq, ydb, topk=topk)
        pruned = ev.evaluate(q, db, yq, ydb, topk=topk, map_all=False)
        assert pruned == {k: v for k, v in full.items() if k != "map_all"}, topk
        assert_metrics_match(full, ref_metrics(q, db, yq, ydb, topk))
    yq_multi, ydb_multi = multi_hot(rng, 21, 9, p=0.2), multi_hot(rng, n_db, 9, p=0.2)
    full = ev.evaluate(q, db, yq_multi, ydb_multi, topk=50)
    assert ev.evaluate(q, db, yq_multi, ydb_multi, topk=50, map_all=False) == {
        k: v for k, v in full.items() if k != "map_all"}
    assert_metrics_match(full, ref_metrics(q, db, yq_multi, ydb_multi, 50))


# The terms beyond the first cut are summed per chunk of ev._TERM_CHUNK while in cache. With every item
# relevant, a query has exactly n_db - topk of them: one short of a chunk, exactly one, one over, two.
# A lost or repeated chunk moves map_all off 1 and the relevant counts off the histogram's.
@pytest.mark.parametrize("extra", [-1, 0, 1, 2048])
def test_last_cut_terms_summed_chunk_by_chunk_match_reference(extra):
    rng = np.random.default_rng(extra + 5)
    topk = 10
    n_db = topk + ev._TERM_CHUNK + extra
    q, db = random_codes(rng, 3, 16), random_codes(rng, n_db, 16)
    yq, ydb = np.zeros(3, dtype=np.int64), np.zeros(n_db, dtype=np.int64)
    got = ev.evaluate(q, db, yq, ydb, topk=topk)
    assert got["map_all"] == 1.0
    assert_metrics_match(got, ref_metrics(q, db, yq, ydb, topk))
    # A second class in the database's last quarter, so that the terms differ from 1.
    ydb[-n_db // 4:] = 1
    assert_metrics_match(ev.evaluate(q, db, yq, ydb, topk=topk), ref_metrics(q, db, yq, ydb, topk))


def test_database_size_limit_keeps_the_128_bit_sums_exact_and_from_overflowing(monkeypatch):
    # A query's AP sum at a cut has at most N terms in (0, 1], each added as term * 2**92 to 128 bits.
    n_max = ev._MAX_DB_ITEMS - 1
    assert n_max * 2 ** ev._FIXED_POINT_BITS < 2 ** 128
    # The smallest term, 1 / N, scaled keeps all 53 significant bits above the fixed point.
    assert math.frexp(1 / n_max)[1] - 53 + ev._FIXED_POINT_BITS >= 0
    rng = np.random.default_rng(0)
    q, db = random_codes(rng, 2, 8), random_codes(rng, 10, 8)
    y = np.zeros(10, dtype=np.int64)
    monkeypatch.setattr(ev, "_MAX_DB_ITEMS", 10)
    with pytest.raises(ValueError, match="exact sums support fewer than 10"):
        ev.evaluate(q, db, y[:2], y)
    with pytest.raises(ValueError, match="exact sums support fewer than 10"):
        ev.evaluate_sharded(q, y[:2], [(db[:5], y[:5]), (db[5:], y[5:])])


@pytest.mark.parametrize("ids", ["small", "negative", "wide", "unsigned"])
def test_one_class_groups_without_map_all_whatever_the_class_ids(ids):
    """Groups of one class take the class-list pass (`_class_scan_kernel`): class ids of any range, query
    classes absent from the database and several radius updates give the full pass's metrics."""
    rng = np.random.default_rng(7)
    n_db = 2 * 4096 + 333
    q, db, yq, ydb = clustered(rng, 40, n_db, 64, 4, flip=0.3)
    yq[:16] = 0
    yq[16:24] = 5                                   # a class no database item has: nothing relevant
    transform = {"small": lambda y: y, "negative": lambda y: -3 * y - 1, "wide": lambda y: y * 10**12 - 7,
                 "unsigned": lambda y: y.astype(np.uint64) * np.uint64(2**60)}[ids]
    yq, ydb = transform(yq), transform(ydb)
    for topk in (1, 100, 3000):
        full = ev.evaluate(q, db, yq, ydb, topk=topk)
        assert ev.evaluate(q, db, yq, ydb, topk=topk, map_all=False) == {
            k: v for k, v in full.items() if k != "map_all"}, topk
        assert_metrics_match(full, ref_metrics(q, db, yq, ydb, topk))


@pytest.mark.parametrize("n_bits", [64, 200])
def test_class_remainders_fill_padded_one_class_groups_or_mixed_ones(n_bits):
    """A class's queries beyond its full groups: at least half a group fills a one-class group padded with
    repeats of its last query, fewer go to the mixed groups. Every remainder, with and without map_all,
    over several radius updates, gives the reference's metrics."""
    group = ev._group_size(-(-n_bits // 64))
    sizes = [group + left for left in range(group)] + [1, group // 2]
    yq = np.repeat(np.arange(len(sizes)), sizes)
    slots, n_uniform = ev._query_groups(yq[:, None].astype(np.uint64), True, group)
    assert slots.size % group == 0 and n_uniform % group == 0
    assert set(slots.tolist()) == set(range(yq.size))
    for start in range(0, n_uniform, group):
        assert len(set(yq[slots[start:start + group]].tolist())) == 1
    padded = [c for c, size in enumerate(sizes) if size % group >= group // 2]
    mixed = [c for c, size in enumerate(sizes) if 0 < size % group < group // 2]
    assert set(yq[slots[n_uniform:]].tolist()) == set(mixed)
    assert n_uniform == sum(-(-sizes[c] // group) * group if c in padded else sizes[c] - sizes[c] % group
                            for c in range(len(sizes)))
    rng = np.random.default_rng(n_bits)
    n_db = 2 * 4096 + 101
    q, db, _, ydb = clustered(rng, yq.size, n_db, n_bits, len(sizes), flip=0.3)
    for topk in (1, 250):
        full = ev.evaluate(q, db, yq, ydb, topk=topk)
        assert ev.evaluate(q, db, yq, ydb, topk=topk, map_all=False) == {
            k: v for k, v in full.items() if k != "map_all"}, topk
        assert_metrics_match(full, ref_metrics(q, db, yq, ydb, topk))


_KERNEL_CACHE_SCRIPT = """
import json
import numpy as np
from bench import evaluation as ev

rng = np.random.default_rng(0)
q = rng.integers(0, 256, (16, 8), dtype=np.uint8)
db = rng.integers(0, 256, (5000, 8), dtype=np.uint8)
yq, ydb = np.zeros(16, np.int64), rng.integers(0, 3, 5000)
yq[13:] = 1                                       # a mixed group beside two one-class groups
ev.evaluate(q, db, yq, ydb, topk=10, map_all=False)
ev.evaluate(q, db, yq, ydb, topk=10)
ev.evaluate_sharded(q, yq, [(db[:2000], ydb[:2000]), (db[2000:], ydb[2000:])], topk=10)
ev.hamming_distances(q, db)
kernels = [ev._class_scan_kernel(1, True), ev._class_scan_kernel(1, False), ev._distance_kernel(1)]
kernels += [ev._scan_kernel(1, 1, True, ranks, prune) for ranks in (True, False) for prune in (True, False)]
stats = [k.stats for k in kernels if k.signatures]
print(json.dumps({"kernels": len(stats), "hits": sum(sum(s.cache_hits.values()) for s in stats),
                  "misses": sum(sum(s.cache_misses.values()) for s in stats)}))
"""


def test_every_kernel_is_loaded_from_numbas_disk_cache_in_a_new_process(tmp_path):
    """A kernel that misses numba's disk cache is compiled again in every process (seconds each time):
    the second process must load every kernel the first one compiled."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [json.loads(subprocess.run([sys.executable, "-c", _KERNEL_CACHE_SCRIPT], env=env, check=True,
                                      capture_output=True, text=True).stdout) for _ in range(2)]
    assert runs[0]["kernels"] >= 4 and runs[0]["misses"] >= runs[0]["kernels"]
    assert runs[1] == {"kernels": runs[0]["kernels"], "hits": runs[0]["misses"], "misses": 0}


def test_map_all_must_be_a_bool():
    q = np.zeros((2, 1), np.uint8)
    with pytest.raises(ValueError, match="map_all must be True or False, got 'no'"):
        ev.evaluate(q, q, np.zeros(2, int), np.zeros(2, int), map_all="no")


def test_topk_beyond_database_keeps_key_and_equals_map_all():
    rng = np.random.default_rng(11)
    q, db = random_codes(rng, 10, 6), random_codes(rng, 25, 6)
    yq, ydb = rng.integers(0, 3, 10), rng.integers(0, 3, 25)
    got = ev.evaluate(q, db, yq, ydb, topk=5000)
    assert got["map_at_5000"] == got["map_all"]
    assert got["precision_at_5000"] == pytest.approx(np.mean([np.mean(ydb == y) for y in yq]))


def test_nothing_relevant_scores_zero():
    rng = np.random.default_rng(5)
    q, db = random_codes(rng, 4, 8), random_codes(rng, 20, 8)
    got = ev.evaluate(q, db, np.full(4, 7), np.zeros(20, dtype=np.int64), topk=5)
    assert got == {"map_at_5": 0.0, "map_all": 0.0, "map_tie_aware": 0.0, "precision_at_5": 0.0,
                   "precision_r2": 0.0, "recall_r2": 0.0}


def test_single_item_database():
    got = ev.evaluate(np.array([[3]], np.uint8), np.array([[1]], np.uint8), np.array([2]), np.array([2]), topk=10)
    assert got == {"map_at_10": 1.0, "map_all": 1.0, "map_tie_aware": 1.0, "precision_at_10": 1.0,
                   "precision_r2": 1.0, "recall_r2": 1.0}


# --------------------------------------------------------------------------------------------------
# Ties: the tie-aware value and the stable order
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(12))
def test_tie_aware_equals_brute_force_over_tie_permutations(seed):
    rng = np.random.default_rng(seed)
    n_db = int(rng.integers(5, 8))
    q, db = random_codes(rng, 3, 3), random_codes(rng, n_db, 3)    # 3 bits: large tie groups
    yq, ydb = rng.integers(0, 2, 3), rng.integers(0, 2, n_db)
    dist = ref_distances(q, db)
    want = np.mean([brute_tie_aware_ap(dist[i], ydb == yq[i]) for i in range(3)])
    assert ev.evaluate(q, db, yq, ydb)["map_tie_aware"] == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_tie_aware_all_items_tied():
    # One bucket of n items, r relevant: E[AP] = (1/n) sum_p (1 + (p-1)(r-1)/(n-1)) / p.
    n, r = 7, 3
    codes = np.zeros((n, 1), np.uint8)
    labels = np.array([1] * r + [0] * (n - r))
    want = sum((1 + (p - 1) * (r - 1) / (n - 1)) / p for p in range(1, n + 1)) / n
    got = ev.evaluate(codes[:1], codes, np.array([1]), labels)["map_tie_aware"]
    assert got == pytest.approx(want, rel=1e-14)
    assert got == pytest.approx(brute_tie_aware_ap(np.zeros(n), labels == 1), rel=1e-12)


def test_tie_aware_is_invariant_to_database_order():
    rng = np.random.default_rng(21)
    q, db, yq, ydb = clustered(rng, 30, 400, 8, 4)
    base = ev.evaluate(q, db, yq, ydb, topk=50)
    for _ in range(3):
        perm = rng.permutation(len(db))
        assert ev.evaluate(q, db[perm], yq, ydb[perm], topk=50)["map_tie_aware"] == pytest.approx(
            base["map_tie_aware"], rel=1e-12)


def test_tie_aware_equals_stable_map_without_ties():
    # Database item j has j ones, so every distance from the zero query is distinct.
    n_bits = 16
    bits = np.tril(np.ones((n_bits + 1, n_bits), dtype=bool), k=-1)
    rng = np.random.default_rng(2)
    perm = rng.permutation(n_bits + 1)
    db = np.packbits(bits[perm], axis=1, bitorder="little")
    labels = rng.integers(0, 2, n_bits + 1)
    q = np.zeros((2, 2), np.uint8)
    got = ev.evaluate(q, db, np.array([0, 1]), labels, topk=5)
    assert got["map_tie_aware"] == pytest.approx(got["map_all"], rel=1e-14)


def test_tie_aware_harmonic_gaps_far_down_the_ranking():
    # Buckets that start after many items exercise the asymptotic branch of the harmonic gap.
    start = np.array([0, 3, 63, 64, 65, 1000, 10**6, 0, 60, 5], dtype=np.float64)
    count = np.array([5, 1, 2, 1, 40, 3000, 7, 200, 10, 0], dtype=np.float64)
    want = [math.fsum(1.0 / (s + p) for p in range(1, int(c) + 1)) for s, c in zip(start, count)]
    np.testing.assert_allclose(ev._harmonic_gap(start, count), want, rtol=1e-14)


def test_stable_tie_break_follows_database_order():
    # Every code is identical, so the stable ranking is the database order itself.
    labels = np.array([0, 1] * 10)
    codes = np.zeros((20, 1), np.uint8)
    q, yq = codes[:1], np.array([1])
    interleaved = ev.evaluate(q, codes, yq, labels, topk=10)
    by_class = np.argsort(-labels, kind="stable")                 # relevant class first
    sorted_first = ev.evaluate(q, codes, yq, labels[by_class], topk=10)
    sorted_last = ev.evaluate(q, codes, yq, labels[by_class[::-1]], topk=10)
    assert sorted_first["map_at_10"] == 1.0 and sorted_first["precision_at_10"] == 1.0
    assert sorted_last["map_at_10"] == 0.0 and sorted_last["precision_at_10"] == 0.0
    assert interleaved["map_at_10"] == pytest.approx(ref_ap(labels == 1, 10))
    tie_aware = {m["map_tie_aware"] for m in (interleaved, sorted_first, sorted_last)}
    assert max(tie_aware) - min(tie_aware) < 1e-14


def test_class_sorted_database_changes_stable_map_at_k_like_the_reference():
    rng = np.random.default_rng(8)
    q, db, yq, ydb = clustered(rng, 25, 300, 6, 3)
    by_class = np.argsort(ydb, kind="stable")
    shuffled = ev.evaluate(q, db, yq, ydb, topk=40)
    sorted_ = ev.evaluate(q, db[by_class], yq, ydb[by_class], topk=40)
    assert_metrics_match(sorted_, ref_metrics(q, db[by_class], yq, ydb[by_class], 40))
    assert sorted_["map_at_40"] != pytest.approx(shuffled["map_at_40"], abs=1e-6)
    assert sorted_["map_tie_aware"] == pytest.approx(shuffled["map_tie_aware"], rel=1e-12)


# --------------------------------------------------------------------------------------------------
# Curves and distances
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels_kind", ["single", "multi"])
def test_pr_curve_by_radius_matches_reference(labels_kind):
    rng = np.random.default_rng(4)
    n_bits = 10
    q, db = random_codes(rng, 9, n_bits), random_codes(rng, 50, n_bits)
    if labels_kind == "single":
        yq, ydb = rng.integers(0, 3, 9), rng.integers(0, 3, 50)
    else:
        yq, ydb = multi_hot(rng, 9, 4, empty_rows=[2]), multi_hot(rng, 50, 4)
    dist, rel = ref_distances(q, db), ref_relevance(yq, ydb)
    curve = ev.pr_curve_by_radius(q, db, yq, ydb, n_bits=n_bits)
    np.testing.assert_array_equal(curve["radius"], np.arange(n_bits + 1))
    for r in range(n_bits + 1):
        inside = dist <= r
        prec = [np.sum(rel[i] & inside[i]) / np.sum(inside[i]) if np.any(inside[i]) else 0.0 for i in range(9)]
        rec = [np.sum(rel[i] & inside[i]) / np.sum(rel[i]) if np.any(rel[i]) else 0.0 for i in range(9)]
        assert curve["precision"][r] == pytest.approx(np.mean(prec), rel=1e-12, abs=1e-15)
        assert curve["recall"][r] == pytest.approx(np.mean(rec), rel=1e-12, abs=1e-15)
    default = ev.pr_curve_by_radius(q, db, yq, ydb)
    assert len(default["radius"]) == 17                           # 2 bytes: radii 0..16
    np.testing.assert_array_equal(default["precision"][n_bits:], curve["precision"][-1])
    assert ev.evaluate(q, db, yq, ydb)["precision_r2"] == pytest.approx(curve["precision"][2])


def test_precision_at_n_matches_reference():
    rng = np.random.default_rng(6)
    q, db = random_codes(rng, 10, 5), random_codes(rng, 40, 5)
    yq, ydb = rng.integers(0, 3, 10), rng.integers(0, 3, 40)
    ns = (30, 1, 5, 40, 100, 5)
    got = ev.precision_at_n(q, db, yq, ydb, ns=ns)
    np.testing.assert_array_equal(got["n"], ns)
    dist, rel = ref_distances(q, db), ref_relevance(yq, ydb)
    for n, value in zip(ns, got["precision"]):
        cut = min(n, 40)
        want = np.mean([np.sum(rel[i][np.argsort(dist[i], kind="stable")][:cut]) / cut for i in range(10)])
        assert value == pytest.approx(want, rel=1e-12)
    assert got["precision"][0] == pytest.approx(ev.evaluate(q, db, yq, ydb, topk=30)["precision_at_30"])


@pytest.mark.parametrize("n_bits,dtype", [(3, np.uint8), (64, np.uint8), (200, np.uint8), (256, np.uint16)])
def test_hamming_distances_match_reference(n_bits, dtype):
    rng = np.random.default_rng(n_bits)
    q, db = random_codes(rng, 5, n_bits), random_codes(rng, 17, n_bits)
    got = ev.hamming_distances(q, db)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, ref_distances(q, db))


def test_non_contiguous_inputs():
    rng = np.random.default_rng(9)
    q, db = random_codes(rng, 12, 16), random_codes(rng, 40, 16)
    yq, ydb = rng.integers(0, 3, 12), rng.integers(0, 3, 40)
    want = ev.evaluate(q[::2], db[::3], yq[::2], ydb[::3], topk=5)
    assert want == ev.evaluate(q[::2].copy(), db[::3].copy(), yq[::2].copy(), ydb[::3].copy(), topk=5)
    assert_metrics_match(want, ref_metrics(q[::2], db[::3], yq[::2], ydb[::3], 5))


# --------------------------------------------------------------------------------------------------
# Input errors
# --------------------------------------------------------------------------------------------------
def _ok():
    rng = np.random.default_rng(0)
    return random_codes(rng, 3, 8), random_codes(rng, 5, 8), np.array([0, 1, 2]), np.array([0, 1, 2, 0, 1])


@pytest.mark.parametrize("change,message", [
    (lambda q, db, yq, ydb: (q.astype(np.int64), db, yq, ydb), "query_codes must be packed uint8"),
    (lambda q, db, yq, ydb: (q, np.unpackbits(db, axis=1).astype(bool), yq, ydb), "db_codes must be packed uint8"),
    (lambda q, db, yq, ydb: (q, np.zeros((5, 2), np.uint8), yq, ydb), "1 bytes wide but db_codes are 2 bytes wide"),
    (lambda q, db, yq, ydb: (q[0], db, yq, ydb), "must be 2-D"),
    (lambda q, db, yq, ydb: (q[:0], db, yq[:0], ydb), "is empty"),
    (lambda q, db, yq, ydb: (q.tolist(), db, yq, ydb), "must be a numpy array"),
    (lambda q, db, yq, ydb: (q, db, yq[:2], ydb), "query_labels has 2 rows but query_codes has 3"),
    (lambda q, db, yq, ydb: (q, db, yq, ydb[:4]), "db_labels has 4 rows but db_codes has 5"),
    (lambda q, db, yq, ydb: (q, db, np.eye(3, dtype=np.uint8), ydb), "label kinds differ"),
    (lambda q, db, yq, ydb: (q, db, np.eye(3), np.eye(5, 4)), "3 label columns but db_labels have 4"),
    (lambda q, db, yq, ydb: (q, db, np.eye(3) * 2, np.eye(5, 3)), "neither 0 nor 1"),
    (lambda q, db, yq, ydb: (q, db, np.full((3, 3), np.nan), np.eye(5, 3)), "neither 0 nor 1"),
    (lambda q, db, yq, ydb: (q, db, yq.astype(float), ydb), "integer class ids"),
    (lambda q, db, yq, ydb: (q, db, yq[:, None, None], ydb), "1-D class ids or 2-D"),
])
def test_input_errors(change, message):
    with pytest.raises(ValueError, match=message):
        ev.evaluate(*change(*_ok()))


@pytest.mark.parametrize("topk", [0, -3, 2.5, True, "10"])
def test_bad_topk(topk):
    with pytest.raises(ValueError, match="topk must be a positive integer"):
        ev.evaluate(*_ok(), topk=topk)


def test_bad_curve_arguments():
    with pytest.raises(ValueError, match="n_bits=9 exceeds the 8 bits"):
        ev.pr_curve_by_radius(*_ok(), n_bits=9)
    with pytest.raises(ValueError, match="ns is empty"):
        ev.precision_at_n(*_ok(), ns=())
    with pytest.raises(ValueError, match="each of ns must be a positive integer"):
        ev.precision_at_n(*_ok(), ns=(5, 0))
    with pytest.raises(ValueError, match="1 bytes wide but db_codes are 2 bytes wide"):
        ev.hamming_distances(_ok()[0], np.zeros((5, 2), np.uint8))
