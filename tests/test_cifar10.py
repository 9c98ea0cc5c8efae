"""CIFAR-10 loader on tiny fixtures in every supported format, its protocols, and the real shared copy."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashbench.datasets import TEST, TRAIN, DataError, get_protocol, load_dataset, make_split, split_digest
from hashbench.datasets import cifar10 as c10
from hashbench.datasets.base import Dataset
from local_http_server import serve_folder

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_SIZES = (4, 3, 4, 2, 3)  # images in data_batch_1..5
N_TEST = 5


# --------------------------------------------------------------------------- official-format fixture

class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote the official batches: every string a byte string
    (SHORT_BINSTRING / BINSTRING) and numpy's reconstructor under its old module name."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_str8(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)

    dispatch[bytes] = save_str8
    dispatch[str] = save_str8

    def save_global(self, obj, name=None):
        name = name or obj.__qualname__
        module = pickle.whichmodule(obj, name).replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii"))
        self.memoize(obj)


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def expected_image(row: np.ndarray) -> np.ndarray:
    """The official row layout, read as the CIFAR-10 page describes it: 1024 red, 1024 green, 1024 blue."""
    return np.stack([row[k * 1024:(k + 1) * 1024].reshape(32, 32) for k in range(3)], axis=-1)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """A tiny ``cifar-10-python.tar.gz`` with the official members, and the rows it holds."""
    root = tmp_path_factory.mktemp("official")
    rng = np.random.default_rng(1)
    batches_dir = root / "src" / "cifar-10-batches-py"
    batches_dir.mkdir(parents=True)
    rows, labels = [], []
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, n in zip(names, (*TRAIN_SIZES, N_TEST)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n).tolist()
        rows.append(data)
        labels += y
        (batches_dir / name).write_bytes(py2_pickle({
            b"batch_label": name.encode(), b"labels": y, b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}))
    (batches_dir / "batches.meta").write_bytes(py2_pickle({
        b"num_cases_per_batch": 10000, b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}))
    (batches_dir / "readme.html").write_bytes(b"<html></html>")
    archive = root / "www" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(batches_dir, arcname="cifar-10-batches-py")
    return {"archive": archive, "batches": batches_dir, "rows": np.concatenate(rows), "labels": labels,
            "md5": hashlib.md5(archive.read_bytes()).hexdigest()}


def check_official(data: Dataset, fx) -> None:
    n_train = sum(TRAIN_SIZES)
    assert data.name == "cifar10" and data.classes == CLASSES
    assert data.images.dtype == np.uint8 and data.images.shape == (n_train + N_TEST, 32, 32, 3)
    for i, row in enumerate(fx["rows"]):
        np.testing.assert_array_equal(data.images[i], expected_image(row))
    assert data.labels.dtype == np.int64 and data.labels.tolist() == fx["labels"]
    assert data.partition.tolist() == [TRAIN] * n_train + [TEST] * N_TEST


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(c10.ENV_VAR, raising=False)


def test_official_archive(official, data_home, no_env):
    with pytest.warns(UserWarning, match="not the published"):  # a fixture is not the published file
        data = load_dataset("cifar10", data_root=str(official["archive"]))
    check_official(data, official)
    assert str(official["archive"]) in data.source and official["md5"] in data.source
    assert data.fingerprint == "md5:" + official["md5"]
    extracted = data_home / "cifar10" / "extracted"
    assert [p.name for p in extracted.iterdir()] == [official["md5"]]  # nothing partial next to it
    assert (extracted / official["md5"] / "cifar-10-batches-py" / "test_batch").is_file()
    with pytest.warns(UserWarning):  # the folder holding the archive works as well
        check_official(load_dataset("cifar10", data_root=str(official["archive"].parent)), official)


@pytest.mark.parametrize("which", ["batches", "parent"])
def test_extracted_batches_folder(official, data_home, no_env, which):
    folder = official["batches"] if which == "batches" else official["batches"].parent
    data = load_dataset("cifar10", data_root=str(folder))
    check_official(data, official)
    assert str(official["batches"]) in data.source
    assert data.fingerprint and load_dataset("cifar10", data_root=str(folder)).fingerprint == data.fingerprint


def test_env_var_and_data_root_precedence(official, data_home, tmp_path, monkeypatch):
    monkeypatch.setenv(c10.ENV_VAR, str(official["batches"]))
    check_official(load_dataset("cifar10"), official)
    with pytest.raises(DataError, match="--data-root"):  # data_root wins over the variable
        load_dataset("cifar10", data_root=str(tmp_path / "absent"))
    monkeypatch.setenv(c10.ENV_VAR, str(tmp_path / "absent"))
    with pytest.raises(DataError, match=r"\$HASHBENCH_CIFAR10 .*absent does not exist"):
        load_dataset("cifar10")


def test_pickle_with_foreign_globals_is_refused(official, tmp_path, data_home, no_env):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for p in official["batches"].iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Payload()}, protocol=2))
    with pytest.raises(DataError, match="refusing global") as err:
        load_dataset("cifar10", data_root=str(folder))
    assert "data_batch_3" in str(err.value) and not marker.exists()


def test_malformed_batches(official, tmp_path, data_home, no_env):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for p in official["batches"].iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="missing test_batch"):
        load_dataset("cifar10", data_root=str(folder))
    (folder / "test_batch").write_bytes(py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"test_batch: expected uint8 data \(n, 3072\)"):
        load_dataset("cifar10", data_root=str(folder))
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_batch is not a CIFAR-10 python batch"):
        load_dataset("cifar10", data_root=str(folder))
    (folder / "test_batch").write_bytes((official["batches"] / "test_batch").read_bytes())
    (folder / "batches.meta").write_bytes(py2_pickle({b"label_names": [b"apple", b"aquarium_fish"]}))
    with pytest.raises(DataError, match="CIFAR-100"):
        load_dataset("cifar10", data_root=str(folder))


# --------------------------------------------------------------------------- ImageFolder fixtures

def _png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory):
    """train/<class>/ with 2 images and test/<class>/ with 1 per class; PNG except one JPEG per split.

    Returns the tree's root and the expected items in load order.
    """
    root = tmp_path_factory.mktemp("imagefolder") / "cifar10-images"
    rng = np.random.default_rng(2)
    expected = []  # (split, class index, file name, pixels)
    for split, per_class in (("test", 1), ("train", 2)):  # written in non-canonical order on purpose
        for c in reversed(range(10)):
            folder = root / split / CLASSES[c]
            folder.mkdir(parents=True)
            for k in range(per_class):
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                if c == 3 and k == 0:  # a smooth JPEG: the expected pixels are whatever PIL decodes
                    arr = np.broadcast_to(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 32, 3))
                    raw, name = _jpeg(np.ascontiguousarray(arr)), f"{k:04d}.jpg"
                    arr = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
                else:
                    raw, name = _png(arr), f"{k:04d}.png"
                (folder / name).write_bytes(raw)
                expected.append((split, c, name, arr))
    (root / "train" / "cat" / "._0000.jpg").write_bytes(b"AppleDouble junk, not an image")
    (root / "test" / ".ipynb_checkpoints").mkdir()
    (root / "test" / ".ipynb_checkpoints" / "0000.png").write_bytes(_png(np.zeros((32, 32, 3), np.uint8)))
    (root / "README.txt").write_text("not data")
    expected.sort(key=lambda e: (("train", "test").index(e[0]), e[1], e[2]))
    return root, expected


def check_imagefolder(data: Dataset, expected) -> None:
    assert data.classes == CLASSES and data.images.dtype == np.uint8
    assert data.images.shape == (len(expected), 32, 32, 3)
    for i, (split, c, _, arr) in enumerate(expected):
        np.testing.assert_array_equal(data.images[i], arr)
        assert data.labels[i] == c and data.partition[i] == (TRAIN if split == "train" else TEST)
    assert data.labels.dtype == np.int64


def _tar_gz(src: Path, dest: Path, arcname: str) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(src, arcname=arcname)
    return dest


@pytest.mark.parametrize("where", ["root", "parent"])
def test_imagefolder_tree(imagefolder, data_home, no_env, where):
    root, expected = imagefolder
    data = load_dataset("cifar10", data_root=str(root if where == "root" else root.parent))
    check_imagefolder(data, expected)
    assert str(root) in data.source and "lossy" in data.source


@pytest.mark.parametrize("arcname", ["cifar10-images", "."])
def test_imagefolder_archive_and_decoded_cache(imagefolder, data_home, no_env, tmp_path, monkeypatch, arcname):
    root, expected = imagefolder
    archive = _tar_gz(root, tmp_path / "cifar10-images.tar.gz", arcname)
    data = load_dataset("cifar10", data_root=str(archive))
    check_imagefolder(data, expected)
    assert data.fingerprint == "md5:" + hashlib.md5(archive.read_bytes()).hexdigest()
    cached = list((data_home / "cifar10" / "decoded").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npz"
    # A second load reads the decoded arrays: no image is decoded again.
    with monkeypatch.context() as m:
        m.setattr(c10, "_decode_image", lambda *a: pytest.fail("decoded again despite the cache"))
        data = load_dataset("cifar10", data_root=str(archive))
        check_imagefolder(data, expected)
        assert str(archive) in data.source and "lossy" in data.source
        assert data.fingerprint == "md5:" + hashlib.md5(archive.read_bytes()).hexdigest()
        check_imagefolder(load_dataset("cifar10", data_root=str(tmp_path)), expected)  # folder holding it


def test_damaged_decoded_cache_is_rebuilt(imagefolder, data_home, no_env, tmp_path):
    root, expected = imagefolder
    archive = _tar_gz(root, tmp_path / "x.tar.gz", "x")
    load_dataset("cifar10", data_root=str(archive))
    (cached,) = (data_home / "cifar10" / "decoded").iterdir()
    cached.write_bytes(cached.read_bytes()[:1000])
    check_imagefolder(load_dataset("cifar10", data_root=str(archive)), expected)
    assert [p.name for p in cached.parent.iterdir()] == [cached.name] and cached.stat().st_size > 1000


def test_changed_source_is_decoded_again(imagefolder, data_home, no_env, tmp_path):
    src, expected = imagefolder
    root = tmp_path / "copy"
    _tar_gz(src, tmp_path / "a.tar.gz", "copy")
    with tarfile.open(tmp_path / "a.tar.gz") as tf:
        tf.extractall(tmp_path, filter="data")
    before = load_dataset("cifar10", data_root=str(root))
    check_imagefolder(before, expected)
    new = np.full((32, 32, 3), 7, np.uint8)
    target = root / "train" / "ship" / "0001.png"
    target.write_bytes(_png(new))
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))  # a listing change the key must notice
    data = load_dataset("cifar10", data_root=str(root))
    index = next(i for i, e in enumerate(expected) if e[:3] == ("train", 8, "0001.png"))
    np.testing.assert_array_equal(data.images[index], new)
    assert len(list((data_home / "cifar10" / "decoded").iterdir())) == 2
    assert data.fingerprint.startswith("listing-sha256:") and data.fingerprint != before.fingerprint

    archive = _tar_gz(root, tmp_path / "b.tar.gz", "copy")
    np.testing.assert_array_equal(load_dataset("cifar10", data_root=str(archive)).images[index], new)


def test_png_only_tree_is_not_called_lossy(tmp_path, data_home, no_env):
    for split in ("train", "test"):
        for c in CLASSES:
            (tmp_path / split / c).mkdir(parents=True)
            (tmp_path / split / c / "a.png").write_bytes(_png(np.zeros((32, 32, 3), np.uint8)))
    data = load_dataset("cifar10", data_root=str(tmp_path))
    assert len(data) == 20 and "lossy" not in data.source


def _tree_with(tmp_path, imagefolder, change):
    src, _ = imagefolder
    _tar_gz(src, tmp_path / "a.tar.gz", "t")
    with tarfile.open(tmp_path / "a.tar.gz") as tf:
        tf.extractall(tmp_path, filter="data")
    change(tmp_path / "t")
    return tmp_path / "t"


@pytest.mark.parametrize("change, fragments", [
    (lambda r: (r / "train" / "dog" / "0000.png").write_bytes(_png(np.zeros((28, 28, 3), np.uint8))),
     ("train/dog/0000.png", "is 28x28, CIFAR-10 images are 32x32")),
    (lambda r: (r / "test" / "dog" / "0000.png").write_bytes(b"not a png"),
     ("cannot decode image", "test/dog/0000.png", "not a readable JPEG or PNG file")),
    (lambda r: (r / "train" / "frog").rename(r / "train" / "toad"), ("unknown: ['toad'], missing: ['frog']",)),
])
def test_bad_imagefolder(tmp_path, imagefolder, data_home, no_env, change, fragments):
    root = _tree_with(tmp_path, imagefolder, change)
    for source in (root, _tar_gz(root, tmp_path / "bad.tar.gz", "t")):
        with pytest.raises(DataError) as err:
            load_dataset("cifar10", data_root=str(source))
        assert all(f in str(err.value) for f in fragments), str(err.value)


def test_nothing_at_data_root(tmp_path, data_home, no_env):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_root=str(tmp_path))
    msg = str(err.value)
    assert "cifar-10-batches-py" in msg and "cifar-10-python.tar.gz" in msg and "train|test/<class>" in msg
    junk = tmp_path / "junk.tar.gz"
    _tar_gz(tmp_path / "notes.txt", junk, "notes.txt")
    with pytest.raises(DataError, match="holds neither"):
        load_dataset("cifar10", data_root=str(junk))


# --------------------------------------------------------------------------- download

def test_download_official_archive(official, data_home, no_env, monkeypatch):
    monkeypatch.setattr(c10, "MD5", official["md5"])
    with serve_folder(official["archive"].parent) as base:
        monkeypatch.setattr(c10, "URL", base + "cifar-10-python.tar.gz")
        data = load_dataset("cifar10")
    check_official(data, official)
    home = data_home / "cifar10"
    assert sorted(p.name for p in home.iterdir()) == ["cifar-10-python.tar.gz", "extracted"]
    assert [p.name for p in (home / "extracted").iterdir()] == [official["md5"]]
    data = load_dataset("cifar10")  # server gone: the verified, extracted copy is used
    check_official(data, official)
    assert "published md5" in data.source and data.fingerprint == "md5:" + official["md5"]


def test_download_with_wrong_md5_leaves_nothing(official, data_home, no_env, monkeypatch):
    monkeypatch.setattr(c10, "MD5", "f" * 32)
    with serve_folder(official["archive"].parent) as base:
        monkeypatch.setattr(c10, "URL", base + "cifar-10-python.tar.gz")
        with pytest.raises(DataError) as err:
            load_dataset("cifar10")
    msg = str(err.value)
    assert "f" * 32 in msg and official["md5"] in msg and base + "cifar-10-python.tar.gz" in msg
    assert list((data_home / "cifar10").iterdir()) == []


def test_download_404(official, data_home, no_env, monkeypatch, tmp_path):
    with serve_folder(tmp_path) as base:
        monkeypatch.setattr(c10, "URL", base + "cifar-10-python.tar.gz")
        with pytest.raises(DataError) as err:
            load_dataset("cifar10")
    msg = str(err.value)
    assert "404" in msg and base + "cifar-10-python.tar.gz" in msg
    assert "--data-root" in msg and "$HASHBENCH_CIFAR10" in msg and str(data_home / "cifar10") in msg
    assert list((data_home / "cifar10").iterdir()) == []


def test_hand_placed_archive_with_wrong_md5(official, data_home, no_env):
    home = data_home / "cifar10"
    home.mkdir(parents=True)
    (home / "cifar-10-python.tar.gz").write_bytes(official["archive"].read_bytes())
    with pytest.raises(DataError, match="not the published"):
        load_dataset("cifar10")


# --------------------------------------------------------------------------- protocols

@pytest.fixture(scope="module")
def cifar_shaped():
    """Labels and partition shaped like CIFAR-10 (no images: the split needs none)."""
    labels = np.concatenate([np.repeat(np.arange(10), 5000), np.repeat(np.arange(10), 1000)])
    partition = np.repeat(np.array([TRAIN, TEST], np.uint8), [50000, 10000])
    perm = np.random.default_rng(3).permutation(60000)  # not grouped: the split must not rely on order
    return Dataset(name="cifar10", labels=labels[perm], partition=partition[perm])


@pytest.mark.parametrize("name, n_query, n_db, n_train, query_part, db_part", [
    ("cifar10", 1000, 59000, 5000, None, None),
    ("cifar10-test-query", 10000, 50000, 5000, TEST, TRAIN),
    ("ci", 500, 5000, 2000, TEST, TRAIN),
])
def test_cifar10_protocols(cifar_shaped, name, n_query, n_db, n_train, query_part, db_part):
    d = cifar_shaped
    protocol = get_protocol("cifar10", name)
    assert protocol.topk == 1000
    split = make_split(protocol, d)
    assert split.sizes() == {"n_query": n_query, "n_database": n_db, "n_train": n_train}
    assert len(np.intersect1d(split.query, split.database)) == 0
    assert np.isin(split.train, split.database).all()
    for part, wanted in ((split.query, n_query), (split.database, n_db), (split.train, n_train)):
        assert len(np.unique(part)) == wanted
        assert np.bincount(d.labels[part], minlength=10).tolist() == [wanted // 10] * 10
    if query_part is not None:
        assert (d.partition[split.query] == query_part).all() and (d.partition[split.database] == db_part).all()
    else:
        assert len(split.query) + len(split.database) == len(d)
    assert split_digest(split, d) == split_digest(make_split(protocol, d), d)
    assert split.overlap == {"query_in_database": 0, "query_in_train": 0}
    assert not (np.diff(d.labels[split.database]) == 0).all()  # database not grouped by class


def test_cifar10_default_protocol():
    assert get_protocol("cifar10").name == "cifar10"


# --------------------------------------------------------------------------- the real shared copy

REPO = Path(__file__).resolve().parents[1]


def _real_copy() -> Path:
    env = os.environ.get(c10.ENV_VAR)
    return Path(env) if env else REPO.parent / "shared" / "data" / "cifar10-images.tar.gz"


@pytest.fixture(scope="session")
def real_cifar10(tmp_path_factory):
    """The shared CIFAR-10 copy loaded twice (cold, then from the decoded cache) in a session cache.

    ``$HASHBENCH_TEST_DATA`` names a persistent cache folder (e.g. one a CI job keeps between runs)
    to skip the one-off decode of 60,000 JPEGs.
    """
    path = _real_copy()
    if not path.exists():
        msg = (f"the real CIFAR-10 copy is missing: {path} (set ${c10.ENV_VAR} to the shared "
               f"cifar10-images.tar.gz, the official archive or an extracted copy)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    cache = os.environ.get("HASHBENCH_TEST_DATA") or str(tmp_path_factory.mktemp("hashbench-data"))
    with pytest.MonkeyPatch.context() as m:
        m.setenv("HASHBENCH_DATA", cache)
        first = load_dataset("cifar10", data_root=str(path))
        second = load_dataset("cifar10", data_root=str(path))
    return path, first, second


def test_real_shared_copy(real_cifar10):
    path, data, again = real_cifar10
    assert data.images.shape == (60000, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.classes == CLASSES
    assert np.bincount(data.labels).tolist() == [6000] * 10
    assert np.bincount(data.partition).tolist() == [50000, 10000]
    assert np.bincount(data.labels[data.partition == TRAIN]).tolist() == [5000] * 10
    assert np.bincount(data.labels[data.partition == TEST]).tolist() == [1000] * 10
    assert str(path) in data.source
    # The decoded cache gives back exactly what the first decode produced.
    assert np.array_equal(again.images, data.images)
    assert np.array_equal(again.labels, data.labels) and np.array_equal(again.partition, data.partition)


def test_real_shared_copy_pixels(real_cifar10):
    path, data, _ = real_cifar10
    if not path.is_file():
        pytest.skip("pixel check reads the archive form of the copy")
    # Expected order computed here from the archive's member names; a few members decoded directly.
    with tarfile.open(path) as tf:  # one pass over the stream: gzip cannot seek back cheaply
        raw = {m.name: tf.extractfile(m).read() for m in tf if m.isfile() and m.name.endswith(".jpg")}
    order = sorted(raw, key=lambda n: (("train", "test").index(n.split("/")[-3]),
                                       CLASSES.index(n.split("/")[-2]), n.split("/")[-1]))
    assert len(order) == 60000
    for i in (0, 4999, 5000, 31234, 49999, 50000, 57777, 59999):
        with Image.open(io.BytesIO(raw[order[i]])) as im:
            np.testing.assert_array_equal(data.images[i], np.asarray(im.convert("RGB")))
        assert CLASSES[data.labels[i]] == order[i].split("/")[-2]
        assert data.partition[i] == (TRAIN if order[i].split("/")[-3] == "train" else TEST)
