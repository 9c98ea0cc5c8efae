"""Fashion-MNIST loader and IDX reader, on tiny IDX fixtures written here (and the real data when installed)."""
from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from hashbench.datasets import TEST, TRAIN, DataError, load_dataset
from hashbench.datasets import fashion_mnist as fm
from hashbench.datasets.idx import read_idx
from local_http_server import serve_folder

N_TRAIN, N_TEST = 6, 4


def idx_bytes(arr: np.ndarray, type_code: int = 0x08, dtype: str = ">u1") -> bytes:
    """IDX encoding written from the format's definition, independently of the reader."""
    header = bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(dtype).tobytes()


def write(path: Path, raw: bytes, gz: bool = True) -> Path:
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


def write_tiny(folder: Path, tiny: dict, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in tiny.items():
        write(folder / (stem + ".gz" if gz else stem), idx_bytes(arr), gz=gz)
    return folder


@pytest.fixture
def no_system_copy(monkeypatch):
    """Hide an installed Debian package so the cache and download paths are exercised."""
    monkeypatch.setattr(fm, "DEBIAN_DIRS", ())
    monkeypatch.setattr(fm, "_dpkg_folder", lambda: None)


def check_tiny(data, tiny, source):
    assert data.name == "fashion-mnist" and data.source == str(source)
    assert data.images.dtype == np.uint8 and data.images.shape == (N_TRAIN + N_TEST, 28, 28)
    np.testing.assert_array_equal(data.images[:N_TRAIN], tiny["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.images[N_TRAIN:], tiny["t10k-images-idx3-ubyte"])
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == tiny["train-labels-idx1-ubyte"].tolist() + tiny["t10k-labels-idx1-ubyte"].tolist()
    assert data.partition.tolist() == [TRAIN] * N_TRAIN + [TEST] * N_TEST
    assert data.classes == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@pytest.mark.parametrize("gz", [True, False])
def test_load_from_data_root(tmp_path, tiny, gz, data_home):
    folder = write_tiny(tmp_path / "fm", tiny, gz=gz)
    data = load_dataset("fashion-mnist", data_root=str(folder))
    check_tiny(data, tiny, folder)
    # The fingerprint (part of the feature-cache key) names each file's bytes.
    for f in folder.iterdir():
        assert f"{f.name}={hashlib.md5(f.read_bytes()).hexdigest()}" in data.fingerprint


def test_data_root_missing_file_says_what_was_looked_for(tmp_path, tiny, data_home):
    folder = write_tiny(tmp_path / "fm", tiny)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", data_root=str(folder))
    msg = str(err.value)
    missing = msg.split(": missing ")[1].split("(or")[0]
    assert "t10k-labels-idx1-ubyte.gz" in missing and "train-images" not in missing and str(folder) in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset("fashion-mnist", data_root=str(folder / "absent"))


def _header_only(arr):
    return idx_bytes(arr)[:4 + 4 * arr.ndim - 2]


@pytest.mark.parametrize("corrupt, fragment", [
    (lambda a: b"\x01\x00" + idx_bytes(a)[2:], "not an IDX file"),
    (lambda a: idx_bytes(a)[:2] + b"\x07" + idx_bytes(a)[3:], "not an IDX file"),
    (lambda a: idx_bytes(a)[:-5], "truncated"),
    (lambda a: idx_bytes(a) + b"\0", "truncated or corrupt"),
    (_header_only, "truncated IDX header"),
    (lambda a: b"\0\0", "only 2 bytes"),
    (lambda a: bytes([0, 0, 8, 0]), "0 dimensions"),
])
def test_malformed_idx_is_a_clear_error(tmp_path, tiny, corrupt, fragment, data_home):
    folder = write_tiny(tmp_path / "fm", tiny)
    bad = write(folder / "train-images-idx3-ubyte.gz", corrupt(tiny["train-images-idx3-ubyte"]))
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", data_root=str(folder))
    assert fragment in str(err.value) and str(bad) in str(err.value)


def test_damaged_gzip(tmp_path, tiny, data_home):
    folder = write_tiny(tmp_path / "fm", tiny)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", data_root=str(folder))
    assert "damaged gzip" in str(err.value) and str(path) in str(err.value)


def test_inconsistent_files(tmp_path, tiny, data_home):
    folder = write_tiny(tmp_path / "fm", tiny)
    write(folder / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(N_TRAIN + 1, np.uint8)))
    with pytest.raises(DataError, match="expected 6 labels"):
        load_dataset("fashion-mnist", data_root=str(folder))
    write(folder / "train-labels-idx1-ubyte.gz", idx_bytes(np.full(N_TRAIN, 10, np.uint8)))
    with pytest.raises(DataError, match=r"0\.\.9"):
        load_dataset("fashion-mnist", data_root=str(folder))
    write(folder / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(N_TRAIN, np.uint8)))
    write(folder / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((N_TRAIN, 32, 32), np.uint8)))
    with pytest.raises(DataError, match=r"\(n, 28, 28\)"):
        load_dataset("fashion-mnist", data_root=str(folder))


@pytest.mark.parametrize("code, dtype", [(0x08, ">u1"), (0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"),
                                         (0x0D, ">f4"), (0x0E, ">f8")])
def test_idx_types_and_byte_order(tmp_path, code, dtype):
    signed = dtype[1] != "u"
    values = np.array([[-3, 1, 2], [100, 0, -1]]) if signed else np.array([[3, 1, 2], [200, 0, 255]])
    path = write(tmp_path / "x.idx", idx_bytes(values, code, dtype), gz=False)
    got = read_idx(path)
    assert got.shape == (2, 3) and got.dtype.isnative
    np.testing.assert_array_equal(got, values)


def test_cache_folder_is_a_source(tiny, data_home, no_system_copy):
    folder = write_tiny(data_home / "fashion-mnist", tiny)
    check_tiny(load_dataset("fashion-mnist"), tiny, folder)


def _md5s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_download_into_cache(tmp_path, tiny, data_home, no_system_copy, monkeypatch):
    www = write_tiny(tmp_path / "www", tiny)
    monkeypatch.setattr(fm, "MD5", _md5s(www))
    with serve_folder(www) as base:
        # The first mirror answers 404: the loader must fall back to the next one.
        monkeypatch.setattr(fm, "BASE_URLS", (base + "nowhere/", base))
        check_tiny(load_dataset("fashion-mnist"), tiny, data_home / "fashion-mnist")
    assert sorted(p.name for p in (data_home / "fashion-mnist").iterdir()) == sorted(fm.FILES.values())
    # The server is gone: the verified files in the cache are used.
    check_tiny(load_dataset("fashion-mnist"), tiny, data_home / "fashion-mnist")


def test_download_with_wrong_checksum_is_refused(tmp_path, tiny, data_home, no_system_copy, monkeypatch):
    www = write_tiny(tmp_path / "www", tiny)
    md5 = _md5s(www)
    md5["t10k-images-idx3-ubyte.gz"] = "0" * 32
    monkeypatch.setattr(fm, "MD5", md5)
    with serve_folder(www) as base:
        monkeypatch.setattr(fm, "BASE_URLS", (base,))
        with pytest.raises(DataError) as err:
            load_dataset("fashion-mnist")
    msg = str(err.value)
    assert "0" * 32 in msg and _md5s(www)["t10k-images-idx3-ubyte.gz"] in msg
    assert base + "t10k-images-idx3-ubyte.gz" in msg
    cached = sorted(p.name for p in (data_home / "fashion-mnist").iterdir())
    assert "t10k-images-idx3-ubyte.gz" not in cached and not any(n.startswith(".") for n in cached)


def test_nothing_anywhere_lists_every_place(tmp_path, data_home, no_system_copy, monkeypatch):
    with serve_folder(tmp_path) as base:
        monkeypatch.setattr(fm, "BASE_URLS", (base + "nowhere/",))
        with pytest.raises(DataError) as err:
            load_dataset("fashion-mnist")
    msg = str(err.value)
    assert "404" in msg and base + "nowhere/train-images-idx3-ubyte.gz" in msg
    assert str(data_home / "fashion-mnist") in msg and "dpkg -L dataset-fashion-mnist" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-root" in msg
    assert [p.name for p in (data_home / "fashion-mnist").iterdir()] == []


def test_dpkg_listing_is_used(tmp_path, tiny, data_home, monkeypatch):
    folder = write_tiny(tmp_path / "elsewhere", tiny)
    monkeypatch.setattr(fm, "DEBIAN_DIRS", (tmp_path / "not-here",))
    monkeypatch.setattr(fm, "_dpkg_folder", lambda: folder)
    check_tiny(load_dataset("fashion-mnist"), tiny, folder)


def _debian_folder() -> Path | None:
    return next((f for f in fm.system_folders() if fm._complete(f)), None)


@pytest.mark.skipif(_debian_folder() is None, reason="Debian package dataset-fashion-mnist not installed")
def test_real_debian_package(data_home):
    folder = _debian_folder()
    # The package recompressed the files; their content must be the upstream bytes.
    for stem, want in fm.RAW_MD5.items():
        assert hashlib.md5(gzip.decompress((folder / (stem + ".gz")).read_bytes())).hexdigest() == want
    if shutil.which("dpkg"):
        assert fm._dpkg_folder() == folder
    data = load_dataset("fashion-mnist")
    assert data.source == str(folder)
    assert data.images.shape == (70000, 28, 28) and data.images.dtype == np.uint8
    assert np.bincount(data.partition).tolist() == [60000, 10000]
    assert np.bincount(data.labels[data.partition == TRAIN]).tolist() == [6000] * 10
    assert np.bincount(data.labels[data.partition == TEST]).tolist() == [1000] * 10
    # First training labels of the official files: ankle boot, T-shirt, T-shirt, dress, ...
    assert data.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
