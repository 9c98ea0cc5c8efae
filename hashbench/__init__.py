"""hashbench: a benchmark harness for learning-to-hash image retrieval.

Import names: ``bench`` (the harness: ``python -m bench``), ``hashbench.methods`` (the `Hasher` contract,
the registry, one module per method) and ``hashbench.datasets`` (loaders, protocols and splits, feature
extractors). Nothing else is installed at the top level, so hashbench sits beside Hugging Face
``datasets`` or any other package.

In a source checkout the folders ``methods/`` and ``datasets/`` sit beside this package rather than
inside it (the project's layout); this package then looks for its subpackages there too.
"""
from __future__ import annotations

import os as _os

_here = _os.path.dirname(__file__)
if not _os.path.isdir(_os.path.join(_here, "methods")):  # a checkout, not an installed wheel
    __path__.append(_os.path.dirname(_here))  # type: ignore[name-defined]  # noqa: F821


def run_sweep(methods, *, dataset: str = "fashion-mnist", bits=(16, 32, 64, 128), seeds=(0,), protocol=None,
              features=None, params=None, grid=None, data_root=None, data_options=None, feature_options=None,
              side_options=None, metric=None, force: bool = False, allow_query_overlap: bool = False,
              save_models: bool = True, validation: bool = False, split_seeds=None,
              tracking_uri: str | None = None, threads: int | None = None, executor: str = "local",
              ray_address: str | None = None, quiet: bool = False):
    """Train, evaluate and record a sweep, as ``python -m bench run`` does; returns a
    `bench.runner.SweepResult` whose `.frame()` is a pandas DataFrame with a row per run.

    ``methods``: names (``["lagnh", "itq"]`` or ``"lagnh,itq"``); ``bits``: code lengths (1..1024);
    ``seeds``: integers >= 0 (``bits``, ``seeds`` and ``split_seeds`` also as one integer or ``"16,32"``); ``params``: hyper-parameters per method (``{"lagnh": {"epochs": 20}}``);
    ``grid``: per-method lists, every combination a configuration (``{"itq": {"n_iter": [10, 50]}}``);
    ``save_models``: keep each run's fitted hasher and database codes (``--no-save-models`` is False);
    ``threads``: one thread count for every library (default: the machine's cores), recorded as
    ``env.threads``; ``validation``: fit and score on the protocol's validation split instead of its
    queries and database (``--validation``); ``executor``: ``"local"`` or ``"ray"`` (``--executor``, with
    ``ray_address`` as ``--ray-address``; needs the ``hashbench[ray]`` extra); the other keywords as the
    flags of ``run``. Runs go to ``tracking_uri`` (default
    ``$MLFLOW_TRACKING_URI`` or ``./mlflow.db``); an identical finished run is reused unless ``force``.

    Raises the harness's user errors (``bench.errors.UsageError``, ``hashbench.methods.InputError``,
    ``hashbench.datasets.DataError``) before anything is recorded; ``KeyboardInterrupt`` after closing
    what was open.
    """
    from bench.runner import run_sweep as _run
    from bench.sweep import build_spec, parse_int_list

    def integers(value, what):
        # As on the command line: "16,32" and 16 as well as [16, 32].
        if value is None:
            return None
        if isinstance(value, str):
            return parse_int_list(value, what)
        return (value,) if isinstance(value, int) else tuple(value)

    spec = build_spec(flags={
        "methods": methods, "dataset": dataset, "bits": integers(bits, "bits"), "seeds": integers(seeds, "seeds"),
        "protocol": protocol,
        "features": features, "params": params, "data_root": data_root, "data_options": data_options,
        "feature_options": feature_options, "side_options": side_options, "metric": metric, "force": force,
        "allow_query_overlap": allow_query_overlap, "save_models": save_models, "validation": validation,
        "split_seeds": integers(split_seeds, "split_seeds")},
        file={"grid": grid} if grid else None)
    return _run(spec, tracking_uri=tracking_uri, threads=threads, progress=(lambda message: None) if quiet else None,
                executor=executor, ray_address=ray_address)


def load_runs(experiment: str | None = None, *, tracking_uri: str | None = None, sweep: str | None = None,
              code_versions: str = "latest"):
    """Finished runs as a pandas DataFrame, a row per (method configuration, bits, seed): columns
    ``method`` (the row label of tables), ``method_name``, ``n_bits``, ``seed``, ``experiment``
    (``dataset/protocol``), ``features``, ``run_id``, the identity keys, then every recorded metric
    (``map_at_1000`` ..., ``fit_seconds`` in seconds, ``peak_rss_mb`` in MB). See `bench.report.load_runs`.

    Raises ``bench.errors.UsageError`` for a store that does not exist, an unknown experiment or no runs.
    """
    from bench.report import load_runs as _load
    from bench.tracking import Tracker

    return _load(Tracker(tracking_uri).open(create=False), experiment, sweep, code_versions=code_versions)


def evaluate(query_codes, database_codes, query_labels, database_labels, *, topk: int = 1000):
    """The harness's metrics of packed codes: ``query_codes`` ``(n_q, ceil(bits/8))`` and ``database_codes``
    ``(n_db, ceil(bits/8))`` uint8 (`hashbench.methods.pack_bits`), labels ``(n,)`` class ids or ``(n, C)``
    multi-hot; returns ``{"map_at_{K}", "map_all", "map_tie_aware", "precision_at_{K}", "precision_r2",
    "recall_r2"}`` (floats in [0, 1]) with K = ``min(topk, n_db)``. The one engine every run is scored with
    (`bench.evaluation.evaluate`, which documents the definitions and raises ``ValueError`` on bad shapes)."""
    from bench.evaluation import evaluate as _evaluate

    return _evaluate(query_codes, database_codes, query_labels, database_labels, topk=topk)


def retrieval_scorer(topk: int = 100, metric: str | None = None):
    """A scorer for scikit-learn's ``GridSearchCV(..., scoring=hashbench.retrieval_scorer(topk=100))``: within
    each fold every row queries the fold's other rows, ``y`` (class ids or multi-hot rows) gives relevance
    only, and the score is the engine's ``metric`` (default ``map_at_{topk}``). See `bench.scoring`.

    Raises ``ValueError`` for a ``topk`` that is not a positive int or an unknown ``metric``."""
    from bench.scoring import retrieval_scorer as _scorer

    return _scorer(topk, metric)


def get_method(name: str):
    """The `Hasher` class registered as ``name`` (``get_method("itq")(64, seed=0).fit(X).encode(X)``).

    Raises ``hashbench.methods.UnknownMethodError`` (a KeyError) listing the known names."""
    from hashbench.methods import get_method as _get

    return _get(name)


def list_methods() -> list[str]:
    """Every registered method name, built-in and plug-in (``hashbench.methods`` entry points)."""
    from hashbench.methods import method_names

    return method_names()


def get_dataset(name: str, *, data_root: str | None = None, **options):
    """Load dataset ``name`` (``python -m bench list datasets``) as a `hashbench.datasets.Dataset`: ``labels``
    ``(n,)`` or ``(n, C)``, ``images`` (uint8, or a lazy reader) or pre-extracted ``features`` ``(n, d)``
    float32, its predefined ``splits`` if any. ``data_root`` and ``options`` as ``--data-root`` and
    ``--data-option``.

    Raises ``hashbench.datasets.DataError`` for missing or malformed data or an option the loader does not read."""
    from hashbench.datasets import load_dataset

    return load_dataset(name, data_root=data_root, **options)


__all__ = ["evaluate", "get_dataset", "get_method", "list_methods", "load_runs", "retrieval_scorer", "run_sweep"]
