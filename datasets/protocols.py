"""Evaluation protocols as data, and the split they produce.

A protocol says how a dataset is divided into queries, a retrieval database and a training set,
with which seed, and at which K mAP is read. Protocols are frozen dataclasses: `Protocol.digest()`
hashes their declaration and `split_digest` hashes what the split they produce holds (indices,
labels and the content of every item); both are logged with every run, so two numbers are
comparable exactly when both digests agree.

Queries that are also database items find themselves at Hamming distance 0 and inflate mAP (measured
on a list-file dataset whose database.txt also listed its queries: ITQ mAP@5000 0.818 -> 0.841).
`make_split` therefore counts them (`Split.overlap`) and refuses such a split unless told otherwise;
see `make_split` for what is counted for which kind of dataset.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from hashbench.datasets.base import TEST, TRAIN, Dataset
from hashbench.datasets.errors import DataError, UnknownDatasetError


@dataclass(frozen=True)
class Protocol:
    """How to split a dataset.

    * ``query_pool``: ``"all"`` (queries drawn from every item) or ``"test"`` (the official test part).
    * ``n_query``: how many queries (None: the whole pool). With ``per_class`` they are drawn as
      ``n_query / n_classes`` per class (single-label data only).
    * ``database``: ``"rest"`` (every item that is not a query) or ``"train"`` (the official train part).
    * ``n_database``: None for the whole database, else a (stratified when ``per_class``) sample of it.
    * ``n_train``: training items drawn from the database (None: the training set is the database).
    * ``predefined``: use the dataset's own ``splits`` (list files) instead of sampling.
    * ``topk``: the K of mAP@K.
    The database is always stored in a seeded random order, never grouped by class: with ties broken
    by database index, a class-sorted database inflates mAP@K.
    """

    name: str
    dataset: str
    topk: int
    query_pool: str = "all"
    n_query: int | None = None
    database: str = "rest"
    n_database: int | None = None
    n_train: int | None = None
    per_class: bool = True
    predefined: bool = False
    seed: int = 0
    description: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


SPLIT_NAMES = ("query", "database", "train")


@dataclass(frozen=True)
class Split:
    """Row indices into a `Dataset`: ``query``, ``database`` (in its stored order) and ``train``,
    each a 1-d int64 array.

    ``overlap`` counts queries that are also database or training items, as `make_split` measured
    them: ``query_in_database`` / ``query_in_train`` (same item) for datasets whose rows are items,
    ``query_duplicates_in_database`` / ``query_duplicates_in_train`` (identical feature row and label)
    for pre-extracted features. Empty for a `Split` built by hand.
    """

    query: np.ndarray
    database: np.ndarray
    train: np.ndarray
    overlap: dict[str, int] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {"n_query": len(self.query), "n_database": len(self.database), "n_train": len(self.train)}


_P = Protocol
PROTOCOLS: dict[str, dict[str, Protocol]] = {
    "digits": {
        "digits": _P("digits", "digits", topk=100, n_query=100, n_train=None,
                     description="100 queries (10 per class), database = the rest, training set = database"),
    },
    "fashion-mnist": {
        "fashion-mnist": _P("fashion-mnist", "fashion-mnist", topk=1000, n_query=1000, n_train=5000,
                            description="1,000 queries (100 per class) from all 70,000 images, database = "
                                        "the other 69,000, 5,000 training images (500 per class) from it"),
        "ci": _P("ci", "fashion-mnist", topk=1000, n_query=500, n_database=10000, n_train=2000,
                 description="small regression protocol: 500 queries, 10,000 database, 2,000 training"),
    },
    "cifar10": {
        "cifar10": _P("cifar10", "cifar10", topk=1000, n_query=1000, n_train=5000,
                      description="1,000 queries (100 per class) from all 60,000 images, database = the "
                                  "other 59,000, 5,000 training images (500 per class) from it"),
        "cifar10-test-query": _P("cifar10-test-query", "cifar10", topk=1000, query_pool="test", n_query=None,
                                 database="train", n_train=5000,
                                 description="queries = the 10,000 official test images, database = the "
                                             "50,000 official training images, 5,000 training images "
                                             "(500 per class) from it"),
        "ci": _P("ci", "cifar10", topk=1000, query_pool="test", n_query=500, database="train",
                 n_database=5000, n_train=2000,
                 description="small regression protocol: 500 test queries (50 per class), 5,000 database "
                             "images (500 per class) from the training part, 2,000 training images from it; "
                             "5,500 images to extract features for"),
    },
    "listfile": {
        "listfile": _P("listfile", "listfile", topk=5000, predefined=True,
                       description="the dataset's list files: query = test.txt, database = database.txt, "
                                   "train = train.txt; relevant = at least one shared label"),
    },
    "nus-wide-21": {
        "nus-wide-21": _P("nus-wide-21", "nus-wide-21", topk=5000, predefined=True,
                          description="NUS-WIDE, 21 concepts, from list files (DeepHash-pytorch: 2,100 queries, "
                                      "10,500 training, database = the rest); relevant = a shared concept"),
    },
    "coco": {
        "coco": _P("coco", "coco", topk=5000, predefined=True,
                   description="MS-COCO, 80 categories, from list files (HashNet / DeepHash-pytorch: 5,000 "
                               "queries, 10,000 training, database = the rest); relevant = a shared category"),
    },
    "mirflickr25k": {
        "mirflickr25k": _P("mirflickr25k", "mirflickr25k", topk=5000, predefined=True,
                           description="MIRFlickr-25K (24 or 38 labels) from list files (DeepHash-pytorch: "
                                       "1,000 queries, 4,000 training, 20,000 database); relevant = a shared label"),
    },
    "features": {
        "features": _P("features", "features", topk=1000, predefined=True,
                       description="pre-extracted features with their own query / database / train splits; "
                                   "mAP@1000 (CIFAR-10 convention, and LAGNH's reported K)"),
        "features-5000": _P("features-5000", "features", topk=5000, predefined=True,
                            description="as 'features' with mAP@5000 (the NUS-WIDE / MS-COCO convention)"),
    },
}
DEFAULT_PROTOCOL = {"digits": "digits", "fashion-mnist": "fashion-mnist", "cifar10": "cifar10", "listfile": "listfile",
                    "nus-wide-21": "nus-wide-21", "coco": "coco", "mirflickr25k": "mirflickr25k",
                    "features": "features"}


def register_protocol(protocol: Protocol, *, default: bool = False) -> Protocol:
    PROTOCOLS.setdefault(protocol.dataset, {})[protocol.name] = protocol
    if default or protocol.dataset not in DEFAULT_PROTOCOL:
        DEFAULT_PROTOCOL[protocol.dataset] = protocol.name
    return protocol


def get_protocol(dataset: str, name: str | None = None) -> Protocol:
    """Protocol ``name`` of ``dataset`` (None: the dataset's default, `DEFAULT_PROTOCOL`).

    Raises:
        UnknownDatasetError: (a `DataError`) no such protocol for the dataset (or none at all).
    """
    known = PROTOCOLS.get(dataset, {})
    name = name or DEFAULT_PROTOCOL.get(dataset)
    if name is None or name not in known:
        raise UnknownDatasetError(str(name), sorted(known) or ["(none for this dataset)"], what=f"protocol for {dataset}")
    return known[name]


def _sample(rng: np.random.Generator, pool: np.ndarray, n: int | None, labels: np.ndarray | None,
            what: str) -> np.ndarray:
    """``n`` items of ``pool``; stratified (equal per class) when ``labels`` is given."""
    if n is None:
        return pool.copy()
    if n > len(pool):
        raise DataError(f"the protocol asks for {n} {what} but only {len(pool)} items are available")
    if labels is None:
        return rng.choice(pool, size=n, replace=False)
    classes = np.unique(labels[pool])
    if n % len(classes):
        raise DataError(f"{n} {what} cannot be split evenly over {len(classes)} classes")
    per = n // len(classes)
    picks = []
    for c in classes:
        members = pool[labels[pool] == c]
        if per > len(members):
            raise DataError(f"class {c} has {len(members)} items, the protocol needs {per} {what} from it")
        picks.append(rng.choice(members, size=per, replace=False))
    return np.concatenate(picks)


def make_split(protocol: Protocol, data: Dataset, *, allow_query_overlap: bool = False) -> Split:
    """Divide ``data`` as ``protocol`` says; deterministic for the protocol's seed.

    Returns a `Split` of int64 row indices whose ``overlap`` counts the queries that are also database
    or training items (see `query_overlap`). A training set drawn from the database is the standard
    protocol and is never counted. Sampled protocols cannot overlap (queries are removed from the pool
    first); their counts are filled anyway (zeros) so that every run can log them.

    Raises:
        DataError: the protocol needs predefined splits or the official partition that ``data`` lacks,
            asks for more items (per class) than there are; or queries are the same items as database or
            training items (same row; for list files the same image path) and ``allow_query_overlap``
            is False: each would find itself at distance 0.

    Warns:
        UserWarning: pre-extracted features (no item identity) where queries have a feature row and
            label identical to some database or training row; the split is made, the counts are in
            ``overlap``.
    """
    split = _predefined_split(protocol, data) if protocol.predefined else _sampled_split(protocol, data)
    overlap = query_overlap(split, data)
    _judge_overlap(overlap, len(split.query), protocol, data, allow_query_overlap)
    return Split(split.query, split.database, split.train, overlap=overlap)


def _predefined_split(protocol: Protocol, data: Dataset) -> Split:
    missing = [k for k in SPLIT_NAMES if k not in data.splits]
    if missing:
        raise DataError(f"protocol {protocol.name!r} needs predefined splits, {data.name} lacks {missing}")
    return Split(*(_as_index(data.splits[k], len(data), f"{data.name}'s {k} split") for k in SPLIT_NAMES))


def _sampled_split(protocol: Protocol, data: Dataset) -> Split:
    n = len(data)
    rng = np.random.default_rng(protocol.seed)
    strat = data.labels if (protocol.per_class and not data.multi_label) else None
    everything = np.arange(n)

    def part(which: str) -> np.ndarray:
        if which == "all":
            return everything
        if data.partition is None:
            raise DataError(f"protocol {protocol.name!r} needs the official train/test partition, "
                            f"which this copy of {data.name} does not have")
        return everything[data.partition == (TEST if which == "test" else TRAIN)]

    query = np.sort(_sample(rng, part(protocol.query_pool), protocol.n_query, strat, "queries"))
    if protocol.database == "rest":
        db_pool = np.setdiff1d(everything, query, assume_unique=True)
    else:
        db_pool = np.setdiff1d(part("train"), query, assume_unique=True)
    database = _sample(rng, db_pool, protocol.n_database, strat, "database items")
    database = rng.permutation(database)  # seeded random order: never grouped by class
    train = np.sort(_sample(rng, database, protocol.n_train, strat, "training items"))
    return Split(query=query.astype(np.int64), database=database.astype(np.int64), train=train.astype(np.int64))


# --------------------------------------------------------------------------- validation split

@dataclass(frozen=True)
class ValidationRule:
    """How a validation split is carved from a protocol's training split, and its K.

    ``fraction`` of the training items (stratified by class for single-label data when the count divides
    evenly, as the protocol's own draws) become validation queries; the other training items are both the
    validation database (in a seeded random order) and the set a model is fitted on. The draw is seeded by
    the protocol's seed and ``seed``. K is scaled to the validation database so that it cuts the same share
    of the database as the protocol's K does (`validation_topk`). Neither the protocol's queries nor its
    evaluation database are read.
    """

    fraction: float = 0.1
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


VALIDATION_RULE = ValidationRule()
# Mixed into the validation draw's seed so that it never repeats the protocol's own draws.
_VALIDATION_STREAM = 0x7A11D


def validation_split(protocol: Protocol, split: Split, data: Dataset,
                     rule: ValidationRule = VALIDATION_RULE) -> Split:
    """The validation split of ``split`` (a split ``protocol`` made of ``data``): rows of its training
    split only (`ValidationRule`). Returns a `Split` of int64 row indices whose ``query`` are the
    validation queries (sorted), ``database`` the other training rows in a seeded random order and
    ``train`` the same rows sorted; ``overlap`` as `query_overlap` counts it (zero for datasets whose rows
    are items: the parts are disjoint rows; pre-extracted features may repeat a row).

    Raises:
        DataError: ``rule.fraction`` is not in (0, 1), or the training split is too small to leave at least
            one validation query and one validation database item.
    """
    if not 0 < rule.fraction < 1:
        raise DataError(f"the validation fraction must lie in (0, 1), got {rule.fraction!r}")
    train = np.sort(np.asarray(split.train, dtype=np.int64))
    n_val = int(round(rule.fraction * len(train)))
    if n_val < 1 or n_val >= len(train):
        raise DataError(f"a validation split of {rule.fraction:g} of {len(train)} training items leaves "
                        f"{n_val} validation queries and {len(train) - n_val} database items; both must be >= 1")
    rng = np.random.default_rng([protocol.seed, rule.seed, _VALIDATION_STREAM])
    strat = None
    if protocol.per_class and not data.multi_label:
        n_classes = len(np.unique(data.labels[train]))
        if n_val % n_classes == 0 and all(np.count_nonzero(data.labels[train] == c) >= n_val // n_classes
                                          for c in np.unique(data.labels[train])):
            strat = data.labels
    query = np.sort(_sample(rng, train, n_val, strat, "validation queries")).astype(np.int64)
    rest = np.setdiff1d(train, query, assume_unique=True)
    database = rng.permutation(rest).astype(np.int64)
    return Split(query=query, database=database, train=rest,
                 overlap=query_overlap(Split(query, database, rest), data))


def validation_topk(protocol: Protocol, split: Split, validation: Split) -> int:
    """K of a validation split: the protocol's K scaled by the ratio of the validation database to the
    protocol's database, rounded, at least 1 (CIFAR-10: 1,000 of 59,000 -> 76 of 4,500)."""
    k = min(protocol.topk, len(split.database))
    return max(1, int(round(k * len(validation.database) / len(split.database))))


def _as_index(rows, n: int, what: str) -> np.ndarray:
    """``rows`` as a 1-d int64 array of row numbers in ``[0, n)``; `DataError` otherwise."""
    arr = np.asarray(rows)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{what} must be a 1-d array of row numbers, got shape {arr.shape} of {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise DataError(f"{what} must lie in [0, {n}), got values from {arr.min()} to {arr.max()}")
    return arr


# --------------------------------------------------------------------------- query overlap

def query_overlap(split: Split, data: Dataset) -> dict[str, int]:
    """How many of ``split.query`` are also database / training items of ``data``.

    Datasets whose rows are items (images in memory, list files: one row per distinct image, its path
    resolved against the image root whatever the spelling, `datasets.listfile.image_identity`) give
    ``{"query_in_database": a, "query_in_train": b}``: queries whose row is also a database / training
    row. Pre-extracted features (``data.features`` set) carry no image identity
    and their rows are not de-duplicated, so they give ``{"query_duplicates_in_database": a,
    "query_duplicates_in_train": b}``: queries whose feature row *and* label are byte-identical
    (``-0.0`` counted as ``0.0``) to some database / training row, found by hashing rows (memory
    linear in the rows, never a queries x database matrix), every hash match confirmed on the bytes.
    A query listed twice counts twice. Cost: 0.6 s for 2,100 queries against 100,000 database and
    10,500 training rows of 1280-d float32 features (one core); microseconds per row for item datasets.

    Raises:
        DataError: an index array is not 1-d integer rows of ``data``.
    """
    n = len(data)
    rows = {k: _as_index(getattr(split, k), n, f"the split's {k} indices") for k in SPLIT_NAMES}
    if data.features is None:
        return {"query_in_database": int(np.isin(rows["query"], rows["database"]).sum()),
                "query_in_train": int(np.isin(rows["query"], rows["train"]).sum())}
    keys = _RowKeys(data)
    query_hashes = keys.hashes(rows["query"])
    return {f"query_duplicates_in_{k}": keys.count_duplicated(rows["query"], query_hashes, rows[k])
            for k in ("database", "train")}


class _RowKeys:
    """Rows of pre-extracted features as byte strings (feature row, then label row), with a 64-bit hash.

    The hash is ``sum_j w_j c_j mod 2^64`` over the row's bytes read as 64-bit words ``w_j`` with fixed
    random odd coefficients ``c_j``: vectorised, exact integer arithmetic (the same bytes give the same
    hash in any process); matches are confirmed on the bytes, so collisions cannot inflate a count.
    """

    _CHUNK_BYTES = 16 << 20

    def __init__(self, data: Dataset):
        self.features = np.asarray(data.features)
        self.labels = np.asarray(data.labels)
        n_bytes = (self.features[:1].reshape(1, -1).nbytes + self.labels[:1].reshape(1, -1).nbytes)
        self.words = max(1, -(-n_bytes // 8))
        self.coefficients = np.random.default_rng(0x5EED).integers(1, 2**63, self.words, dtype=np.uint64) | 1
        self.chunk = max(1, self._CHUNK_BYTES // (8 * self.words))

    def row_bytes(self, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), 8 * words)`` uint8: feature bytes, label bytes, zero padding."""
        feats = self.features[rows].reshape(len(rows), -1)
        if feats.dtype.kind == "f":
            feats = feats + feats.dtype.type(0)  # -0.0 + 0.0 = 0.0: one spelling of zero
        parts = [np.ascontiguousarray(feats).view(np.uint8).reshape(len(rows), -1),
                 np.ascontiguousarray(self.labels[rows].reshape(len(rows), -1)).view(np.uint8).reshape(len(rows), -1)]
        out = np.zeros((len(rows), 8 * self.words), np.uint8)
        out[:, :sum(p.shape[1] for p in parts)] = np.concatenate(parts, axis=1)
        return out

    def hashes(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), np.uint64)
        for lo in range(0, len(rows), self.chunk):
            words = self.row_bytes(rows[lo:lo + self.chunk]).view(np.uint64)
            out[lo:lo + self.chunk] = (words * self.coefficients).sum(axis=1, dtype=np.uint64)
        return out

    def count_duplicated(self, query: np.ndarray, query_hashes: np.ndarray, other: np.ndarray) -> int:
        """How many entries of ``query`` have the bytes of some row of ``other``."""
        if not len(query) or not len(other):
            return 0
        other_hashes = self.hashes(other)
        order = np.argsort(other_hashes, kind="stable")
        sorted_hashes = other_hashes[order]
        candidates = np.flatnonzero(np.isin(query_hashes, sorted_hashes))
        if not len(candidates):
            return 0
        lo = np.searchsorted(sorted_hashes, query_hashes[candidates], side="left")
        hi = np.searchsorted(sorted_hashes, query_hashes[candidates], side="right")
        # Equal hashes are almost always equal rows: compare with the first of each group at once,
        # and walk the rest of a group only for the (rare) candidates that first one does not match.
        found = (self.row_bytes(query[candidates]) == self.row_bytes(other[order[lo]])).all(axis=1)
        for k in np.flatnonzero(~found):
            q = self.row_bytes(query[candidates[k]:candidates[k] + 1])
            rest = other[order[lo[k] + 1:hi[k]]]
            found[k] = any((self.row_bytes(rest[s:s + self.chunk]) == q).all(axis=1).any()
                           for s in range(0, len(rest), self.chunk))
        return int(found.sum())


def _judge_overlap(overlap: dict[str, int], n_query: int, protocol: Protocol, data: Dataset,
                   allow: bool) -> None:
    if "query_in_database" in overlap:
        in_db, in_train = overlap["query_in_database"], overlap["query_in_train"]
        if (in_db or in_train) and not allow:
            raise DataError(_same_item_message(in_db, in_train, n_query, protocol, data))
        return
    in_db, in_train = overlap["query_duplicates_in_database"], overlap["query_duplicates_in_train"]
    if in_db or in_train:
        warnings.warn(f"{in_db} of {n_query} queries of {data.name} have the same features and label as a database row "
                      f"and {in_train} as a training row (feature files carry no image identity: these may be "
                      "the same images listed in two splits); a duplicate in the database finds itself at "
                      "distance 0 and inflates mAP. Evaluating anyway; the counts are logged as "
                      "query_duplicates_in_database / query_duplicates_in_train", UserWarning, stacklevel=3)


def _same_item_message(in_db: int, in_train: int, n_query: int, protocol: Protocol,
                       data: Dataset) -> str:
    from hashbench.datasets.listfile import SPLIT_FILES, ImageFiles

    list_files = protocol.predefined and isinstance(data.images, ImageFiles)
    if list_files:
        others = [SPLIT_FILES[k] for k, c in (("database", in_db), ("train", in_train)) if c]
        why = f"same image path in {SPLIT_FILES['query']} and {' / '.join(others)}"
        fix = "Fix the list files"
    else:
        why = f"same rows of {data.name}"
        fix = "Fix the splits"
    harm = []
    if in_db:
        harm.append("each query in the database would find itself at distance 0")
    if in_train:
        harm.append("the method would be trained on the queries it is evaluated with")
    return (f"{in_db} of {n_query} queries are also in the database and {in_train} in the training set ({why}): "
            f"{'; '.join(harm)}. {fix}, or pass allow_query_overlap=True (--allow-query-overlap) to "
            "evaluate anyway")


# --------------------------------------------------------------------------- split digest

_DIGEST_VERSION = "hashbench-split-digest-v1"
_DIGEST_CHUNK_BYTES = 32 << 20


def split_digest(split: Split, data: Dataset) -> str:
    """sha256 hex digest of what ``split`` selects from ``data``: a content digest, stable across
    processes, that two runs share exactly when they evaluate on the same data split the same way.

    For each of ``query``, ``database``, ``train`` in that order it hashes the int64 indices, the
    labels of those rows (dtype, shape, bytes) and the content of each row's item:

    * pre-extracted features (``data.features`` set): the feature rows (dtype, shape, bytes);
    * images in memory (``data.images`` a numpy array): the image bytes (dtype, shape, bytes);
    * list files (``data.images`` an `ImageFiles` reader): the normalised image paths as the lists give
      them (relative to the image folder, so the same lists in another folder give the same digest: a
      split digest never depends on where files sit); no image is decoded. An image the lists spell two
      ways (``img/1.png`` in test.txt, ``/data/set/img/1.png`` in database.txt, image root
      ``/data/set``) is one row, hashed under the spelling of the first file listing it (database.txt,
      then train.txt, then test.txt; the one ``ImageFiles.paths`` holds): one spelling per item keeps
      the digest a function of the lists, and lists that spell every image one way hash as before;
    * any other image sequence: every selected image, read and hashed (dtype, shape, bytes);
    * no images and no features: indices and labels only.

    ``split.overlap`` is not part of it (it follows from the rest). Cost (one core of a shared 2-core
    machine, best of 5): Fashion-MNIST, default protocol (75,000 selected 28 x 28 images) 0.07 s;
    CIFAR-10, default protocol (65,000 selected 32 x 32 x 3 images) 0.23 s; 112,600 rows of 1280-d
    float32 features 0.7 s. Memory: a few tens of MB beyond the data (the selection is hashed in blocks).

    Raises:
        DataError: an index array is not 1-d integer rows of ``data``.
    """
    from hashbench.datasets.listfile import ImageFiles

    n = len(data)
    h = hashlib.sha256(_DIGEST_VERSION.encode())
    if data.features is not None:
        kind, content = "features", np.asarray(data.features)
    elif isinstance(data.images, np.ndarray):
        kind, content = "images", data.images
    elif isinstance(data.images, ImageFiles):
        kind, content = "paths", data.images
    elif data.images is not None:
        kind, content = "image-sequence", data.images
    else:
        kind, content = "none", None
    h.update(f"|items:{kind}|".encode())
    labels = np.asarray(data.labels)
    for name in SPLIT_NAMES:
        rows = _as_index(getattr(split, name), n, f"the split's {name} indices")
        h.update(f"|{name}|".encode())
        _hash_array(h, "indices", rows, None)
        _hash_array(h, "labels", labels, rows)
        if kind in ("features", "images"):
            _hash_array(h, kind, content, rows)
        elif kind == "paths":
            paths = content.paths
            text = "\0".join(os.path.normpath(paths[r]) for r in rows)
            h.update(f"|paths:{len(rows)}|".encode())
            h.update(text.encode("utf-8", "surrogatepass"))
        elif kind == "image-sequence":
            h.update(f"|images:{len(rows)}|".encode())
            for r in rows:
                img = np.ascontiguousarray(np.asarray(content[int(r)]))
                h.update(f"{img.dtype.str}{img.shape}".encode())
                h.update(img)
    return h.hexdigest()


def _hash_array(h, what: str, arr: np.ndarray, rows: np.ndarray | None) -> None:
    """Feed ``arr[rows]`` (all of ``arr`` when ``rows`` is None) to ``h``: dtype, shape, then the bytes,
    gathered a few MB at a time (the selection is never copied whole)."""
    n = len(arr) if rows is None else len(rows)
    h.update(f"|{what}:{arr.dtype.str}:{(n, *arr.shape[1:])}|".encode())
    row_bytes = max(1, arr[:1].nbytes)
    step = max(1, _DIGEST_CHUNK_BYTES // row_bytes)
    for lo in range(0, n, step):
        block = arr[lo:lo + step] if rows is None else arr[rows[lo:lo + step]]
        h.update(np.ascontiguousarray(block))
