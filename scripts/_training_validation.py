"""The harness's validation split, as the choice studies under ``scripts/`` use it.

One owner: the split is `hashbench.datasets.protocols.validation_split` (rule `ValidationRule`; default
`VALIDATION_RULE`, 10 % of the protocol's training split), the same one ``bench run --validation`` and
``bench tune`` score on. Its validation queries and its validation database (which is also the set a model
is fitted on) are rows of the protocol's training split only: the protocol's queries and evaluation
database are never read, and their features are never computed. K of mAP@K is `validation_topk`.

A study adds the split's flags with `add_split_arguments`, builds the split with `training_validation` and
stamps every row it emits with `TrainingValidation.describe`.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from hashbench.datasets.base import Dataset
from hashbench.datasets.features import compute_features, compute_side, inherited_side_settings
from hashbench.datasets.protocols import (VALIDATION_RULE, Protocol, Split, ValidationRule, get_protocol,
                                          make_split, validation_split, validation_topk)
from hashbench.datasets.registry import load_dataset

SPLIT_NAME = "hashbench validation_split"


def _fraction(text: str) -> float:
    """argparse type of ``--val-fraction``: a float in (0, 1) (`validation_split` refuses others)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {text}")
    return value


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--val-fraction`` and ``--val-seed`` (the fields of `ValidationRule`, the harness's defaults)."""
    parser.add_argument("--val-fraction", type=_fraction, default=VALIDATION_RULE.fraction,
                        help="share of the protocol's training split drawn as validation queries "
                             f"(ValidationRule.fraction; default {VALIDATION_RULE.fraction})")
    parser.add_argument("--val-seed", type=int, default=VALIDATION_RULE.seed,
                        help="seed of the validation draw, mixed with the protocol's seed "
                             f"(ValidationRule.seed; default {VALIDATION_RULE.seed})")


def rule_from(args: argparse.Namespace) -> ValidationRule:
    """The `ValidationRule` that ``--val-fraction`` / ``--val-seed`` give."""
    return ValidationRule(fraction=args.val_fraction, seed=args.val_seed)


@dataclass
class TrainingValidation:
    """A protocol's validation split with the features of its rows.

    * ``rows``: the protocol's training rows of ``data``, sorted, int64 ``(n_train,)``; ``X``: their
      features ``(n_train, d)`` float32 (``features_info`` as `compute_features` returns it); ``y``: their
      labels ``(n_train,)`` or ``(n_train, C)``.
    * ``query``, ``database``, ``fit``: int64 positions into ``rows`` of the validation queries (sorted),
      of the validation database (in the split's seeded random order, as the harness stores a database)
      and of the fitting set (the same rows as the database, sorted, as ``bench run --validation`` fits).
    * ``split``: the validation `Split` itself (rows of ``data``); ``topk``: its K (`validation_topk`).
    """

    data: Dataset
    protocol: Protocol
    rule: ValidationRule
    split: Split
    topk: int
    rows: np.ndarray
    X: np.ndarray
    y: np.ndarray
    features_info: dict[str, Any] = field(default_factory=dict)
    query: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    database: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    fit: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def describe(self) -> dict[str, Any]:
        """What every emitted row says about its split: ``split``, ``validation_rule``, ``protocol``,
        ``validation_topk``, ``n_fit`` (= the validation database's size) and ``n_val`` (queries)."""
        return {"split": SPLIT_NAME, "validation_rule": self.rule.as_dict(), "protocol": self.protocol.name,
                "validation_topk": self.topk, "n_fit": len(self.fit), "n_val": len(self.query)}

    def side(self, name: str, positions: np.ndarray, **settings: Any) -> tuple[np.ndarray, dict]:
        """Side input ``name`` of the training rows at ``positions`` (rows in that order), computed as
        ``bench run`` computes it: ``settings`` over the dataset's defaults, then the settings the
        features impose (`inherited_side_settings`). Raises what `compute_side` raises (`DataError`)."""
        return compute_side(self.data, name, indices=self.rows[positions],
                            **{**settings, **inherited_side_settings(name, self.features_info)})


def training_validation(dataset: str, rule: ValidationRule = VALIDATION_RULE, *, protocol: str | None = None,
                        features: str | None = None) -> TrainingValidation:
    """The validation split of ``dataset``'s protocol ``protocol`` (None: its default) under ``rule``,
    with the ``features`` extractor's features (None: the dataset's default) of the training rows only.

    Raises:
        DataError: unknown dataset or protocol, missing data, or a training split too small for ``rule``
            (as `make_split`, `validation_split` and `compute_features` raise it).
    """
    data = load_dataset(dataset)
    proto = get_protocol(dataset, protocol)
    parent = make_split(proto, data)
    validation = validation_split(proto, parent, data, rule)
    rows = np.sort(np.asarray(parent.train, dtype=np.int64))
    X, info = compute_features(data, features, indices=rows)
    return TrainingValidation(
        data=data, protocol=proto, rule=rule, split=validation, topk=validation_topk(proto, parent, validation),
        rows=rows, X=np.asarray(X, dtype=np.float32), y=data.labels[rows], features_info=dict(info),
        query=np.searchsorted(rows, validation.query), database=np.searchsorted(rows, validation.database),
        fit=np.searchsorted(rows, validation.train))


def fail(message: str) -> NoReturn:
    """A user's error: ``message`` as one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def emit(row: dict, out: str) -> None:
    """Print ``row`` as one JSON line and append it to the file ``out``."""
    line = json.dumps(row)
    print(line, flush=True)
    with open(out, "a") as fh:
        fh.write(line + "\n")
