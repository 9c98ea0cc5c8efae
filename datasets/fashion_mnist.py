"""Fashion-MNIST (Xiao et al., 2017): 70,000 28x28 grey images of 10 clothing classes, MIT licence.

Read from the four standard IDX files, looked for in this order: ``data_root`` (when given, the
only place); the Debian/Ubuntu package ``dataset-fashion-mnist``; the cache folder
``cache_dir()/fashion-mnist``; else downloaded from the official location into that cache folder,
each file verified against its published md5.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from hashbench.datasets.base import TEST, TRAIN, Dataset
from hashbench.datasets.cache import cache_dir
from hashbench.datasets.download import download, file_digest
from hashbench.datasets.errors import DataError
from hashbench.datasets.idx import read_idx

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# Tried in order; tests point this at a server on 127.0.0.1.
BASE_URLS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# md5 of the .gz files as published in the Fashion-MNIST README.
MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# md5 of the decompressed IDX bytes. Debian recompressed the .gz files (so their md5 differs from
# the README's), but their content has exactly these digests, which upstream tools also pin.
RAW_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)


def _find(folder: Path, name: str) -> Path | None:
    """``name`` (a .gz file) in ``folder``, or its decompressed twin."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path) -> dict[str, Path] | None:
    found = {key: _find(folder, name) for key, name in FILES.items()}
    return found if all(found.values()) else None


def _dpkg_folder() -> Path | None:
    """The folder where the Debian package put the files, asked from dpkg (None without dpkg)."""
    if shutil.which("dpkg") is None:
        return None
    try:
        listing = subprocess.run(["dpkg", "-L", DEBIAN_PACKAGE], capture_output=True, text=True,
                                 timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in listing.splitlines():
        if line.strip().endswith("/" + FILES["train_images"]):
            return Path(line.strip()).parent
    return None


def system_folders() -> list[Path]:
    """Where a system package may hold the files: the known Debian path, then what dpkg reports."""
    folders = list(DEBIAN_DIRS)
    if not any(_complete(f) for f in folders):
        from_dpkg = _dpkg_folder()
        if from_dpkg is not None and from_dpkg not in folders:
            folders.append(from_dpkg)
    return folders


def _how_to_get() -> str:
    return (f"to get the data: `apt-get install {DEBIAN_PACKAGE}` (Debian/Ubuntu), or download the four "
            f"files {', '.join(FILES.values())} from {BASE_URLS[0]} and pass their folder with --data-root")


def _download_all(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        if _find(folder, name):
            continue
        failures = []
        for base in BASE_URLS:
            try:
                download(base + name, folder / name, md5=MD5[name])
                break
            except DataError as exc:
                failures.append(str(exc))
        else:
            raise DataError(f"could not get Fashion-MNIST file {name}: " + "; ".join(failures)
                            + f". Places looked for the files: {_places_text(None)}; {_how_to_get()}")
    found = _complete(folder)
    assert found is not None
    return found


def _places_text(data_root: Path | None) -> str:
    if data_root is not None:
        return str(data_root)
    places = [str(p) for p in system_folders()] + [f"dpkg -L {DEBIAN_PACKAGE}", str(cache_dir() / "fashion-mnist")]
    return ", ".join(dict.fromkeys(places))


def _read_part(images_path: Path, labels_path: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: expected uint8 images of shape (n, 28, 28), got {images.dtype} "
                        f"{images.shape}; is this the Fashion-MNIST {part} image file?")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{labels_path}: expected {images.shape[0]} labels (one per image in "
                        f"{images_path.name}), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{labels_path}: labels must lie in 0..{len(CLASSES) - 1}, "
                        f"found {labels.min()}..{labels.max()}")
    return images, labels.astype(np.int64)


def load_fashion_mnist(data_root: str | None = None) -> Dataset:
    """Fashion-MNIST as ``images`` uint8 ``(70000, 28, 28)``, ``labels`` int64 in 0..9 (`CLASSES`)
    and ``partition`` = `TRAIN` for the first 60,000 (official training files), `TEST` for the rest.

    Raises:
        DataError: ``data_root`` is not a folder or lacks one of the four files, a file is malformed
            (shapes, label range), or no copy was found and the download failed.
    """
    if data_root is not None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataError(f"--data-root {root} is not a folder; give the folder holding {', '.join(FILES.values())}")
        found = _complete(root)
        if found is None:
            missing = [n for n in FILES.values() if _find(root, n) is None]
            raise DataError(f"Fashion-MNIST not found in --data-root {root}: missing {', '.join(missing)} "
                            f"(or the same names without .gz); {_how_to_get()}")
        folder = root
    else:
        found, folder = None, None
        for candidate in [*system_folders(), cache_dir() / "fashion-mnist"]:
            found = _complete(candidate)
            if found:
                folder = candidate
                break
        if found is None:
            folder = cache_dir() / "fashion-mnist"
            found = _download_all(folder)

    train_x, train_y = _read_part(found["train_images"], found["train_labels"], "training")
    test_x, test_y = _read_part(found["test_images"], found["test_labels"], "test")
    partition = np.concatenate([np.full(len(train_y), TRAIN, np.uint8), np.full(len(test_y), TEST, np.uint8)])
    return Dataset(
        name="fashion-mnist",
        labels=np.concatenate([train_y, test_y]),
        images=np.concatenate([train_x, test_x]),
        partition=partition,
        classes=CLASSES,
        source=str(folder),
        fingerprint="md5 " + " ".join(f"{p.name}={file_digest(p, 'md5')}" for p in found.values()),
    )
