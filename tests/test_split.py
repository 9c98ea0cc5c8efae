"""Splits: the content digest (`split_digest`) and the query-overlap counts `make_split` records.

List-file and feature-file cases use the fixtures of their own test modules (tests/test_listfile.py,
tests/test_feature_file.py); these tests use synthetic in-memory datasets.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from hashbench.datasets import DataError, Dataset, Protocol, Split, get_protocol, make_split, split_digest
from hashbench.datasets.listfile import ImageFiles
from hashbench.datasets.protocols import _RowKeys, query_overlap

REPO = Path(__file__).resolve().parents[1]
PREDEFINED = Protocol("t", "t", topk=5, predefined=True)


def _images(n=12, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(name="synthetic", labels=np.arange(n) % 3,
                   images=rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8),
                   splits={"query": np.array([0, 1]), "database": np.arange(2, 10), "train": np.array([2, 5, 7])})


def _features(n=12, d=5, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(name="feats", labels=np.arange(n) % 3, features=rng.normal(size=(n, d)).astype(np.float32),
                   splits={"query": np.array([0, 1, 2]), "database": np.arange(3, 12), "train": np.arange(3, 7)})


def _split(data: Dataset) -> Split:
    return Split(*(np.asarray(data.splits[k], np.int64) for k in ("query", "database", "train")))


# ---------------------------------------------------------------- split_digest

def test_digest_is_a_sha256_of_the_content_and_sees_every_selected_part():
    data = _images()
    split = _split(data)
    base = split_digest(split, data)
    assert len(base) == 64 and int(base, 16) >= 0
    assert split_digest(split, _images()) == base  # same content, another object

    def changed(**kw):
        d = _images()
        for k, fn in kw.items():
            fn(d)
        return split_digest(split, d)

    # a pixel of a query, a database item, a training-only-listed item; a label of a selected row
    assert changed(q=lambda d: d.images[0].__setitem__((0, 0, 0), d.images[0, 0, 0, 0] ^ 1)) != base
    assert changed(db=lambda d: d.images[9].__setitem__((3, 3, 2), d.images[9, 3, 3, 2] ^ 1)) != base
    assert changed(lab=lambda d: d.labels.__setitem__(4, (d.labels[4] + 1) % 3)) != base
    # rows no split selects are not part of the split's content
    assert changed(free=lambda d: d.images[11].__setitem__((0, 0, 0), d.images[11, 0, 0, 0] ^ 1)) == base
    assert changed(free_label=lambda d: d.labels.__setitem__(10, 2)) == base
    # indices: the database order decides tie-breaking, so a permuted database is another split
    assert split_digest(Split(split.query, split.database[::-1], split.train), data) != base
    assert split_digest(Split(split.query, split.database, split.train[:2]), data) != base
    # which part a row is in matters, not only the union
    assert split_digest(Split(split.train, split.database, split.query), data) != base
    # the overlap counts follow from the content and are not hashed
    assert split_digest(Split(split.query, split.database, split.train, overlap={"x": 1}), data) == base


def test_digest_of_features_sees_every_feature_value():
    data = _features()
    split = _split(data)
    base = split_digest(split, data)
    for row in (0, 5, 11):
        d = _features()
        d.features[row, 2] = np.nextafter(d.features[row, 2], np.float32(np.inf))  # one ulp
        assert split_digest(split, d) != base
    noise = _features(seed=99)  # same shapes, same labels, other values
    assert split_digest(split, noise) != base
    d = _features()
    d.images = np.zeros((12, 2, 2), np.uint8)  # features, when present, are the content hashed
    assert split_digest(split, d) == base


def test_digest_of_image_files_hashes_paths_not_their_folder_without_reading_images(tmp_path):
    class Exploding(ImageFiles):
        def __getitem__(self, i):
            raise AssertionError("split_digest decoded an image")

    paths = [f"img/{i}.jpg" for i in range(6)]

    def data(paths=paths, fingerprint="lists-sha"):
        return Dataset(name="lf", labels=np.eye(6, 3, dtype=np.uint8), images=Exploding(tmp_path, paths),
                       fingerprint=fingerprint)

    split = Split(np.array([0]), np.array([1, 2, 3, 4]), np.array([1, 2]))
    base = split_digest(split, data())
    # the loader's fingerprint names the image folder: where files sit is not part of a split's content
    assert split_digest(split, data(fingerprint="/elsewhere|other lists")) == base
    assert split_digest(split, data(paths=paths[:2] + ["img/x.jpg"] + paths[3:])) != base
    assert split_digest(split, data(paths=paths[:5] + ["img/unused.jpg"])) == base  # row 5 is in no split
    assert split_digest(split, data(paths=["./img/0.jpg"] + paths[1:])) == base  # normalised: same file


def test_digest_of_other_image_sequences_and_of_bare_labels():
    data = _images()
    split = _split(data)
    lazy = Dataset(name="lazy", labels=data.labels, images=list(data.images))
    base = split_digest(split, lazy)
    lazy.images[9] = lazy.images[9].copy()
    lazy.images[9][0, 0, 0] ^= 1
    assert split_digest(split, lazy) != base
    bare = Dataset(name="bare", labels=data.labels)  # labels only (e.g. a shape-only test dataset)
    assert split_digest(split, bare) != split_digest(split, Dataset(name="bare", labels=(data.labels + 1) % 3))


def test_digest_is_stable_across_processes_and_versions():
    """The digest is logged with every run and compared across runs: its format must not drift."""
    code = textwrap.dedent("""
        import numpy as np
        from hashbench.datasets import Dataset, Split, split_digest
        data = Dataset(name="pinned", labels=np.arange(6, dtype=np.int64) % 2,
                       images=np.arange(6 * 2 * 2, dtype=np.uint8).reshape(6, 2, 2))
        print(split_digest(Split(np.array([0, 1]), np.array([5, 2, 3, 4]), np.array([2, 4])), data))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""})
    here = split_digest(Split(np.array([0, 1]), np.array([5, 2, 3, 4]), np.array([2, 4])),
                        Dataset(name="pinned", labels=np.arange(6, dtype=np.int64) % 2,
                                images=np.arange(6 * 2 * 2, dtype=np.uint8).reshape(6, 2, 2)))
    assert out.stdout.strip() == here
    # Pinned: a change of format must be deliberate (bump _DIGEST_VERSION: old runs stop comparing equal).
    assert here == "057692118d092433a90da0923f27a0e0824dd37bc2a0a3456ffd71331cb1213f"


def test_digest_rejects_indices_outside_the_dataset():
    data = _images()
    with pytest.raises(DataError, match=r"database indices must lie in \[0, 12\)"):
        split_digest(Split(np.array([0]), np.array([3, 12]), np.array([3])), data)


# ---------------------------------------------------------------- query overlap

def test_sampled_protocols_record_zero_overlap():
    from hashbench.datasets import load_dataset

    data = load_dataset("digits")
    split = make_split(get_protocol("digits"), data)
    assert split.overlap == {"query_in_database": 0, "query_in_train": 0}


def test_same_rows_in_query_and_database_are_refused_unless_allowed():
    data = _images()
    data.splits["database"] = np.arange(0, 10)  # both queries are database rows, none a training row
    with pytest.raises(DataError) as err:
        make_split(PREDEFINED, data)
    msg = str(err.value)
    assert msg.startswith("2 of 2 queries are also in the database and 0 in the training set (same rows of synthetic)")
    assert "find itself at distance 0" in msg and "allow_query_overlap=True (--allow-query-overlap)" in msg
    split = make_split(PREDEFINED, data, allow_query_overlap=True)
    assert split.overlap == {"query_in_database": 2, "query_in_train": 0}
    assert np.array_equal(split.database, np.arange(10))


def test_queries_in_the_training_set_only_are_refused_too():
    data = _images()
    data.splits["train"] = np.array([1, 2, 5])
    with pytest.raises(DataError, match=r"0 of 2 queries are also in the database and 1 in the training set .*"
                                        r"trained on the queries it is evaluated with"):
        make_split(PREDEFINED, data)
    assert make_split(PREDEFINED, data, allow_query_overlap=True).overlap == {"query_in_database": 0,
                                                                              "query_in_train": 1}


def test_training_set_drawn_from_the_database_is_not_overlap():
    split = make_split(PREDEFINED, _images())
    assert split.overlap == {"query_in_database": 0, "query_in_train": 0}


def _brute_force(data: Dataset, query, other) -> int:
    """Queries whose (feature row, label) equals some row of ``other``: a full comparison matrix."""
    f, y = data.features + np.float32(0), np.asarray(data.labels)
    same = (f[query][:, None, :] == f[other][None, :, :]).all(-1) & (y[query][:, None] == y[other][None, :])
    return int(same.any(1).sum())


def test_feature_duplicates_are_counted_and_warned_not_refused():
    data = _features(n=40, seed=3)
    data.splits = {"query": np.arange(0, 8), "database": np.arange(8, 40), "train": np.arange(8, 20)}
    # plant duplicates: queries 1, 4 in the database, 4 also in train; query 6 only shares its features
    for q, r in ((1, 30), (4, 10), (6, 25)):
        data.features[r] = data.features[q]
    data.labels[30], data.labels[10] = data.labels[1], data.labels[4]
    data.labels[25] = (data.labels[6] + 1) % 3
    data.features[2, 0], data.features[35] = -0.0, data.features[2]  # -0.0 and 0.0: the same value
    data.features[35, 0], data.labels[35] = 0.0, data.labels[2]
    with pytest.warns(UserWarning, match=r"3 of 8 queries of feats have the same features and label as a "
                                         r"database row and 1 as a training row"):
        split = make_split(PREDEFINED, data)
    assert split.overlap == {"query_duplicates_in_database": 3, "query_duplicates_in_train": 1}
    assert split.overlap["query_duplicates_in_database"] == _brute_force(data, split.query, split.database)
    assert split.overlap["query_duplicates_in_train"] == _brute_force(data, split.query, split.train)


def test_feature_files_without_duplicates_make_no_noise():
    data = _features()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split = make_split(PREDEFINED, data)
    assert split.overlap == {"query_duplicates_in_database": 0, "query_duplicates_in_train": 0}


@pytest.mark.parametrize("seed", range(4))
def test_duplicate_counts_match_brute_force_even_when_every_hash_collides(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    n, d = 60, 3
    features = rng.integers(-1, 2, (n, d)).astype(np.float32)  # few distinct rows: many true duplicates
    labels = rng.integers(0, 2, n)
    data = Dataset(name="dups", labels=labels, features=features)
    split = Split(np.arange(0, 15), rng.permutation(np.arange(15, 60)), np.arange(15, 30))
    honest = query_overlap(split, data)
    assert honest["query_duplicates_in_database"] == _brute_force(data, split.query, split.database)
    assert honest["query_duplicates_in_train"] == _brute_force(data, split.query, split.train)
    real_init = _RowKeys.__init__

    def colliding(self, data):
        real_init(self, data)
        self.coefficients = np.zeros_like(self.coefficients)  # every row hashes to 0

    monkeypatch.setattr(_RowKeys, "__init__", colliding)
    assert query_overlap(split, data) == honest


def test_multi_hot_labels_are_part_of_a_duplicate():
    features = np.zeros((4, 2), np.float32)
    labels = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], np.uint8)
    data = Dataset(name="mh", labels=labels, features=features)
    split = Split(np.array([0]), np.array([2, 3]), np.array([2]))
    assert query_overlap(split, data) == {"query_duplicates_in_database": 0, "query_duplicates_in_train": 0}
    split = Split(np.array([0]), np.array([1, 2]), np.array([2]))
    assert query_overlap(split, data) == {"query_duplicates_in_database": 1, "query_duplicates_in_train": 0}
