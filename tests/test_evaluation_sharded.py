"""evaluate_sharded equals evaluate on the concatenated database bit for bit, and the exact sums."""
from __future__ import annotations

import math
import pickle
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import numpy as np
import pytest

from bench import evaluation as ev


def tie_heavy(seed, n_query, n_db, n_bits=8, n_classes=3):
    """Few bits and a small pool of distinct codes: huge tie groups at every distance."""
    rng = np.random.default_rng(seed)
    pool = np.packbits(rng.random((12, n_bits)) < 0.5, axis=1, bitorder="little")
    q = pool[rng.integers(0, pool.shape[0], n_query)]
    db = pool[rng.integers(0, pool.shape[0], n_db)]
    return q, db, rng.integers(0, n_classes, n_query), rng.integers(0, n_classes, n_db)


def split(n, sizes):
    edges = np.cumsum([0, *sizes])
    assert edges[-1] == n
    return list(zip(edges[:-1], edges[1:]))


UNEVEN = [1, 37, 1, 1, 200, 60, 99, 1]                    # 400 items, several size-1 shards


@pytest.mark.parametrize("topk", [1, 5, 50, 399, 1000])
def test_single_label_tie_heavy_uneven_shards_equal_one_pass(topk):
    q, db, yq, ydb = tie_heavy(topk, 23, 400)
    want = ev.evaluate(q, db, yq, ydb, topk=topk)
    shards = [(db[a:b], ydb[a:b]) for a, b in split(400, UNEVEN)]
    assert ev.evaluate_sharded(q, yq, shards, topk=topk) == want


@pytest.mark.parametrize("n_bits,n_labels", [(8, 5), (70, 3), (130, 65)])
def test_multi_label_tie_heavy_shards_equal_one_pass(n_bits, n_labels):
    q, db, _, _ = tie_heavy(n_bits, 11, 300, n_bits=n_bits)
    rng = np.random.default_rng(n_labels)
    yq = (rng.random((11, n_labels)) < 0.3).astype(np.uint8)
    ydb = (rng.random((300, n_labels)) < 0.3).astype(np.uint8)
    yq[0] = 0                                                  # a query relevant to nothing
    want = ev.evaluate(q, db, yq, ydb, topk=40)
    shards = [(db[a:b], ydb[a:b]) for a, b in split(300, [1, 150, 1, 48, 100])]
    assert ev.evaluate_sharded(q, yq, shards, topk=40) == want


@pytest.mark.parametrize("topk", [1, 30, 2000, 8999])
def test_without_map_all_shards_equal_one_pass(topk):
    # The second scan of each shard prunes by the global offsets: an item whose distance already has
    # topk items before it in the whole database is not recorded.
    q, db, yq, ydb = tie_heavy(topk, 19, 9000)
    want = ev.evaluate(q, db, yq, ydb, topk=topk, map_all=False)
    assert "map_all" not in want
    shards = [(db[a:b], ydb[a:b]) for a, b in split(9000, [1, 4500, 3, 4096, 400])]
    assert ev.evaluate_sharded(q, yq, shards, topk=topk, map_all=False) == want
    full = ev.evaluate_sharded(q, yq, shards, topk=topk)
    assert {k: v for k, v in full.items() if k != "map_all"} == want


def test_every_split_point_of_a_small_database():
    q, db, yq, ydb = tie_heavy(3, 9, 30, n_bits=4)
    want = ev.evaluate(q, db, yq, ydb, topk=7)
    for cut in range(1, 30):
        assert ev.evaluate_sharded(q, yq, [(db[:cut], ydb[:cut]), (db[cut:], ydb[cut:])], topk=7) == want
    assert ev.evaluate_sharded(q, yq, [(db[i:i + 1], ydb[i:i + 1]) for i in range(30)], topk=7) == want
    assert ev.evaluate_sharded(q, yq, [(db, ydb)], topk=7) == want


@pytest.mark.parametrize("n_bits", [64, 12])
def test_memory_mapped_shards_and_paths(tmp_path, n_bits):
    # 64 bits: whole words, read in place from the mapping; 12 bits: padded copies.
    q, db, yq, ydb = tie_heavy(n_bits, 17, 500, n_bits=n_bits, n_classes=4)
    want = ev.evaluate(q, db, yq, ydb, topk=100)
    shards = []
    for s, (a, b) in enumerate(split(500, [250, 1, 249])):
        path = tmp_path / f"shard{s}.npy"
        np.save(path, db[a:b])
        shards.append((np.load(path, mmap_mode="r") if s != 1 else str(path), ydb[a:b]))
    assert isinstance(shards[0][0], np.memmap)
    assert ev.evaluate_sharded(q, yq, shards, topk=100) == want
    assert ev.evaluate_sharded(q, yq, [(path, ydb[a:b]) for path, (a, b) in
                                       zip(sorted(tmp_path.glob("shard*.npy")), split(500, [250, 1, 249]))],
                               topk=100) == want


def test_custom_map_fn_receives_picklable_work_and_any_execution_order():
    q, db, yq, ydb = tie_heavy(5, 14, 256)
    want = ev.evaluate(q, db, yq, ydb, topk=20)
    calls = []

    def like_a_cluster(function, items):
        # Ship each item and result through pickle (as Ray would) and run the items in reverse order.
        calls.append(len(items))
        shipped = [pickle.loads(pickle.dumps(item)) for item in items]
        results = {i: pickle.loads(pickle.dumps(function(item))) for i, item in reversed(list(enumerate(shipped)))}
        return [results[i] for i in range(len(items))]

    shards = [(db[a:b], ydb[a:b]) for a, b in split(256, [100, 1, 155])]
    assert ev.evaluate_sharded(q, yq, shards, topk=20, map_fn=like_a_cluster) == want
    assert calls == [3, 3]                                     # histograms, then ranks
    with ThreadPoolExecutor(2) as pool:
        assert ev.evaluate_sharded(q, yq, shards, topk=20, map_fn=pool.map) == want


def test_clustered_64_bit_codes_many_queries():
    # More queries than one group per class, so both kernel paths (one-class groups and mixed groups) run.
    rng = np.random.default_rng(12)
    protos = rng.random((5, 64)) < 0.5

    def draw(n):
        y = rng.integers(0, 5, n)
        return np.packbits(protos[y] ^ (rng.random((n, 64)) < 0.2), axis=1, bitorder="little"), y

    (q, yq), (db, ydb) = draw(61), draw(3000)
    want = ev.evaluate(q, db, yq, ydb, topk=100)
    shards = [(db[a:b], ydb[a:b]) for a, b in split(3000, [1000, 999, 1, 1000])]
    assert ev.evaluate_sharded(q, yq, shards, topk=100) == want


def test_map_at_k_is_the_exact_sum_rounded_once():
    # AP@K of a query = (exact sum of its float64 terms rel_rank / rank, rounded once) / R_K, whatever the
    # number of terms; math.fsum rounds the exact sum of floats correctly.
    q, db, yq, ydb = tie_heavy(9, 10, 3000, n_bits=8, n_classes=3)
    dist = ev.hamming_distances(q, db)
    got = ev.average_precision_at_k(q, db, yq, ydb, topk=2000)
    for i in range(len(q)):
        ranked = ydb[np.argsort(dist[i], kind="stable")] == yq[i]
        ranks = np.flatnonzero(ranked[:2000]) + 1
        terms = [(k + 1) / int(r) for k, r in enumerate(ranks)]
        assert float(sum(Fraction(t) for t in terms)) == math.fsum(terms)
        assert got[i] == (math.fsum(terms) / len(terms) if terms else 0.0)


def test_shard_input_errors():
    q, db, yq, ydb = tie_heavy(1, 3, 10)
    with pytest.raises(ValueError, match="non-empty sequence of"):
        ev.evaluate_sharded(q, yq, [])
    with pytest.raises(ValueError, match="non-empty sequence of"):
        ev.evaluate_sharded(q, yq, db)
    with pytest.raises(ValueError, match=r"shards\[1\] must be a \(codes, labels\) pair"):
        ev.evaluate_sharded(q, yq, [(db, ydb), db])
    with pytest.raises(ValueError, match=r"1 bytes wide but shards\[1\] codes are 2 bytes wide"):
        ev.evaluate_sharded(q, yq, [(db, ydb), (np.zeros((4, 2), np.uint8), ydb[:4])])
    with pytest.raises(ValueError, match=r"shards\[0\] labels has 9 rows but shards\[0\] codes has 10"):
        ev.evaluate_sharded(q, yq, [(db, ydb[:9])])
    with pytest.raises(ValueError, match=r"label kinds differ: query_labels are 1-D class ids, shards\[0\] labels"):
        ev.evaluate_sharded(q, yq, [(db, np.eye(10, 3))])
    with pytest.raises(ValueError, match="map_fn returned 1 results for 2 shards"):
        ev.evaluate_sharded(q, yq, [(db[:5], ydb[:5]), (db[5:], ydb[5:])], map_fn=lambda f, xs: [f(xs[0])])
    with pytest.raises(ValueError, match="topk must be a positive integer"):
        ev.evaluate_sharded(q, yq, [(db, ydb)], topk=0)


def test_class_ids_only_compared_for_equality():
    # Negative and very large class ids (and a query class absent from the database) score as their
    # dense renumbering does, in one pass and sharded.
    q, db, yq, ydb = tie_heavy(4, 13, 90, n_classes=4)
    odd = np.array([-7, 3, 2**40, -2**62])
    yq_odd, ydb_odd = odd[yq], odd[ydb]
    yq_odd[0] = 12345
    yq_dense = yq.copy()
    yq_dense[0] = 99
    want = ev.evaluate(q, db, yq_dense, ydb, topk=10)
    assert ev.evaluate(q, db, yq_odd, ydb_odd, topk=10) == want
    assert ev.evaluate_sharded(q, yq_odd, [(db[:1], ydb_odd[:1]), (db[1:], ydb_odd[1:])], topk=10) == want


@pytest.mark.parametrize("labels_kind", ["single", "multi"])
def test_curves_over_shards_equal_one_pass(labels_kind):
    q, db, yq, ydb = tie_heavy(21, 19, 333, n_bits=12)
    if labels_kind == "multi":
        rng = np.random.default_rng(0)
        yq, ydb = (rng.random((19, 4)) < 0.4).astype(np.uint8), (rng.random((333, 4)) < 0.4).astype(np.uint8)
    shards = [(db[a:b], ydb[a:b]) for a, b in split(333, [1, 100, 1, 231])]
    want = ev.pr_curve_by_radius(q, db, yq, ydb, n_bits=12)
    got = ev.pr_curve_by_radius_sharded(q, yq, shards, n_bits=12)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    ns = (1, 7, 100, 333, 5000)
    want = ev.precision_at_n(q, db, yq, ydb, ns=ns)
    got = ev.precision_at_n_sharded(q, yq, shards, ns=ns)
    np.testing.assert_array_equal(got["n"], want["n"])
    np.testing.assert_array_equal(got["precision"], want["precision"])
    with pytest.raises(ValueError, match="n_bits=17 exceeds the 16 bits"):
        ev.pr_curve_by_radius_sharded(q, yq, shards, n_bits=17)
    with pytest.raises(ValueError, match="ns is empty"):
        ev.precision_at_n_sharded(q, yq, shards, ns=())


@pytest.mark.parametrize("map_all", [True, False])
def test_second_pass_prunes_only_where_an_item_lies_beyond_the_radius(monkeypatch, map_all):
    # With map_all the last cut is the whole database, so a shard's radius (from the global offsets) only
    # stops short of the largest distance where the shard has no item: nothing to prune, and the pass
    # must take the unpruned kernel, which records every relevant item faster than the class lists. The
    # pruned passes go to the class lists (`_class_scan_kernel` with ranks).
    rng = np.random.default_rng(3)
    protos = rng.random((3, 64)) < 0.5
    y = rng.integers(0, 3, 2016)
    codes = np.packbits(protos[y] ^ (rng.random((2016, 64)) < 0.1), axis=1, bitorder="little")
    q, yq, db, ydb = codes[:16], y[:16], codes[16:], y[16:]
    want = ev.evaluate(q, db, yq, ydb, topk=50, map_all=map_all)
    pruned = []
    original = ev._class_scan_kernel

    def spy(n_words, ranks):
        pruned.append(ranks)
        return original(n_words, ranks)

    monkeypatch.setattr(ev, "_class_scan_kernel", spy)
    shards = [(db[a:b], ydb[a:b]) for a, b in split(2000, [700, 600, 700])]
    assert ev.evaluate_sharded(q, yq, shards, topk=50, map_all=map_all) == want
    assert any(pruned) != map_all
