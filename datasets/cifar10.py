"""CIFAR-10 (Krizhevsky, 2009): 60,000 32x32 colour images, 10 classes, 50,000 train + 10,000 test.

Sources read, each given as a path (``data_root``, or ``$HASHBENCH_CIFAR10`` when no ``data_root``):

* the official ``cifar-10-python.tar.gz`` (published md5 `MD5`), extracted once into the cache;
* its extracted ``cifar-10-batches-py/`` folder (``data_batch_1..5``, ``test_batch``);
* an ImageFolder tree ``[top/]train/<class>/*.{jpg,png}``, ``[top/]test/<class>/*``, or a tar
  archive of one (as ``cifar10-images.tar.gz`` shared with the project). All images are decoded
  once into a uint8 array cached as ``.npz`` under the cache, keyed by the source's md5 and size
  (archives) or its file listing (folders), so later loads only read that file.

With neither, the official archive downloaded earlier into ``cache_dir()/cifar10`` is used, else
it is downloaded there and verified by md5 before use. Classes are always numbered in the official
order `CLASSES`, whatever the source.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import os
import pickle
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from hashbench.datasets.base import TEST, TRAIN, Dataset
from hashbench.datasets.cache import cache_dir
from hashbench.datasets.download import download, extract_tar, file_digest
from hashbench.datasets.errors import DataError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ENV_VAR = "HASHBENCH_CIFAR10"
# Tests point these at a server on 127.0.0.1 serving a small archive in the official format.
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
IMAGES_ARCHIVE_NAME = "cifar10-images.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test")  # ImageFolder split folders, in the order items are stored
CACHE_FORMAT = 1  # bump when the decoded-cache layout or decoding changes


def _home() -> Path:
    return cache_dir() / "cifar10"


# --------------------------------------------------------------------------- official python batches

def _numpy_global(module: str, name: str):
    return getattr(importlib.import_module(module), name)


# The batches are pickles. We read only the official format, a published file with a checksum, and
# even so restrict unpickling to the few globals a numpy array needs: a tampered file then fails
# instead of running code.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: not part of a CIFAR-10 batch")
        return _numpy_global(*target)


def _str_keys(d: dict) -> dict:
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _unpickle(raw: bytes, where: str) -> dict:
    try:
        # The batches were written by Python 2: its str objects come back as bytes.
        obj = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types for damaged input
        raise DataError(f"{where} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{where} is not a CIFAR-10 python batch (holds a {type(obj).__name__}, not a dict)")
    return _str_keys(obj)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path.read_bytes(), str(path))
    data, labels = d.get("data"), d.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path} lacks the 'data' array or the 'labels' list of a CIFAR-10 batch "
                        f"(keys: {sorted(d)})")
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"{path}: expected uint8 data (n, 3072) and n labels, got {data.dtype} {data.shape} "
                        f"and {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{path}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    # Rows are stored channel-major (1024 red, 1024 green, 1024 blue values, each row by row).
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


def _is_batches_dir(folder: Path) -> bool:
    return folder.is_dir() and (folder / TRAIN_BATCHES[0]).is_file()


def _batches_listing(folder: Path) -> str:
    """Digest of the batch files' names, sizes and modification times (cheaper than hashing 180 MB)."""
    h = hashlib.sha256()
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        st = (folder / name).stat()
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "listing-sha256:" + h.hexdigest()


def _read_batches(folder: Path, source: str, fingerprint: str | None = None) -> Dataset:
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder} is an incomplete {BATCHES_DIR} folder: missing {', '.join(missing)}")
    meta = folder / "batches.meta"
    if meta.is_file():
        names = _unpickle(meta.read_bytes(), str(meta)).get("label_names")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in (names or ()))
        if names != CLASSES:
            raise DataError(f"{meta} lists classes {names}, not the CIFAR-10 classes {CLASSES}: "
                            f"is this CIFAR-100 or another dataset?")
    parts = [_read_batch(folder / n) for n in (*TRAIN_BATCHES, TEST_BATCH)]
    n_train = sum(len(y) for _, y in parts[:-1])
    partition = np.concatenate([np.full(n_train, TRAIN, np.uint8), np.full(len(parts[-1][1]), TEST, np.uint8)])
    return Dataset(name="cifar10", labels=np.concatenate([y for _, y in parts]),
                   images=np.concatenate([x for x, _ in parts]), partition=partition,
                   classes=CLASSES, source=source, fingerprint=fingerprint or _batches_listing(folder))


def _load_official_archive(archive: Path, md5: str) -> Dataset:
    """Extract (once, atomically, keyed by md5) and read an archive holding the python batches."""
    published = md5 == MD5
    if not published:
        warnings.warn(f"{archive} holds CIFAR-10 python batches but its md5 {md5} is not the published "
                      f"{MD5}; reading it anyway", stacklevel=3)
    dest = extract_tar(archive, _home() / "extracted" / md5)
    candidates = [dest, dest / BATCHES_DIR, *sorted(p for p in dest.iterdir() if p.is_dir())]
    folder = next((c for c in candidates if _is_batches_dir(c)), None)
    if folder is None:
        raise DataError(f"{archive} was extracted to {dest} but holds no {BATCHES_DIR} folder with "
                        f"{TRAIN_BATCHES[0]}")
    note = "published md5" if published else f"md5 {md5}, not the published {MD5}"
    return _read_batches(folder, f"{archive} (official python batches, {note})", f"md5:{md5}")


# --------------------------------------------------------------------------- ImageFolder trees

def _layout_key(parts: tuple[str, ...]) -> tuple[str | None, str, str, str] | None:
    """(top, split, class, file) if ``parts`` is ``[top/]split/class/file`` with an image file."""
    parts = tuple(p for p in parts if p not in ("", "."))
    if len(parts) not in (3, 4) or parts[-3] not in SPLITS:
        return None
    name = parts[-1]
    if name.startswith(".") or parts[-2].startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
        return None  # hidden files and folders (macOS "._x.jpg", .ipynb_checkpoints) and non-images are not data
    return (parts[0] if len(parts) == 4 else None, parts[-3], parts[-2], name)


def _decode_image(raw: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as im:
            rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except UnidentifiedImageError as exc:
        raise DataError(f"cannot decode image {where}: not a readable JPEG or PNG file") from exc
    except (OSError, ValueError) as exc:  # e.g. a truncated file
        raise DataError(f"cannot decode image {where}: {exc}") from exc
    if rgb.shape != (32, 32, 3):
        raise DataError(f"image {where} is {rgb.shape[1]}x{rgb.shape[0]}, CIFAR-10 images are 32x32")
    return rgb


def _assemble(items: list[tuple[str | None, str, str, str, np.ndarray]], where: str) -> dict[str, np.ndarray]:
    """Stack decoded (top, split, class, file, image) items in (split, official class, file) order."""
    if not items:
        raise DataError(f"{where} holds no images in the layout [top/]train/<class>/<image> and "
                        f"[top/]test/<class>/<image> (.jpg, .jpeg or .png)")
    tops = sorted({str(t) for t, *_ in items})
    if len(tops) > 1:
        raise DataError(f"{where} holds images under several top folders ({', '.join(tops)}); expected one")
    for split in SPLITS:
        found = {c for _, s, c, _, _ in items if s == split}
        unknown, missing = sorted(found - set(CLASSES)), [c for c in CLASSES if c not in found]
        if unknown or missing:
            raise DataError(f"{where}: the class folders of {split}/ must be the CIFAR-10 classes {CLASSES}; "
                            f"unknown: {unknown or 'none'}, missing: {missing or 'none'}")
    index = {c: i for i, c in enumerate(CLASSES)}
    items.sort(key=lambda it: (SPLITS.index(it[1]), index[it[2]], it[3]))
    return {
        "images": np.stack([it[4] for it in items]),
        "labels": np.array([index[it[2]] for it in items], dtype=np.int64),
        "partition": np.array([TRAIN if it[1] == "train" else TEST for it in items], dtype=np.uint8),
        "lossy": np.array(any(it[3].lower().endswith((".jpg", ".jpeg")) for it in items)),
    }


def _decode_archive(archive: Path) -> dict[str, np.ndarray]:
    # Decoding straight from the compressed stream: for the shared 60,000-JPEG archive this took
    # 8.5 s, while extracting it to 60,000 files first took 14.5 s before any decoding.
    items = []
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                key = _layout_key(PurePosixPath(member.name).parts) if member.isfile() else None
                if key is not None:
                    raw = tf.extractfile(member).read()
                    items.append((*key, _decode_image(raw, f"{member.name} in {archive}")))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot read {archive}: {exc}; the archive is damaged or not a tar file") from exc
    return _assemble(items, str(archive))


def _image_files(root: Path) -> Iterator[tuple[tuple, Path]]:
    for split in SPLITS:
        for class_dir in sorted((root / split).iterdir()):
            if class_dir.is_dir() and not class_dir.name.startswith("."):
                for f in sorted(class_dir.iterdir()):
                    key = _layout_key((split, class_dir.name, f.name))
                    if key is not None and f.is_file():
                        yield key, f


def _decode_folder(root: Path) -> dict[str, np.ndarray]:
    items = [(*key, _decode_image(path.read_bytes(), str(path))) for key, path in _image_files(root)]
    return _assemble(items, str(root))


def _folder_key(root: Path) -> str:
    """Digest of the tree's listing (names, sizes, modification times): changes when any image does."""
    h = hashlib.sha256()
    for key, path in _image_files(root):
        st = path.stat()
        h.update(f"{key[1:]}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _imagefolder_root(folder: Path) -> Path | None:
    """``folder`` or its single visible sub-folder when that one has train/ and test/."""
    if all((folder / s).is_dir() for s in SPLITS):
        return folder
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1 and all((subdirs[0] / s).is_dir() for s in SPLITS):
        return subdirs[0]
    return None


def _cached_decode(cache_file: Path, decode) -> dict[str, np.ndarray]:
    """Load the decoded arrays from ``cache_file``, or decode and write it atomically."""
    if cache_file.is_file():
        try:
            with np.load(cache_file) as f:
                arrays = {k: f[k] for k in ("images", "labels", "partition", "lossy")}
            if arrays["images"].shape[0] == arrays["labels"].shape[0] == arrays["partition"].shape[0]:
                return arrays
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable cache: decode again and replace it
    arrays = decode()
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=f".{cache_file.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, cache_file)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return arrays


def _imagefolder_dataset(arrays: dict[str, np.ndarray], where: str, fingerprint: str) -> Dataset:
    kind = ("ImageFolder of JPEG files: a lossy re-encoded copy of CIFAR-10, numbers are close to but "
            "not identical with those on the official batches") if bool(arrays["lossy"]) else "ImageFolder"
    return Dataset(name="cifar10", labels=arrays["labels"], images=arrays["images"],
                   partition=arrays["partition"], classes=CLASSES, source=f"{where} ({kind})",
                   fingerprint=fingerprint)


# --------------------------------------------------------------------------- sources

def _archive_kind(archive: Path) -> str:
    """'official' (python batches) or 'imagefolder', from the first telling member."""
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                if PurePosixPath(member.name).name in (*TRAIN_BATCHES, TEST_BATCH, "batches.meta"):
                    return "official"
                if member.isfile() and _layout_key(PurePosixPath(member.name).parts) is not None:
                    return "imagefolder"
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot read {archive}: {exc}; expected a tar archive of CIFAR-10 "
                        f"(official python batches or an ImageFolder tree)") from exc
    raise DataError(f"{archive} holds neither {BATCHES_DIR}/{TRAIN_BATCHES[0]} nor images in the "
                    f"layout [top/]train/<class>/<image>, [top/]test/<class>/<image>")


def _load_archive(archive: Path) -> Dataset:
    md5 = file_digest(archive, "md5")
    decoded = _home() / "decoded" / f"archive-{md5}-{archive.stat().st_size}-v{CACHE_FORMAT}.npz"
    if decoded.is_file():  # decoded before: skip looking inside the archive
        return _imagefolder_dataset(_cached_decode(decoded, lambda: _decode_archive(archive)), str(archive),
                                    f"md5:{md5}")
    if _archive_kind(archive) == "official":
        return _load_official_archive(archive, md5)
    return _imagefolder_dataset(_cached_decode(decoded, lambda: _decode_archive(archive)), str(archive),
                                f"md5:{md5}")


def _looked_for(path: Path) -> str:
    return (f"{path}/{BATCHES_DIR}/ (or {path} itself as that folder), {path}/[top/]train|test/<class>/, "
            f"{path}/{ARCHIVE_NAME}, {path}/{IMAGES_ARCHIVE_NAME}")


def _load_path(path: Path, how: str) -> Dataset:
    path = path.expanduser()
    if path.is_file():
        return _load_archive(path)
    if not path.is_dir():
        raise DataError(f"{how} {path} does not exist; give the official {ARCHIVE_NAME}, its extracted "
                        f"{BATCHES_DIR}/ folder, or an ImageFolder tree or archive of CIFAR-10")
    for folder in (path, path / BATCHES_DIR):
        if _is_batches_dir(folder):
            return _read_batches(folder, f"{folder} (official python batches)")
    root = _imagefolder_root(path)
    if root is not None:
        key = _folder_key(root)
        decoded = _home() / "decoded" / f"folder-{key[:40]}-v{CACHE_FORMAT}.npz"
        return _imagefolder_dataset(_cached_decode(decoded, lambda: _decode_folder(root)), str(root),
                                    f"listing-sha256:{key}")
    for name in (ARCHIVE_NAME, IMAGES_ARCHIVE_NAME):
        if (path / name).is_file():
            return _load_archive(path / name)
    raise DataError(f"no CIFAR-10 found at {how} {path}; looked for {_looked_for(path)}")


def load_cifar10(data_root: str | None = None) -> Dataset:
    """CIFAR-10 as ``images`` uint8 ``(n, 32, 32, 3)`` RGB, ``labels`` int64 in 0..9 (`CLASSES`) and
    ``partition`` (`TRAIN` for the official training images, `TEST` for the test batch), training
    images first. With the full data n = 60,000 (50,000 + 10,000).

    Raises:
        DataError: nothing usable at ``data_root`` / ``$HASHBENCH_CIFAR10`` (the message lists what was
            looked for), a malformed or unverifiable copy, or a failed download.
    """
    if data_root is not None:
        return _load_path(Path(data_root), "--data-root")
    if os.environ.get(ENV_VAR):
        return _load_path(Path(os.environ[ENV_VAR]), f"${ENV_VAR}")
    home = _home()
    extracted = home / "extracted" / MD5 / BATCHES_DIR
    if _is_batches_dir(extracted):
        return _read_batches(extracted, f"{extracted} (official python batches, published md5, from {URL})",
                             f"md5:{MD5}")
    archive = home / ARCHIVE_NAME
    if not archive.is_file():
        try:
            download(URL, archive, md5=MD5)
        except DataError as exc:
            raise DataError(
                f"CIFAR-10 is not available: no --data-root, ${ENV_VAR} unset, nothing in the cache {home}, "
                f"and the download failed: {exc}\nTo use a local copy pass --data-root (or set ${ENV_VAR}) "
                f"to the official {ARCHIVE_NAME}, its extracted {BATCHES_DIR}/ folder, or an ImageFolder "
                f"tree or archive (train/<class>/*, test/<class>/*)") from exc
    md5 = file_digest(archive, "md5")
    if md5 != MD5:
        # download() only ever renames verified files into place: this one was put there by hand.
        raise DataError(f"{archive} has md5 {md5}, not the published {MD5}; delete it to download again, "
                        f"or pass it with --data-root to read it anyway")
    return _load_official_archive(archive, md5)
