"""Run a sweep: for each (method, bits, seed) fit, encode, evaluate with the one engine, record.

The harness measures; methods only learn and encode. Whose fault a failure is decides what happens:

* the method's (its ``fit`` or ``encode`` raised, or its codes are malformed): the run is FAILED with
  the method's message, the sweep goes on;
* the harness's (scoring or measuring raised on valid codes): the run is FAILED and marked as a
  hashbench bug, never blamed on the method; the sweep goes on;
* the record's (two of the run's names clean to one MLflow key): the run is FAILED with a message
  naming both, the sweep goes on.

What a run is (identity, keys, MLflow layout) is `bench.record`'s; talking to MLflow is
`bench.tracking`'s; this module only holds the loop.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import traceback
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench import evaluation, models, record, spool
from bench.environment import environment
from bench.threads import check_threads, set_threads
from bench.errors import UsageError
from bench.interrupts import critical, interrupts_deferred, shielded
from bench.measure import peak_rss_mb, reset_peak_rss, timer
from bench.prepare import Prepared, prepare
from bench.sweep import (Plan, PlannedRun, SweepSpec, check_table_metric, side_inputs_needed,  # noqa: F401
                         sweep_file_of, validate)
from bench.tracking import HEARTBEAT_EVERY, STALE_AFTER, SWEEP_RUNS, Claim, Heartbeat, RunBundle, Tracker


@dataclass
class RunResult:
    """The outcome of one (method, bits, seed): ``status`` is FINISHED, FAILED, REUSED (an identical
    finished run was found) or ELSEWHERE (another live sweep holds it); ``metrics`` the recorded metrics
    (of the reused run for REUSED; empty for ELSEWHERE); ``failed_in`` whose fault a failure is;
    ``run_id`` empty for a run that went to the spool."""

    method: str
    n_bits: int
    seed: int
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    run_id: str = ""
    failed_in: str = ""
    label: str = ""  # the configuration's name in tables (the method, or the method and its grid point)
    split_seed: int | None = None  # the seed of the protocol's split this run used


@dataclass
class SweepResult:
    """All runs of a sweep, where they were recorded, the protocol's K, the table's metric, and how many
    results went to the spool (and where) because the store failed."""

    spec: SweepSpec
    results: list[RunResult]
    topk: int
    experiment: str
    parent_run_id: str
    tracking_uri: str
    table_metric: str = ""
    spooled: int = 0
    spool_dir: str = ""

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "FAILED"]

    @property
    def elsewhere(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "ELSEWHERE"]

    def frame(self):
        """The sweep's runs as a pandas DataFrame: a row per (configuration, bits, seed) with ``method`` (the
        configuration's label), ``method_name``, ``n_bits``, ``seed``, ``split_seed``, ``status``, ``run_id`` and every
        recorded metric (empty for runs that failed or run elsewhere)."""
        import pandas as pd

        return pd.DataFrame([{"method": r.label or r.method, "method_name": r.method, "n_bits": r.n_bits,
                              "seed": r.seed, "split_seed": r.split_seed, "status": r.status, "run_id": r.run_id,
                              **r.metrics}
                             for r in self.results])


@dataclass
class Trained:
    """A fitted hasher, its codes and the harness's measurements of fitting and encoding it."""

    hasher: Any
    database_codes: np.ndarray
    query_codes: np.ndarray
    measurements: dict[str, float]


class MethodFailure(Exception):
    """The method raised or returned malformed codes (the run is the method's failure)."""


def _check_codes(codes: Any, n: int, n_bits: int, what: str) -> np.ndarray:
    expected = (n, (n_bits + 7) // 8)
    if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8 or codes.shape != expected:
        got = f"{type(codes).__name__} {getattr(codes, 'dtype', '')} {getattr(codes, 'shape', '')}".strip()
        raise MethodFailure(f"encode returned {got} for the {what}; expected uint8 codes of shape {expected}")
    return codes


def code_health(codes: np.ndarray, n_bits: int) -> dict[str, float]:
    """``distinct_codes`` (how many different codes ``codes`` holds) and ``constant_bits`` (bits with one
    value in every row) of packed uint8 codes ``(n, ceil(n_bits / 8))``: a method that gives many items one
    code, or wastes bits, shows it here, whatever its mAP."""
    if len(codes) == 0:
        return {"distinct_codes": 0.0, "constant_bits": 0.0}
    distinct = len(np.unique(codes, axis=0))
    bits = np.unpackbits(codes, axis=1)[:, :n_bits]
    constant = int(np.count_nonzero(bits.min(axis=0) == bits.max(axis=0)))
    return {"distinct_codes": float(distinct), "constant_bits": float(constant)}


def train_and_encode(cls: type, params: dict[str, Any], prep: Prepared) -> Trained:
    """Fit ``cls(**params)`` on the training split and encode database and queries, timed.

    Everything the method does happens here; an exception from it is the method's failure.
    ``peak_rss_mb`` is recorded when the kernel's peak counter could be reset before fitting, else the
    process's peak since it started as ``process_peak_rss_mb`` (a different, larger quantity).
    """
    hasher = cls(**params)
    scoped = reset_peak_rss()
    with timer() as fit_t:
        hasher.fit(prep.features["train"], **prep.side_for(cls, "train"))
    with timer() as db_t:
        db_codes = hasher.encode(prep.features["database"], **prep.side_for(cls, "database"))
    with timer() as q_t:
        q_codes = hasher.encode(prep.features["query"], **prep.side_for(cls, "query"))
    peak = peak_rss_mb()
    n_bits = int(params["n_bits"])
    db_codes = _check_codes(db_codes, len(prep.labels["database"]), n_bits, "database")
    q_codes = _check_codes(q_codes, len(prep.labels["query"]), n_bits, "queries")
    measurements = {
        "fit_seconds": fit_t(),
        "encode_seconds": db_t() + q_t(),
        "encode_database_seconds": db_t(),
        "encode_query_seconds": q_t(),
        "n_parameters": float(hasher.n_parameters()),
        ("peak_rss_mb" if scoped else "process_peak_rss_mb"): peak,
        **code_health(db_codes, n_bits),
    }
    return Trained(hasher, db_codes, q_codes, measurements)


# Queries whose top-10 lists every run records (positions in the query split, spread over it): the
# retrieval-examples figure shows the same queries for every method of an experiment's split.
N_EXAMPLE_QUERIES = 8
EXAMPLE_TOP = 10


def example_queries(n_query: int) -> np.ndarray:
    """Positions (in the query split) of the queries whose top-10 each run records: evenly spread."""
    return np.unique(np.linspace(0, n_query - 1, min(N_EXAMPLE_QUERIES, n_query)).astype(np.int64))


def _precision_ns(topk: int) -> list[int]:
    """List lengths of the precision@N curve: 1, 5, 10, 20, 50, then ten even steps up to K."""
    return sorted({n for n in (1, 5, 10, 20, 50) if n < topk} | {max(1, topk * i // 10) for i in range(1, 11)})


def _relevant(query_label: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    if db_labels.ndim == 1:
        return db_labels == query_label
    return (np.asarray(db_labels) & np.asarray(query_label)[None, :]).any(axis=1)


def score(trained: Trained, prep: Prepared) -> tuple[dict[str, float], dict[str, str]]:
    """The engine's metrics of the codes (``map_at_K`` ... at the protocol's K) and the run's text
    artifacts: ``pr_curve.csv`` (precision and recall by Hamming radius), ``precision_at_n.csv``,
    ``query_ap.csv`` (AP@K of every query, keyed by the query's item id in the dataset) and
    ``retrieval_top10.csv`` (the top-10 database item ids of `example_queries`, with their relevance).
    An exception here is the harness's fault."""
    import pandas as pd

    q, db = trained.query_codes, trained.database_codes
    y_q, y_db = prep.labels["query"], prep.labels["database"]
    topk = prep.protocol.topk
    metrics = evaluation.evaluate(q, db, y_q, y_db, topk=topk)
    curve = evaluation.pr_curve_by_radius(q, db, y_q, y_db, n_bits=trained.hasher.n_bits)
    at_n = evaluation.precision_at_n(q, db, y_q, y_db, ns=_precision_ns(topk))
    ap = evaluation.average_precision_at_k(q, db, y_q, y_db, topk=topk)
    chosen = example_queries(len(q))
    top = evaluation.top_k(q[chosen], db, k=EXAMPLE_TOP)
    rows = [{"query_id": int(prep.split.query[i]), "rank": r + 1, "database_id": int(prep.split.database[j]),
             "relevant": int(_relevant(y_q[i], y_db[[j]])[0])}
            for i, ranked in zip(chosen, top) for r, j in enumerate(ranked)]
    texts = {
        "pr_curve.csv": pd.DataFrame({k: np.asarray(v) for k, v in curve.items()}).to_csv(index=False),
        "precision_at_n.csv": pd.DataFrame({k: np.asarray(v) for k, v in at_n.items()}).to_csv(index=False),
        "query_ap.csv": pd.DataFrame({"query_id": np.asarray(prep.split.query, dtype=np.int64),
                                      f"ap_at_{topk}": ap}).to_csv(index=False, float_format="%.10g"),
        "retrieval_top10.csv": pd.DataFrame(rows, columns=["query_id", "rank", "database_id", "relevant"]
                                            ).to_csv(index=False),
    }
    return metrics, texts


def run_one(cls: type, params: dict[str, Any], prep: Prepared) -> tuple[dict[str, float], dict[str, list[float]], str]:
    """Fit, encode and score one method outside any record: (metrics, training history, PR-curve CSV).

    For the accuracy guard and studies; sweeps use `train_and_encode` and `score` separately so that a
    failure is attributed to the right party.
    """
    trained = train_and_encode(cls, params, prep)
    metrics, texts = score(trained, prep)
    return {**metrics, **trained.measurements}, trained.hasher.training_history(), texts["pr_curve.csv"]


# ---------------------------------------------------------------------------------------------- sweep
SWEEP_FILE = "sweep.yaml"  # artifact of each sweep: `python -m bench run --config sweep.yaml` replays it


def sweep_yaml(spec: SweepSpec) -> str:
    """The sweep file that replays ``spec`` (`bench.sweep.sweep_file_of`), as YAML."""
    import yaml

    return yaml.safe_dump(record.plain(sweep_file_of(spec)), sort_keys=False)


def _configuration_layout(planned: PlannedRun, prep: Prepared, identity: record.RunIdentity,
                          env: dict[str, Any]) -> record.Layout:
    """What is known before training: method, hyper-parameters as given, data, features, the side
    inputs this method reads, environment, code."""
    layout = record.Layout()
    layout.add_param("", "method", planned.method)
    layout.add_params("hp", planned.params)
    layout.add_params("data", {**prep.data, "fingerprint": identity.data})
    layout.add_params("features", prep.features_info)
    for name in planned.cls.side_inputs:
        layout.add_params(f"side.{name}", prep.side_info[name])
    layout.add_params("env", env)
    layout.add_param("code", "fingerprint", identity.code)
    return layout


def _run_config(planned: PlannedRun, prep: Prepared, identity: record.RunIdentity, env: dict[str, Any],
                code_modules: dict[str, str], layout: record.Layout,
                fitted: tuple[dict[str, Any], dict[str, Any]] | None = None) -> str:
    """``run_config.json``: every recorded value under its original name, and the keys it was given."""
    out = {
        "method": planned.method, "params": planned.params,
        "identity": {"run_key": identity.run_key, "config_key": identity.config_key,
                     "setting_key": identity.setting_key, "data": identity.data, "code": identity.code},
        "code_modules": code_modules, "data": prep.data, "features": prep.features_info,
        "side": {n: prep.side_info[n] for n in planned.cls.side_inputs}, "env": env,
        "mlflow_names": layout.originals,
    }
    if fitted is not None:  # what fitting resolved, and the method's facts about itself
        out["resolved"], out["info"] = fitted
    return json.dumps(record.plain(out), indent=2, sort_keys=True)


class _SweepRecord:
    """The sweep's side of the record. Every call to the store is a `critical` section (an interrupt
    waits for it to end) and registers what it opens before the section ends, so the clean-up after an
    interrupt knows every open run. When the store fails, the sweep goes on and keeps its results in
    the spool (`bench.spool`)."""

    def __init__(self, tracker: Tracker, heartbeat: Heartbeat, say: Callable[[str], None]):
        self.tracker, self.heartbeat, self.say = tracker, heartbeat, say
        self.online = True
        self.open: list[str] = []
        self.done: dict[str, set[str]] = {}
        self.spooled = 0

    def _went_offline(self, exc: BaseException) -> None:
        if self.online:
            self.online = False
            self.say(f"the tracking store {self.tracker.uri} failed ({type(exc).__name__}: "
                     f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}); "
                     f"results from now on go to the spool {spool.spool_dir(self.tracker.uri)}")

    def _opened(self, run_id: str) -> None:
        self.open.append(run_id)
        self.done[run_id] = set()
        self.heartbeat.add(run_id)

    def _closed(self, run_id: str) -> None:
        if run_id in self.open:
            self.open.remove(run_id)
        self.heartbeat.discard(run_id)

    def start_sweep(self, exp_id: str, name: str, layout: record.Layout, spec: SweepSpec) -> str | None:
        try:
            with critical():
                run_id = self.tracker.start_run(exp_id, name, tags={
                    record.TAG_KIND: "sweep", record.TAG_LAYOUT: record.LAYOUT_VERSION,
                    record.TAG_HEARTBEAT: f"{time.time():.3f}",
                    record.TAG_HEARTBEAT_EVERY: f"{self.heartbeat.interval:g}"})
                self._opened(run_id)
            bundle = RunBundle(experiment="", name=name, texts={SWEEP_FILE: sweep_yaml(spec)})
            bundle.add_layout(layout)
            with critical():
                self.tracker.write(run_id, bundle, done=self.done[run_id])
            return run_id
        except Exception as exc:  # noqa: BLE001 -- the store failed: go on with the spool
            self._went_offline(exc)
            return self.open[0] if self.open else None

    def claim(self, exp_id: str, identity: record.RunIdentity, name: str, parent_id: str | None,
              reuse: bool, stale_after: float) -> Claim:
        created: list[str] = []
        if self.online:
            try:
                with critical():
                    claim = self.tracker.claim(exp_id, identity.run_key, name=name, tags=identity.tags(),
                                               parent_id=parent_id, reuse=reuse, stale_after=stale_after,
                                               heartbeat_every=self.heartbeat.interval, opened=created)
                    if claim.outcome == "mine":
                        self._opened(claim.run_id)
                return claim
            except Exception as exc:  # noqa: BLE001
                self._went_offline(exc)
        if created:  # the store failed after our claim was made: its id goes with the spooled result
            self._opened(created[-1])
            return Claim("mine", run_id=created[-1])
        return Claim("mine", run_id="")  # unclaimed: trained anyway, its result goes to the spool

    def write(self, run_id: str, bundle: RunBundle) -> None:
        """Write ``bundle`` into run ``run_id`` (closing it unless RUNNING), or spool it."""
        if self.online and run_id:
            try:
                with critical():
                    self.tracker.write(run_id, bundle, done=self.done[run_id])
                    if bundle.status != "RUNNING":
                        self._closed(run_id)
                return
            except Exception as exc:  # noqa: BLE001
                self._went_offline(exc)
        if bundle.status == "RUNNING":
            return  # the configuration is part of the final bundle, spooled with it
        with critical():
            spool.save_run(self.tracker.uri, bundle, claim_id=run_id or None)
            self.spooled += 1
            if run_id:
                self._closed(run_id)  # the sync closes this claim when it uploads the result

    def close(self, run_id: str | None, status: str, metrics: dict[str, float] | None = None,
              texts: dict[str, str] | None = None) -> None:
        if not run_id:
            return
        if self.online:
            try:
                with critical():
                    self.tracker.write(run_id, RunBundle(experiment="", name="", metrics=dict(metrics or {}),
                                                         texts=dict(texts or {}), status=status),
                                       done=self.done.get(run_id))
                    self._closed(run_id)
                return
            except Exception as exc:  # noqa: BLE001
                self._went_offline(exc)
        with critical():
            spool.save_close(self.tracker.uri, run_id, status, metrics, texts)
            self._closed(run_id)

    def close_all(self, status: str) -> None:
        """After an interrupt: close every open run (the current claim, then the sweep)."""
        for run_id in reversed(list(self.open)):
            try:
                self.close(run_id, status)
            except Exception:  # noqa: BLE001 -- closing is best effort; the interrupt is re-raised anyway
                pass


def _made_by(features_info: dict[str, Any]) -> str:
    """", made by onnxruntime" when a frozen network made the features (which runtime ran it)."""
    runtime = features_info.get("runtime")
    return f", made by {runtime}" if runtime else ""


EXECUTORS = ("local", "ray")


def run_sweep(spec: SweepSpec, *, tracking_uri: str | None = None,
              progress: Callable[[str], None] | None = None, stale_after: float = STALE_AFTER,
              threads: int | None = None, executor: str = "local", ray_address: str | None = None) -> SweepResult:
    """Validate ``spec``, open the store, prepare the data once, then claim, train, evaluate and record
    every (method, bits, seed).

    A finished run with the same identity is reused unless ``spec.force``; a configuration that another
    live sweep has claimed is skipped (status ELSEWHERE); a claim without a heartbeat for
    ``stale_after`` seconds is closed as KILLED and taken over. ``threads`` (None: the machine's cores) is
    applied to every library that computes (`bench.threads`) before anything runs, and recorded as
    ``env.threads``. When the store fails mid-sweep, the
    remaining results go to the spool (`SweepResult.spooled`).

    ``executor`` says where runs are computed: ``"local"`` (this process, one run after the other) or
    ``"ray"`` (Ray tasks of ``threads`` CPUs each, on the cluster at ``ray_address``, else on a Ray instance
    started for this sweep: `bench.ray_executor`). Either way this process claims and records every run,
    and every run computes the same numbers (`compute_run`).

    Raises the user errors of `validate`, `Tracker.open`, `prepare` and `bench.ray_executor.RayExecutor`
    (Ray not installed, a cluster that cannot be joined) before anything is recorded;
    ``KeyboardInterrupt`` (Ctrl-C, SIGTERM) after closing the open run and the sweep as KILLED.
    """
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    with interrupts_deferred():  # from the start: an interrupt lost in a finaliser is delivered again
        return _run_sweep(spec, tracking_uri, say, stale_after, threads, executor, ray_address)


def _run_sweep(spec: SweepSpec, tracking_uri: str | None, say: Callable[[str], None],
               stale_after: float, threads: int | None, executor: str = "local",
               ray_address: str | None = None) -> SweepResult:
    if not stale_after > 0:
        raise UsageError(f"the staleness limit must be > 0 seconds, got {stale_after!r}")
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    if ray_address is not None and executor != "ray":
        raise UsageError("--ray-address is read by --executor ray only")
    threads = check_threads(threads)
    plan = validate(spec)
    tracker = Tracker(tracking_uri).check()  # reachable and writable, nothing created yet
    pool = None
    if executor == "ray":
        from bench.ray_executor import RayExecutor
        from bench.threads import available_cores

        pool = RayExecutor(ray_address, threads, cpus=available_cores(), say=say)
    try:
        return _sweep(spec, plan, tracker, say, stale_after, threads, pool)
    finally:
        if pool is not None:
            pool.shutdown()


def _sweep(spec: SweepSpec, plan: Plan, tracker: Tracker, say: Callable[[str], None], stale_after: float,
           threads: int, pool: Any) -> SweepResult:
    """The sweep after its checks: prepare the data, then claim, compute (here, or on ``pool``, a
    `bench.ray_executor.RayExecutor`) and record every run."""
    set_threads(threads)
    say(f"loading {spec.dataset} and computing features ({threads} thread{'s' if threads > 1 else ''}) ...")
    preps = []
    for split_seed in spec.split_seeds or (None,):
        with timer() as prep_t:
            prep = prepare(spec.dataset, protocol=spec.protocol, features=spec.features, data_root=spec.data_root,
                           side_inputs=plan.side_inputs, fit_only_side=plan.fit_only_side_inputs,
                           allow_pickle=spec.allow_pickle, data_options=spec.data_options,
                           side_options=spec.side_options, feature_options=spec.feature_options,
                           allow_query_overlap=spec.allow_query_overlap, split_seed=split_seed,
                           validation=spec.validation)
        sizes = prep.sizes()
        say(f"{spec.dataset}/{prep.protocol.name} (split seed {prep.protocol.seed}): {sizes['n_query']} queries, "
            f"{sizes['n_database']} database, {sizes['n_train']} training items, features "
            f"{prep.features_info.get('name')} ({prep.features['train'].shape[1]}-d{_made_by(prep.features_info)}), "
            f"ready in {prep_t():.1f} s")
        overlap = {k: v for k, v in prep.split.overlap.items() if v}
        if overlap:
            say(f"warning: query overlap {overlap} (recorded as data.overlap.*)")
        preps.append(prep)
    prep = preps[0]

    with critical():  # creating a store runs MLflow's schema migrations: an interrupt waits for their end
        tracker.open()  # the data are good: a new store is created now
    env = {**environment(), "threads": str(threads), **({"executor": "ray"} if pool is not None else {})}
    experiment = f"{spec.dataset}/{prep.protocol.name}"
    topk = prep.protocol.topk
    if plan.table_metric is None:  # a validation sweep: K is the validation split's
        plan = dataclasses.replace(plan, table_metric=check_table_metric(spec.table_metric, prep.protocol))
    code = {name: record.code_fingerprint(cls.__module__) for name, cls in plan.classes.items()}
    sweep_layout = record.Layout()
    sweep_layout.add_params("sweep", {"methods": ",".join(spec.methods), "bits": ",".join(map(str, spec.bits)),
                                      "seeds": ",".join(map(str, spec.seeds)), "digest": spec.digest(),
                                      "split_seeds": ",".join(str(p.protocol.seed) for p in preps)})
    sweep_layout.add_params("data", prep.data)
    sweep_layout.add_params("features", prep.features_info)
    sweep_layout.add_params("env", env)

    slots: dict[int, RunResult] = {}  # by position in the sweep: the table's order whatever finished first
    with Heartbeat(tracker, min(HEARTBEAT_EVERY, stale_after / 3)) as beat, \
            tempfile.TemporaryDirectory(prefix="hashbench-sweep-") as scratch_root:
        rec = _SweepRecord(tracker, beat, say)

        def finished(number: int, tag: str, prep: Prepared, planned: PlannedRun, result: RunResult) -> None:
            result.label, result.split_seed = planned.label, prep.protocol.seed
            slots[number] = result
            if result.status == "FAILED":
                say(f"{tag}: FAILED{' (harness error)' if result.failed_in == 'harness' else ''}: "
                    f"{result.error}")
            else:
                m = result.metrics
                say(f"{tag}: fit {m['fit_seconds']:.2f} s, encode {m['encode_seconds']:.2f} s, "
                    f"mAP@{topk} {m[f'map_at_{topk}']:.4f}")
                if m.get("distinct_codes") == 1 and len(prep.labels["database"]) > 1:
                    say(f"{tag}: warning: every database item got the same code (the method collapsed)")

        def collect() -> None:
            """Record the runs whose Ray tasks came back (see `bench.ray_executor`)."""
            for done in pool.done():
                number, tag, prep, planned, identity, run_id, bundle, layout, folder = done.token
                computed = done.computed
                if computed is None:
                    computed = Computed(failed_in="harness", error=done.lost, traceback=done.lost)
                elif done.node:
                    layout.add_param("env", "ray_node", done.node)  # where it was computed; not identity
                result = _finish_recorded(rec, run_id, bundle, layout, planned, prep, identity, env,
                                          code[planned.method][1], computed)
                shutil.rmtree(folder, ignore_errors=True)
                finished(number, tag, prep, planned, result)

        try:
            with critical():
                exp_id = tracker.experiment_id(experiment)
                reaped = tracker.reap_stale(exp_id, stale_after)
            if reaped:
                say(f"closed {reaped} run(s) left RUNNING by a sweep that died (no heartbeat for "
                    f"{stale_after:g} s) as KILLED")
            parent_id = rec.start_sweep(exp_id, f"sweep-{spec.digest()[:8]}", sweep_layout, spec)
            todo = [(prep, planned) for prep in preps for planned in plan.runs]
            # Ray: a run is claimed when its task is submitted, and only as many are in flight as the cluster
            # runs at once plus one (so a worker never waits while the driver records)
            window = pool.slots + 1 if pool is not None else 0
            for number, (prep, planned) in enumerate(todo, 1):
                split = f" split seed {prep.protocol.seed}" if spec.split_seeds else ""
                tag = f"[{number}/{len(todo)}] {planned.label} {planned.n_bits} bits seed {planned.seed}{split}"
                identity = record.RunIdentity(planned.method, planned.identity_params, prep.fingerprint(planned.cls),
                                              code[planned.method][0], prep.data_setting(planned.cls),
                                              split="validation" if spec.validation else "protocol")
                name = f"{planned.method}-{planned.n_bits}b-s{planned.seed}"
                claim = rec.claim(exp_id, identity, name, parent_id, not spec.force, stale_after)
                if claim.outcome != "mine":
                    status = "REUSED" if claim.outcome == "reuse" else "ELSEWHERE"
                    slots[number] = RunResult(planned.method, planned.n_bits, planned.seed, status,
                                              dict(claim.run.data.metrics), run_id=claim.run.info.run_id,
                                              label=planned.label, split_seed=prep.protocol.seed)
                    say(f"{tag}: identical finished run {claim.run.info.run_id[:8]} reused (--force to redo)"
                        if status == "REUSED" else
                        f"{tag}: running elsewhere (run {claim.run.info.run_id[:8]} of another sweep); skipped")
                    continue
                if pool is None:
                    result = _run_one_recorded(rec, claim.run_id, experiment, parent_id, planned, prep, identity,
                                               env, code[planned.method][1], spec.save_models)
                    finished(number, tag, prep, planned, result)
                    continue
                bundle, layout = _start_recorded(rec, claim.run_id, experiment, parent_id, planned, prep, identity,
                                                 env, code[planned.method][1])
                folder = Path(tempfile.mkdtemp(prefix=f"run{number}-", dir=scratch_root))
                pool.submit((number, tag, prep, planned, identity, claim.run_id, bundle, layout, folder),
                            prep, planned, spec.save_models, folder)
                while len(pool) >= window:
                    collect()
            while pool is not None and len(pool):
                collect()
            results = [slots[n] for n in sorted(slots)]
            counts = {f"runs_{s.lower()}": float(sum(r.status == s for r in results))
                      for s in ("FINISHED", "FAILED", "REUSED", "ELSEWHERE")}
            counts["runs_total"] = float(len(plan.runs) * len(preps))
            # the runs this sweep's table shows, reused ones included (`bench report --sweep` reads it)
            used = json.dumps({"runs": [r.run_id for r in results if r.run_id and r.status != "ELSEWHERE"]})
            rec.close(parent_id, "FAILED" if counts["runs_failed"] else "FINISHED", counts, {SWEEP_RUNS: used})
        except BaseException:
            # Ctrl-C, SIGTERM or a bug of the harness: nothing stays RUNNING.
            with shielded():
                rec.close_all("KILLED")
            raise
    return SweepResult(spec, results, topk, experiment, parent_id or "", tracker.uri, plan.table_metric,
                       spooled=rec.spooled, spool_dir=str(spool.spool_dir(tracker.uri)) if rec.spooled else "")


@dataclass
class Computed:
    """What computing one run yields, in whichever process computed it (`compute_run`): the metrics
    (the engine's and the harness's measurements), the text artifacts, the training history, what the
    method resolved and reports about itself, and (with ``save_models``) the saved model and codes
    (``files``: artifact path -> local folder; ``save_seconds``). A failure has ``failed_in`` ("method" or
    "harness"), its one-line ``error`` and the ``traceback``, and nothing else."""

    metrics: dict[str, float] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    save_seconds: float | None = None
    failed_in: str = ""
    error: str = ""
    traceback: str = ""


def compute_run(planned: PlannedRun, prep: Prepared, folder: Path, save_models: bool = True) -> Computed:
    """Train, encode and score one (method, bits, seed), and (with ``save_models``) save its fitted hasher
    and database codes under ``folder`` (`keep_model_and_codes`): everything a run computes, nothing it
    records. The same function on every executor (locally, or inside a Ray task), so that the same seeds and
    threads give the same numbers. A failure is returned, attributed (the method's: fit, encode, malformed
    codes, a hasher that cannot be saved; the harness's: scoring valid codes), never raised;
    ``KeyboardInterrupt`` and ``SystemExit`` pass through."""
    def failed(failed_in: str, message: str) -> Computed:
        return Computed(failed_in=failed_in, error=message, traceback=traceback.format_exc())

    try:
        trained = train_and_encode(planned.cls, planned.params, prep)
        history = trained.hasher.training_history()
        resolved, info = trained.hasher.resolved_params(), trained.hasher.run_info()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 -- a method's failure must not end the sweep
        return failed("method", f"{type(exc).__name__}: {exc}")
    try:
        metrics, texts = score(trained, prep)
        metrics.update(trained.measurements)
    except Exception as exc:  # noqa: BLE001
        return failed("harness", f"harness error while scoring {planned.method}'s codes (a hashbench bug, "
                                 f"not the method's): {type(exc).__name__}: {exc}")
    out = Computed(metrics, texts, history, dict(resolved), dict(info))
    if save_models:
        try:
            with timer() as save_t:
                out.files = keep_model_and_codes(trained, prep, folder)
        except Exception as exc:  # noqa: BLE001 -- a hasher that cannot be saved breaks the contract
            return failed("method", f"cannot save the fitted {planned.method}: {type(exc).__name__}: {exc}")
        out.save_seconds = save_t()
    return out


def _start_recorded(rec: _SweepRecord, run_id: str, experiment: str, parent_id: str | None, planned: PlannedRun,
                    prep: Prepared, identity: record.RunIdentity, env: dict[str, Any],
                    code_modules: dict[str, str]) -> tuple[RunBundle, record.Layout]:
    """Record the configuration of a claimed run (visible while it trains); returns its bundle and layout."""
    layout = _configuration_layout(planned, prep, identity, env)
    bundle = RunBundle(experiment=experiment, name=f"{planned.method}-{planned.n_bits}b-s{planned.seed}",
                       tags=identity.tags(), parent_id=parent_id)
    bundle.add_layout(layout)
    bundle.texts["run_config.json"] = _run_config(planned, prep, identity, env, code_modules, layout)
    rec.write(run_id, bundle)
    return bundle, layout


def _finish_recorded(rec: _SweepRecord, run_id: str, bundle: RunBundle, layout: record.Layout,
                     planned: PlannedRun, prep: Prepared, identity: record.RunIdentity, env: dict[str, Any],
                     code_modules: dict[str, str], computed: Computed) -> RunResult:
    """Record what `compute_run` returned into the claimed run: one FINISHED or FAILED run."""
    def failed(failed_in: str, message: str, trace: str) -> RunResult:
        bundle.tags.update({record.TAG_ERROR: message[:5000], record.TAG_FAILED_IN: failed_in})
        bundle.texts["error.txt"] = trace
        bundle.status = "FAILED"
        bundle.files = {}
        rec.write(run_id, bundle)
        return RunResult(planned.method, planned.n_bits, planned.seed, "FAILED", error=message, run_id=run_id,
                         failed_in=failed_in)

    if computed.failed_in:
        return failed(computed.failed_in, computed.error, computed.traceback)
    try:
        layout.add_params("resolved", computed.resolved)
        layout.add_facts("info", computed.info)
        for key, value in computed.metrics.items():
            layout.add_metric("", key, value)
        history_keys = layout.history_keys(computed.history)
    except record.RecordError as exc:
        return failed("record", f"cannot record {planned.method}'s values: {exc}", traceback.format_exc())
    if computed.save_seconds is not None:
        layout.add_metric("", "save_seconds", computed.save_seconds)
    bundle.files = dict(computed.files)
    bundle.add_layout(layout)
    bundle.history = {history_keys[name]: [float(v) for v in values] for name, values in computed.history.items()}
    bundle.texts.update(computed.texts)
    bundle.texts["run_config.json"] = _run_config(planned, prep, identity, env, code_modules, layout,
                                                  (computed.resolved, computed.info))
    if run_id:
        rec.done[run_id].discard("a:run_config.json")  # rewritten with what fitting resolved
    bundle.status = "FINISHED"
    rec.write(run_id, bundle)  # logs the files, or copies them into the spool, before they go
    return RunResult(planned.method, planned.n_bits, planned.seed, "FINISHED", dict(layout.metrics), run_id=run_id)


def _run_one_recorded(rec: _SweepRecord, run_id: str, experiment: str, parent_id: str | None,
                      planned: PlannedRun, prep: Prepared, identity: record.RunIdentity, env: dict[str, Any],
                      code_modules: dict[str, str], save_models: bool = True) -> RunResult:
    """Record the configuration, train, score, record the results (and, with ``save_models``, the fitted
    hasher and the database codes: `keep_model_and_codes`): one FINISHED or FAILED run."""
    bundle, layout = _start_recorded(rec, run_id, experiment, parent_id, planned, prep, identity, env, code_modules)
    with tempfile.TemporaryDirectory(prefix="hashbench-run-") as scratch:
        computed = compute_run(planned, prep, Path(scratch), save_models)
        return _finish_recorded(rec, run_id, bundle, layout, planned, prep, identity, env, code_modules, computed)


def keep_model_and_codes(trained: Trained, prep: Prepared, folder: Path) -> dict[str, str]:
    """Save the fitted hasher as a pyfunc model and the database codes as a faiss binary index with the
    database ids (`bench.models`) under ``folder``; returns the bundle's ``files`` (artifact path ->
    local folder)."""
    model = models.save_model(trained.hasher, folder)
    index = models.save_index(trained.database_codes, prep.split.database, trained.hasher.n_bits, folder)
    return {models.MODEL_DIR: str(model), models.INDEX_DIR: str(index)}
