"""A retrieval scorer for scikit-learn's model selection (`GridSearchCV`, `cross_val_score`).

Within the rows a scorer is given (a cross-validation fold), every row is a query against the fold's
*other* rows: its own code is left out of its database, so a hasher is never rewarded for finding the
query itself. ``y`` gives relevance only (same class id, or at least one shared label for multi-hot
rows), exactly as for the harness's queries. The score is a metric of the one evaluation engine
(`bench.evaluation.evaluate`), mAP@K by default, averaged over the fold's rows.

    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    import hashbench

    pipe = Pipeline([("scale", StandardScaler()), ("itq", hashbench.get_method("itq")(32))])
    search = GridSearchCV(pipe, {"itq__n_iter": [0, 50]}, scoring=hashbench.retrieval_scorer(topk=100), cv=3)
    search.fit(X_train, y_train)          # y only says which rows are relevant to which

Choosing hyper-parameters with it on the protocol's queries or evaluation database would leak them:
give it training rows (a validation split), as the house rules require.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from bench import evaluation


def leave_one_out_scores(codes: np.ndarray, labels: np.ndarray, *, topk: int) -> dict[str, float]:
    """The engine's metrics with every row of ``codes`` a query against all the other rows.

    Args:
        codes: ``uint8`` ``(n, n_bytes)`` packed codes, ``n >= 2``.
        labels: ``(n,)`` class ids or ``(n, C)`` multi-hot 0/1 rows (relevance only).
        topk: the K of mAP@K and P@K (capped at ``n - 1`` by the engine; the key keeps ``topk``).

    Returns:
        The keys of `bench.evaluation.evaluate`, each the mean over the ``n`` queries.

    Raises:
        ValueError: fewer than 2 rows, or ``codes`` and ``labels`` of different lengths.
    """
    codes, labels = np.asarray(codes), np.asarray(labels)
    n = codes.shape[0]
    if n < 2:
        raise ValueError(f"a retrieval score needs at least 2 rows (a query and a database item), got {n}")
    if labels.shape[0] != n:
        raise ValueError(f"{n} codes but {labels.shape[0]} labels")
    totals: dict[str, float] = {}
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        # The engine scores queries against one database; leaving row i out of its own database makes
        # one call per row (a fold of 2,000 rows takes well under a second).
        keep[i] = False
        scores = evaluation.evaluate(codes[i:i + 1], codes[keep], labels[i:i + 1], labels[keep], topk=topk)
        keep[i] = True
        for key, value in scores.items():
            totals[key] = totals.get(key, 0.0) + value
    return {key: value / n for key, value in totals.items()}


def retrieval_scorer(topk: int = 100, metric: str | None = None) -> Callable[[Any, Any, Any], float]:
    """A scorer ``scorer(estimator, X, y) -> float`` for ``GridSearchCV(..., scoring=...)``.

    ``estimator.transform(X)`` gives the packed codes (a fitted `Hasher`, or a `Pipeline` ending in one);
    `leave_one_out_scores` scores them; the scorer returns ``metric`` (default ``map_at_{topk}``; any key
    of `bench.evaluation.evaluate`: ``map_all``, ``map_tie_aware``, ``precision_at_{topk}`` ...), where
    higher is better. Methods that need side inputs at encoding time (LAGNH's tags) cannot be scored
    this way, since scikit-learn passes only ``X`` and ``y``.

    Raises:
        ValueError: ``topk`` not a positive int, or a ``metric`` the engine does not compute (at once).
    """
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise ValueError(f"topk must be a positive int, got {topk!r}")
    name = metric or f"map_at_{topk}"
    known = [f"map_at_{topk}", "map_all", "map_tie_aware", f"precision_at_{topk}", "precision_r2", "recall_r2"]
    if name not in known:
        raise ValueError(f"unknown metric {name!r}; the engine computes {', '.join(known)}")

    def scorer(estimator: Any, X: Any, y: Any) -> float:
        if y is None:
            raise ValueError("the retrieval scorer needs y: it says which rows are relevant to which")
        return float(leave_one_out_scores(estimator.transform(X), np.asarray(y), topk=int(topk))[name])

    scorer.__name__ = f"retrieval_scorer_{name}"
    return scorer
