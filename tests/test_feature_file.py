"""Pre-extracted feature files (.npz, .mat v5 / v7.3, HDF5, pickle) on tiny fixtures made here."""
from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import scipy.io

from hashbench.datasets import DataError, get_protocol, load_dataset, make_split

N = {"query": 4, "database": 9, "train": 5}
D, C, T = 6, 5, 3


def _splits(seed=0, multi=False):
    """Per split: features, labels (class ids in a shuffled order, or multi-hot) and tags."""
    rng = np.random.default_rng(seed)
    out = {}
    for s, n in N.items():
        labels = (rng.random((n, C)) < 0.4).astype(np.uint8) if multi else rng.permutation(np.arange(n) % 3)
        out[s] = {"features": rng.normal(size=(n, D)).astype(np.float32), "labels": labels,
                  "tags": (rng.random((n, T)) < 0.5).astype(np.float32)}
    return out


def _check(data, ref, splits=("query", "database", "train"), tags=True):
    """``data`` holds ``ref``'s splits as row ranges in query, database, train order."""
    start = 0
    for s in splits:
        n = N[s]
        rows = data.splits[s]
        assert np.array_equal(rows, np.arange(start, start + n))
        start += n
        assert np.array_equal(data.features[rows], ref[s]["features"])
        assert np.array_equal(data.labels[rows], ref[s]["labels"])
        if tags:
            assert np.array_equal(data.side["tags"][rows], ref[s]["tags"])
    assert len(data) == start and data.features.dtype == np.float32 and data.features.shape == (start, D)
    assert ("tags" in data.side) == tags
    split = make_split(get_protocol("features"), data)
    for s in ("query", "database", "train"):
        assert np.array_equal(getattr(split, s), data.splits[s])


def _named(ref, names={"query": "query", "database": "database", "train": "train"},
           kinds={"features": "features", "labels": "labels", "tags": "tags"}, kind_first=False):
    out = {}
    for s, parts in ref.items():
        if s not in names:
            continue
        for k, arr in parts.items():
            if k in kinds:
                key = f"{kinds[k]}_{names[s]}" if kind_first else f"{names[s]}_{kinds[k]}"
                out[key] = arr.copy()
    return out


def test_npz_canonical_names(tmp_path):
    ref = _splits()
    path = tmp_path / "f.npz"
    np.savez(path, **_named(ref), unrelated=np.zeros(3))
    data = load_dataset("features", data_root=str(path))
    assert data.name == "features" and not data.multi_label and data.labels.dtype == np.int64
    assert data.images is None and str(path) in data.source
    _check(data, ref)


def test_npz_aliases_and_kind_first_names(tmp_path):
    ref = _splits(multi=True)
    path = tmp_path / "f.npz"
    np.savez(path, **_named(ref, names={"query": "Test", "database": "db", "train": "train"},
                            kinds={"features": "X", "labels": "y", "tags": "plabel"}, kind_first=True))
    data = load_dataset("features", data_root=str(path))
    assert data.multi_label and data.labels.dtype == np.uint8
    _check(data, ref)
    np.savez(path, **_named(ref, names={"query": "val", "database": "retrieval", "train": "train"},
                            kinds={"features": "feature", "labels": "label", "tags": "tag"}))
    _check(load_dataset("features", data_root=str(path)), ref)


def test_without_train_split_the_database_trains(tmp_path):
    ref = _splits()
    path = tmp_path / "f.npz"
    np.savez(path, **_named(ref, names={"query": "query", "database": "database"}, kinds={"features": "features",
                                                                                          "labels": "labels"}))
    data = load_dataset("features", data_root=str(path))
    _check(data, ref, splits=("query", "database"), tags=False)
    assert np.array_equal(data.splits["train"], data.splits["database"])


def test_files_of_the_same_shapes_get_different_split_digests(tmp_path):
    """Predefined splits are index ranges fixed by the sizes: the digest must see the feature values."""
    from hashbench.datasets import split_digest

    ref = _splits()
    rng = np.random.default_rng(7)
    noise = {s: {**parts, "features": rng.normal(size=parts["features"].shape).astype(np.float32)}
             for s, parts in ref.items()}
    np.savez(tmp_path / "real.npz", **_named(ref))
    np.savez(tmp_path / "noise.npz", **_named(noise))
    real, fake = (load_dataset("features", data_root=str(tmp_path / f)) for f in ("real.npz", "noise.npz"))
    real_split, fake_split = (make_split(get_protocol("features"), d) for d in (real, fake))
    for s in ("query", "database", "train"):
        assert np.array_equal(getattr(real_split, s), getattr(fake_split, s))
    assert split_digest(real_split, real) != split_digest(fake_split, fake)
    again = load_dataset("features", data_root=str(tmp_path / "real.npz"))
    assert split_digest(make_split(get_protocol("features"), again), again) == split_digest(real_split, real)


def test_query_rows_repeated_in_the_database_are_counted_with_a_warning(tmp_path):
    """Feature files carry no image identity: an identical feature row and label is reported, not refused."""
    ref = _splits()
    for kind in ("features", "labels", "tags"):  # queries 1 and 3 also stored in the database
        ref["database"][kind] = np.concatenate([ref["database"][kind], ref["query"][kind][[1, 3]]])
    arrays = _named(ref)
    data = load_dataset("features", data_root=_save(tmp_path, arrays))
    with pytest.warns(UserWarning, match=r"2 of 4 queries of features have the same features and label as a "
                                         r"database row and 0 as a training row"):
        split = make_split(get_protocol("features"), data)
    assert split.overlap == {"query_duplicates_in_database": 2, "query_duplicates_in_train": 0}
    assert len(split.database) == N["database"] + 2
    # without a train split the database trains: its duplicates are in the training set too
    del arrays["train_features"], arrays["train_labels"], arrays["train_tags"]
    data = load_dataset("features", data_root=_save(tmp_path, arrays, name="g.npz"))
    with pytest.warns(UserWarning, match="2 of 4 queries"):
        assert make_split(get_protocol("features"), data).overlap == {"query_duplicates_in_database": 2,
                                                                      "query_duplicates_in_train": 2}


def test_mat_v5_with_matlab_column_vectors(tmp_path):
    ref = _splits()
    arrays = _named(ref, names={"query": "test", "database": "retrieval", "train": "train"},
                    kinds={"features": "feature", "labels": "label", "tags": "tag"})
    arrays = {k: (v.astype(np.float64).reshape(-1, 1) if v.ndim == 1 else v.astype(np.float64))
              for k, v in arrays.items()}  # MATLAB keeps labels as n x 1 doubles
    path = tmp_path / "f.mat"
    scipy.io.savemat(path, arrays)
    data = load_dataset("features", data_root=str(path))
    assert data.labels.dtype == np.int64
    _check(data, ref)


def _write_matlab_v73(path, arrays):
    """What MATLAB's ``save -v7.3`` writes: HDF5 behind a 512-byte MATLAB header, arrays column-major."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in arrays.items():
            v2 = v.reshape(-1, 1) if v.ndim == 1 else v
            ds = f.create_dataset(k, data=np.ascontiguousarray(v2.astype(np.float64).T))
            ds.attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = header.ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header.ljust(512, b"\x00"))


def test_mat_v73_is_read_in_matlab_orientation(tmp_path):
    ref = _splits(multi=True)
    path = tmp_path / "f.mat"
    _write_matlab_v73(path, _named(ref))
    with h5py.File(path, "r") as f:  # the fixture really is transposed on disk
        assert f["query_features"].shape == (D, N["query"])
    data = load_dataset("features", data_root=str(path))
    _check(data, ref)


def test_plain_hdf5_is_read_as_stored(tmp_path):
    ref = _splits()
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        for k, v in _named(ref).items():
            f.create_dataset(k, data=v)
        f.create_group("extra")
    _check(load_dataset("features", data_root=str(path)), ref)


def _lagnh_pickles(folder, ref):
    """The LAGNH authors' layout: one pickle per split, keys ``<split>_feature|label|tag``."""
    names = {"train": "train", "database": "retrieval", "query": "val"}
    for s, fname in (("train", "train2017.pkl"), ("database", "retrieval2017.pkl"), ("query", "val2017.pkl")):
        with open(folder / fname, "wb") as f:
            pickle.dump({f"{names[s]}_feature": ref[s]["features"], f"{names[s]}_label": ref[s]["labels"],
                         f"{names[s]}_tag": ref[s]["tags"]}, f)


class _Payload:
    """Unpickling this creates a folder: proof of whether a pickle was executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.mkdir, (self.marker,)


def test_pickles_need_allow_pickle(tmp_path):
    marker = tmp_path / "pickle-ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"query_features": _Payload(str(marker))}))
    with pytest.raises(DataError, match=r"refusing to read the pickle"):
        load_dataset("features", data_root=str(tmp_path / "evil.pkl"))
    assert not marker.exists()
    ref = _splits(multi=True)
    path = tmp_path / "all.pkl"
    with open(path, "wb") as f:
        pickle.dump(_named(ref, names={"query": "val", "database": "retrieval", "train": "train"},
                           kinds={"features": "feature", "labels": "label", "tags": "tag"}), f)
    with pytest.raises(DataError, match=r"refusing to read the pickle .*arbitrary code.*--allow-pickle"):
        load_dataset("features", data_root=str(path))
    with pytest.warns(UserWarning, match=r"unpickling runs code"):
        data = load_dataset("features", data_root=str(path), allow_pickle=True)
    _check(data, ref)


def test_folder_of_lagnh_pickles(tmp_path):
    ref = _splits(multi=True)
    _lagnh_pickles(tmp_path, ref)
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.raises(DataError, match=r"--allow-pickle"):
        load_dataset("features", data_root=str(tmp_path))
    with pytest.warns(UserWarning, match=r"unpickling runs code"):
        data = load_dataset("features", data_root=str(tmp_path), allow_pickle=True)
    _check(data, ref)
    assert data.source.count(".pkl") == 3


def test_protocols():
    assert get_protocol("features").topk == 1000 and get_protocol("features").predefined
    assert get_protocol("features", "features-5000").topk == 5000
    assert get_protocol("features", "features-5000").predefined


def _save(tmp_path, arrays, name="f.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_non_finite_values_are_counted(tmp_path):
    ref = _splits()
    arrays = _named(ref)
    arrays["database_features"][2, 1] = np.nan
    arrays["database_features"][5, 0] = np.nan
    arrays["database_features"][7, 3] = np.inf
    with pytest.raises(DataError, match=r"database features \(f\.npz:database_features\) contain 2 NaN and "
                                        r"1 infinite value\(s\) \(first in row 2\)"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(ref)
    arrays["query_features"] = arrays["query_features"].astype(np.float64)
    arrays["query_features"][1, 1] = 1e300  # finite in float64, inf in float32
    with pytest.raises(DataError, match=r"query features .* 0 NaN and 1 infinite"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(ref)
    arrays["train_tags"][0, 0] = np.nan
    with pytest.raises(DataError, match=r"train tags .* 1 NaN"):
        load_dataset("features", data_root=_save(tmp_path, arrays))


def test_shape_errors(tmp_path):
    ref = _splits()
    arrays = _named(ref)
    arrays["train_features"] = arrays["train_features"][:, :4]
    with pytest.raises(DataError, match=r"feature dimensions differ across splits .*'train': 4"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(ref)
    arrays["query_labels"] = arrays["query_labels"][:3]
    with pytest.raises(DataError, match=r"query: f\.npz:query_features has 4 rows but f\.npz:query_labels has 3"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(ref)
    arrays["query_features"] = arrays["query_features"][:, 0]
    with pytest.raises(DataError, match=r"features must be \(n, d\), got shape \(4,\)"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(ref)
    arrays["query_features"], arrays["query_labels"] = np.zeros((0, D)), np.zeros(0, dtype=int)
    del arrays["query_tags"]
    with pytest.raises(DataError, match=r"query_features: the query split has no rows"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(ref)
    arrays["query_tags"] = arrays["query_tags"][:2]
    with pytest.raises(DataError, match=r"query: tags f\.npz:query_tags must be \(4, T\)"):
        load_dataset("features", data_root=_save(tmp_path, arrays))


def test_label_errors(tmp_path):
    ref, multi = _splits(), _splits(multi=True)
    arrays = _named(ref)
    arrays["database_labels"] = multi["database"]["labels"]
    with pytest.raises(DataError, match=r"label kinds differ across splits .*'database': '5-label multi-hot'"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(multi)
    arrays["train_labels"] = arrays["train_labels"] * 2
    with pytest.raises(DataError, match=r"multi-hot labels must be 0 or 1, \d+ entries are not"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(ref)
    arrays["query_labels"] = arrays["query_labels"] + 0.5
    with pytest.raises(DataError, match=r"query_labels: class ids must be whole numbers"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(ref)
    arrays["query_labels"] = arrays["query_labels"] - 1
    with pytest.raises(DataError, match=r"class ids must be >= 0"):
        load_dataset("features", data_root=_save(tmp_path, arrays))


def test_missing_and_ambiguous_names(tmp_path):
    ref = _splits()
    arrays = _named(ref)
    arrays["val_features"] = arrays["query_features"]
    with pytest.raises(DataError, match=r"f\.npz:query_features and f\.npz:val_features both give the query features"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(ref, names={"database": "database", "train": "train"})
    with pytest.raises(DataError, match=r"no query split: expected arrays named <query/test/val>_features .*"
                                        r"found: .*f\.npz:database_features"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(ref)
    del arrays["database_labels"]
    with pytest.raises(DataError, match=r"the database split has features, tags but no labels"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    arrays = _named(ref)
    del arrays["query_tags"]
    with pytest.warns(UserWarning, match=r"only the database, train split\(s\) have tags"):
        data = load_dataset("features", data_root=_save(tmp_path, arrays))
    assert "tags" not in data.side


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match=r"pass data_root=<file or folder>"):
        load_dataset("features")
    with pytest.raises(DataError, match=r"does not exist"):
        load_dataset("features", data_root=str(tmp_path / "nope.npz"))
    (tmp_path / "f.csv").write_text("1,2")
    with pytest.raises(DataError, match=r"unsupported feature file type '\.csv'"):
        load_dataset("features", data_root=str(tmp_path / "f.csv"))
    with pytest.raises(DataError, match=r"holds no feature file"):
        load_dataset("features", data_root=str(tmp_path))
    ref = _splits()
    arrays = _named(ref)
    arrays["query_labels"] = np.array([["a"], ["b"], ["c"], ["d"]], dtype=object)
    with pytest.raises(DataError, match=r"object arrays, which need pickle"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
    (tmp_path / "bad.mat").write_bytes(b"garbage" * 40)
    with pytest.raises(DataError, match=r"cannot read .*bad\.mat as a MATLAB \.mat file"):
        load_dataset("features", data_root=str(tmp_path / "bad.mat"))
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"holds a list; expected a dict"):
        load_dataset("features", data_root=str(path), allow_pickle=True)


def test_class_sorted_database_warns(tmp_path):
    ref = _splits()
    arrays = _named(ref)
    order = np.argsort(arrays["database_labels"], kind="stable")
    arrays["database_labels"] = arrays["database_labels"][order]
    arrays["database_features"] = arrays["database_features"][order]
    with pytest.warns(UserWarning, match=r"sorted by class"):
        load_dataset("features", data_root=_save(tmp_path, arrays))
