"""Multi-label image datasets distributed as list files (NUS-WIDE, MS-COCO, MIRFlickr-25K).

Layout read by `load_listfile` (the format of DeepHash-pytorch, HashNet and most hashing code)::

    data_root/
        train.txt       one line per image: <relative image path> <l_1> ... <l_C>
        test.txt        the queries
        database.txt    the retrieval database
        <the images, at the paths the lists name, relative to ``image_root`` (default: data_root)>

Each ``l_j`` is ``0`` or ``1``; fields are separated by whitespace, so image paths cannot contain
spaces. Absolute image paths are used as they are.

Contract: the result has one row per *distinct image* over the three files, ``labels`` ``(n, C)``
uint8 multi-hot, and ``splits`` mapping ``query`` / ``database`` / ``train`` to the rows their file
lists, in file order. Why de-duplicate: most published splits have train ⊂ database (DeepHash-pytorch
NUS-WIDE and COCO), so a training image and its database copy are one item, not two. An image listed in
two files must carry the same labels there. An image listed twice in the *same* file is kept twice in
that split (the file is the protocol), with a warning.

Which image a line names (`image_identity`): its path resolved against the image root, made absolute
and normalised (``os.path.normpath(os.path.join(os.path.abspath(image_root), path))``), so that
``img/036.png``, ``./img/036.png`` and ``/data/set/img/036.png`` (with image root ``/data/set``) are one
image, one row: a query that database.txt lists under another spelling is counted as overlap by
`datasets.protocols.make_split` (and refused by default) instead of finding itself at distance 0.
Symbolic links are not resolved: that would cost a ``stat`` per path component of every listed path
(slow on the network file systems ``check_images=False`` is for), would depend on the file system at
load time (with ``check_images=False`` the files need not exist yet), and list files in the wild differ
by spelling (``./``, absolute against relative, ``..``), not by links; two different links to one file
stay two items.

``images.paths`` (an `ImageFiles`) keeps, per row, the path as the lists give it (normalised): the
spelling of the first file that lists the image, in the order database.txt, train.txt, test.txt. That
is what `datasets.protocols.split_digest` hashes, so the same lists in another folder keep their digest,
and lists that spell every image one way hash exactly as they always have.

Images are not decoded at load: ``images`` is an `ImageFiles` reader. Every listed path is checked to
exist at load by listing each image folder once (measured: 200,000 paths in one folder, 0.25 s against
0.75 s for one ``stat`` per path, warm cache); pass ``check_images=False`` to skip it on slow network
file systems.

MIRFlickr-25K: the common list files carry 24 concepts; DeepHash-pytorch's carry 38 (the 24 plus the 14
stricter ``*_r1`` annotations of the official release, in directory-listing order). Both are accepted:
each ``*_r1`` annotation marks images where its base concept is clearly relevant, so wherever it implies
the base label, "shares at least one label" is the same relation with 24 or 38 columns. The loaded
``labels.shape[1]`` says which variant was read.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashbench.datasets.base import Dataset
from hashbench.datasets.errors import DataError
from hashbench.datasets.registry import check_bool_option

SPLIT_FILES = {"query": "test.txt", "database": "database.txt", "train": "train.txt"}
_ROW_ORDER = ("database", "train", "query")  # rows of the database come first, in its file order
_SHOWN = 5  # how many offending paths an error message lists

# preset name -> (accepted label counts, where users usually get the files)
PRESETS: dict[str, tuple[tuple[int, ...], str]] = {
    "nus-wide-21": ((21,), "NUS-WIDE images (NUS, lms.comp.nus.edu.sg) restricted to the 21 most frequent "
                           "concepts; list files as in DeepHash-pytorch data/nuswide_21 (test.txt 2,100 lines, "
                           "train.txt 10,500; database.txt from the archive its README links)"),
    "coco": ((80,), "MS-COCO 2014 images (cocodataset.org) with the HashNet / DeepHash-pytorch list files "
                    "(data/coco: test.txt 5,000 lines, train.txt 10,000, database.txt the rest)"),
    "mirflickr25k": ((24, 38), "MIRFlickr-25K images (press.liacs.nl/mirflickr, mirflickr25k.zip) with list "
                               "files such as DeepHash-pytorch data/mirflickr (38 labels) or 24-concept lists"),
}


@dataclass
class _ListFile:
    file: Path
    paths: list[str]
    labels: np.ndarray  # (m, C) uint8
    lines: list[int]  # 1-based line number of each entry
    sha256: str  # of the file's bytes


def _bad_label_message(file: Path, line_no: int, line: str) -> str:
    tokens = line.split()[1:]
    col, tok = next((j, t) for j, t in enumerate(tokens) if t not in ("0", "1"))
    return (f"{file}:{line_no}: label {tok!r} in label column {col + 1} is not 0 or 1; "
            "list files hold one 0/1 flag per class after the image path")


def _read_list_file(file: Path) -> _ListFile:
    raw_bytes = file.read_bytes()
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{file} is not UTF-8 text ({err}); expected '<image path> <0/1> ... <0/1>' lines") from None
    lines = text.removeprefix("\ufeff").splitlines()
    paths: list[str] = []
    flags: list[str] = []
    line_nos: list[int] = []
    width = first = 0
    for no, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        if not width:
            width, first = len(tokens), no
            if width < 2:
                raise DataError(f"{file}:{no}: no labels after the image path {tokens[0]!r}")
        elif len(tokens) != width:
            raise DataError(f"{file}:{no}: {len(tokens) - 1} labels, but line {first} has {width - 1}; "
                            "every line needs the same number of labels")
        paths.append(os.path.normpath(tokens[0]))
        flags.append("".join(tokens[1:]))
        line_nos.append(no)
    if not paths:
        raise DataError(f"{file} lists no images")
    n_labels = width - 1
    # One character per label when every flag is a single digit: decode all lines in one vector op.
    lengths = np.fromiter(map(len, flags), dtype=np.int64, count=len(flags))
    wrong_len = np.flatnonzero(lengths != n_labels)
    if wrong_len.size:
        k = int(wrong_len[0])
        raise DataError(_bad_label_message(file, line_nos[k], lines[line_nos[k] - 1]))
    raw = np.frombuffer("".join(flags).encode("ascii", errors="replace"), dtype=np.uint8)
    labels = (raw - np.uint8(ord("0"))).reshape(len(flags), n_labels)
    wrong = np.flatnonzero((labels > 1).any(axis=1))
    if wrong.size:
        k = int(wrong[0])
        raise DataError(_bad_label_message(file, line_nos[k], lines[line_nos[k] - 1]))
    return _ListFile(file, paths, labels, line_nos, hashlib.sha256(raw_bytes).hexdigest())


def _check_label_counts(files: dict[str, _ListFile], name: str, accepted: tuple[int, ...] | None) -> int:
    counts = {s: lf.labels.shape[1] for s, lf in files.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{files[s].file.name} has {c}" for s, c in counts.items())
        raise DataError(f"inconsistent label counts across list files ({listed} labels per line); "
                        "the three files must use the same label set")
    n_labels = next(iter(counts.values()))
    if accepted is not None and n_labels not in accepted:
        want = " or ".join(map(str, accepted))
        raise DataError(f"{name} expects {want} labels per line, the list files in "
                        f"{files['query'].file.parent} have {n_labels}; check that data_root holds {name}'s lists")
    return n_labels


def image_identity(image_root: str | os.PathLike, path: str) -> str:
    """The image a list-file ``path`` names: ``path`` resolved against ``image_root``, absolute and
    normalised, symbolic links not followed (see the module docstring). An absolute ``path`` is taken as
    it is, normalised."""
    return os.path.normpath(os.path.join(os.path.abspath(image_root), path))


def _merge(files: dict[str, _ListFile], n_labels: int,
           image_root: str | os.PathLike) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """One row per distinct image (`image_identity`); each split becomes the row indices its file lists.
    A row's path is the spelling of the first file listing it, in `_ROW_ORDER`."""
    root = os.path.abspath(image_root)
    prefix, isabs = os.path.join(root, ""), os.path.isabs  # the root with one separator after it
    index: dict[str, int] = {}
    origin: list[tuple[str, int]] = []  # (split, entry) where each row was first listed
    paths: list[str] = []
    splits: dict[str, np.ndarray] = {}
    for split in _ROW_ORDER:
        lf = files[split]
        rows = np.empty(len(lf.paths), dtype=np.int64)
        for k, p in enumerate(lf.paths):
            # `image_identity` with the root made absolute once. Paths are normpath-ed already, so one that
            # is relative and does not climb out ("..") only needs the root put before it: 0.06 s against
            # 0.13 s for join and normpath on 200,000 paths; the whole merge of 212,627 entries takes 0.24 s
            key = (prefix + p if not (isabs(p) or p[:2] == ".." or p == ".")
                   else os.path.normpath(os.path.join(root, p)))
            r = index.get(key)
            if r is None:
                r = index[key] = len(origin)
                origin.append((split, k))
                paths.append(p)
            rows[k] = r
        splits[split] = rows
    labels = np.zeros((len(paths), n_labels), dtype=np.uint8)
    assigned = np.zeros(len(paths), dtype=bool)
    for split in _ROW_ORDER:
        lf, rows = files[split], splits[split]
        fresh = ~assigned[rows]
        labels[rows[fresh]] = lf.labels[fresh]
        assigned[rows] = True
        clash = np.flatnonzero((labels[rows] != lf.labels).any(axis=1))
        if clash.size:
            k = int(clash[0])
            s0, k0 = origin[rows[k]]
            other = files[s0].paths[k0]
            also = f" (as {other!r})" if other != lf.paths[k] else ""
            raise DataError(f"{lf.paths[k]!r} has different labels at {lf.file}:{lf.lines[k]} and at "
                            f"{files[s0].file}:{files[s0].lines[k0]}{also}; an image must carry one label set")
        repeats = len(rows) - len(np.unique(rows))
        if repeats:
            warnings.warn(f"{lf.file} lists {repeats} image path(s) more than once; they are kept as "
                          "repeated entries of that split", stacklevel=3)
    return paths, labels, {s: splits[s] for s in SPLIT_FILES}


def _missing_images(root: str, paths: list[str]) -> list[int]:
    """Indices of ``paths`` that do not exist under ``root``: one directory listing per folder."""
    by_dir: dict[str, list[tuple[int, str]]] = {}
    for i, p in enumerate(paths):
        folder, _, base = p.rpartition(os.sep)  # paths are normpath-ed: os.sep separates them
        by_dir.setdefault(folder, []).append((i, base))
    missing: list[int] = []
    for folder, members in by_dir.items():
        try:
            present = set(os.listdir(os.path.join(root, folder)))
        except (FileNotFoundError, NotADirectoryError):
            missing.extend(i for i, _ in members)
            continue
        missing.extend(i for i, base in members if base not in present)
    return sorted(missing)


class ImageFiles:
    """Lazy images: item ``i`` is the file ``paths[i]`` under ``root`` decoded to ``uint8 (H, W, 3)``.

    Grey, palette, RGBA and CMYK files become RGB with PIL's ``convert("RGB")`` (alpha dropped), the
    loader every reference hashing code uses; 16-bit grey is scaled to 8 bits first rather than clipped.
    Indexing with a slice or an index array gives another lazy `ImageFiles`.
    """

    def __init__(self, root: str | os.PathLike, paths: list[str] | tuple[str, ...]):
        self.root = str(root)
        self.paths = tuple(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} images under {self.root!r})"

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.paths[i])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ImageFiles(self.root, self.paths[i])
        if isinstance(i, (list, tuple, np.ndarray)):
            return ImageFiles(self.root, [self.paths[j] for j in np.asarray(i, dtype=np.int64).reshape(-1)])
        return _decode(self.path(i))

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _decode(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode.startswith("I;16"):
                grey = np.rint(np.asarray(im, dtype=np.float64) / 257.0).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            return np.array(rgb, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist (was it moved after the dataset was loaded?)") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot decode image {path}: {err}; replace the file or drop it from the lists") from None


def _layout_help(name: str) -> str:
    lines = [
        f"{name} is read from list files that you supply (they are not redistributable, nothing is downloaded).",
        "Pass data_root=<folder> holding train.txt, test.txt and database.txt, each line",
        "'<image path relative to the folder> <l_1> ... <l_C>' with 0/1 labels (DeepHash-pytorch / HashNet style);",
        "images may live elsewhere: pass image_root=<folder> then.",
    ]
    if name in PRESETS:
        counts, where = PRESETS[name]
        lines.append(f"{name}: {' or '.join(map(str, counts))} labels per line. Usually obtained as: {where}.")
    return " ".join(lines)  # one line: the CLI prints a user's error as one line


def load_listfile(data_root: str | os.PathLike | None = None, *, name: str = "listfile",
                  image_root: str | os.PathLike | None = None, check_images: bool = True,
                  n_labels: int | tuple[int, ...] | None = None) -> Dataset:
    """Read ``train.txt`` / ``test.txt`` / ``database.txt`` under ``data_root`` (see the module docstring).

    ``n_labels``: the label count(s) accepted (None: any, as long as the three files agree).
    Returns a `Dataset` with ``labels`` ``(n, C)`` uint8 multi-hot, ``images`` an `ImageFiles` reader
    (``uint8 (H, W, 3)`` per item, decoded on access), ``splits`` the rows each file lists.

    Raises:
        DataError: no ``data_root`` or a missing list file (the message shows the expected layout),
            malformed lines, label counts that differ across files or from ``n_labels``, one image
            (however its paths are spelled, `image_identity`) with two label sets, or listed images
            that do not exist (unless ``check_images=False``), or a ``check_images`` that is not True
            or False (the string ``"False"`` would count as true).
    """
    check_bool_option(name, "check_images", check_images)  # "False" must not count as true
    if isinstance(n_labels, int):
        n_labels = (n_labels,)
    if data_root is None:
        raise DataError(_layout_help(name))
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"data_root {root} is not a folder. " + _layout_help(name))
    absent = [f for f in SPLIT_FILES.values() if not (root / f).is_file()]
    if absent:
        raise DataError(f"{root} lacks {', '.join(absent)}. " + _layout_help(name))
    files = {split: _read_list_file(root / f) for split, f in SPLIT_FILES.items()}
    count = _check_label_counts(files, name, n_labels)
    images_at = Path(image_root).expanduser() if image_root is not None else root
    paths, labels, splits = _merge(files, count, images_at)

    if check_images:
        missing = _missing_images(str(images_at), paths)
        if missing:
            where = {}
            for split in _ROW_ORDER:
                lf = files[split]
                for k, p in enumerate(lf.paths):
                    where.setdefault(p, f"{lf.file.name}:{lf.lines[k]}")
            shown = ", ".join(f"{paths[i]} ({where[paths[i]]})" for i in missing[:_SHOWN])
            raise DataError(f"{len(missing)} of {len(paths)} listed images do not exist under {images_at}; "
                            f"first: {shown}. Pass image_root=<folder the paths are relative to>, or fix the lists.")
    return Dataset(
        name=name,
        labels=labels,
        images=ImageFiles(images_at, paths),
        splits=splits,
        source=str(root.resolve()),
        # The lists decide rows, labels and splits; with the image folder they identify the data.
        fingerprint=hashlib.sha256("|".join([str(images_at.resolve())] + [files[s].sha256 for s in SPLIT_FILES])
                                   .encode()).hexdigest(),
    )


def _preset_loader(preset: str, what: str):
    """A loader of list files with the label count of ``preset`` (`PRESETS`); it takes the options of
    `load_listfile` except ``name`` and ``n_labels``, which the preset fixes."""
    counts = PRESETS[preset][0]

    def load(data_root: str | os.PathLike | None = None, *, image_root: str | os.PathLike | None = None,
             check_images: bool = True) -> Dataset:
        return load_listfile(data_root, name=preset, n_labels=counts, image_root=image_root,
                             check_images=check_images)

    load.__name__ = load.__qualname__ = f"load_{preset.replace('-', '_')}"
    load.__doc__ = (f"{what}: list files with {' or '.join(map(str, counts))} labels per line (`load_listfile`).\n\n"
                    f"    Raises:\n        DataError: as `load_listfile`, and when the lists carry another label count.\n")
    return load


load_nus_wide_21 = _preset_loader("nus-wide-21", "NUS-WIDE restricted to its 21 most frequent concepts")
load_coco = _preset_loader("coco", "MS-COCO (HashNet split, 80 categories)")
load_mirflickr25k = _preset_loader("mirflickr25k", "MIRFlickr-25K: 24 concepts, or 38 (the 24 plus the *_r1 variants)")
