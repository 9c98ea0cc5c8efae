"""A validation split drawn from a protocol's training split only (shared by the choice studies).

``--n-val`` training items, stratified by class (seed ``val_seed``), become validation queries; the other
training items are the fitting set and the validation database. The protocol's queries and database are
never read, and their features are never computed.
"""
from __future__ import annotations

import json

import numpy as np

from hashbench.datasets.features import compute_features
from hashbench.datasets.protocols import get_protocol, make_split
from hashbench.datasets.registry import load_dataset


def training_validation(dataset: str, n_val: int = 1000, val_seed: int = 12345):
    """``(data, train_rows, X, y, fit, val)``: the dataset, its protocol's training rows (sorted), their
    default features ``X`` (n_train, d) float32 and labels ``y``, and positions into them of the fitting
    set ``fit`` and of the validation queries ``val``."""
    data = load_dataset(dataset)
    split = make_split(get_protocol(dataset), data)
    train = np.sort(split.train)
    X = np.asarray(compute_features(data, indices=train)[0])
    y = data.labels[train]
    rng = np.random.default_rng(val_seed)
    classes = np.unique(y)
    per = n_val // len(classes)
    val = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), per, replace=False) for c in classes]))
    return data, train, X, y, np.setdiff1d(np.arange(len(train)), val), val


def emit(row: dict, out: str) -> None:
    """Print ``row`` as one JSON line and append it to the file ``out``."""
    line = json.dumps(row)
    print(line, flush=True)
    with open(out, "a") as fh:
        fh.write(line + "\n")
