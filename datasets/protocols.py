"""Evaluation protocols as data, and the split they produce.

A protocol says how a dataset is divided into queries, a retrieval database and a training set,
with which seed, and at which K mAP is read. Protocols are frozen dataclasses: `Protocol.digest()`
hashes their declaration and `Split.digest()` hashes the indices they produce; both are logged with
every run, so two numbers are comparable exactly when both digests agree.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from datasets.base import TEST, TRAIN, Dataset
from datasets.errors import DataError, UnknownDatasetError


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


@dataclass(frozen=True)
class Split:
    query: np.ndarray
    database: np.ndarray
    train: np.ndarray

    def digest(self) -> str:
        h = hashlib.sha256()
        for name in ("query", "database", "train"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.int64)
            h.update(name.encode())
            h.update(arr.tobytes())
        return h.hexdigest()

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


def make_split(protocol: Protocol, data: Dataset) -> Split:
    """Divide ``data`` as ``protocol`` says; deterministic for the protocol's seed."""
    n = len(data)
    if protocol.predefined:
        missing = [k for k in ("query", "database", "train") if k not in data.splits]
        if missing:
            raise DataError(f"protocol {protocol.name!r} needs predefined splits, {data.name} lacks {missing}")
        return Split(*(np.asarray(data.splits[k], dtype=np.int64) for k in ("query", "database", "train")))
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
