"""Run a sweep: for each (method, bits, seed) fit, encode, evaluate with the one engine, record.

The harness measures; methods only learn and encode. A method that fails is recorded as a FAILED
run with its message and the sweep goes on.
"""
from __future__ import annotations

import hashlib
import json
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bench import evaluation
from bench.environment import git_commit, package_versions
from bench.errors import UsageError
from bench.measure import peak_rss_mb, reset_peak_rss, timer
from bench.prepare import Prepared, prepare
from bench.sweep import SweepSpec
from bench.tracking import CONFIG_KEY_TAG, ERROR_TAG, KIND_TAG, RUN_KEY_TAG, Tracker
from datasets import get_protocol
from datasets.registry import get_loader
from methods import get_method

# Parameters the harness logs itself; a method hyper-parameter of the same name gets a prefix.
HARNESS_KEYS = {"method", "n_bits", "seed", "dataset", "protocol", "features"}


@dataclass
class RunResult:
    method: str
    n_bits: int
    seed: int
    status: str                                   # FINISHED, FAILED or SKIPPED (reused)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    run_id: str = ""


@dataclass
class SweepResult:
    spec: SweepSpec
    results: list[RunResult]
    topk: int
    experiment: str
    parent_run_id: str
    tracking_uri: str

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "FAILED"]


def side_inputs_needed(classes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every side input the methods need, those only their ``fit`` needs), each once, in order."""
    side = tuple(dict.fromkeys(s for c in classes for s in c.side_inputs))
    fit_only = tuple(dict.fromkeys(s for c in classes for s in c.fit_only_side_inputs))
    return side, fit_only


def _run_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _side_for(prep: Prepared, cls, split: str) -> dict[str, np.ndarray]:
    names = cls.side_inputs if split == "train" else tuple(n for n in cls.side_inputs
                                                          if n not in cls.fit_only_side_inputs)
    return {n: prep.side[n][split] for n in names}


def _pr_curve_csv(curve: Any) -> str:
    import pandas as pd

    if hasattr(curve, "_asdict"):
        curve = curve._asdict()
    elif hasattr(curve, "__dataclass_fields__"):
        curve = {k: getattr(curve, k) for k in curve.__dataclass_fields__}
    return pd.DataFrame({k: np.asarray(v) for k, v in curve.items()}).to_csv(index=False)


def run_one(cls, params: dict[str, Any], prep: Prepared) -> tuple[dict[str, float], dict[str, list[float]], str]:
    """Fit and encode one method; return (metrics, training history, PR-curve CSV)."""
    hasher = cls(**params)
    reset_peak_rss()
    with timer() as fit_t:
        hasher.fit(prep.features["train"], **_side_for(prep, cls, "train"))
    with timer() as db_t:
        db_codes = hasher.encode(prep.features["database"], **_side_for(prep, cls, "database"))
    with timer() as q_t:
        q_codes = hasher.encode(prep.features["query"], **_side_for(prep, cls, "query"))
    peak = peak_rss_mb()
    topk = prep.protocol.topk
    metrics = evaluation.evaluate(q_codes, db_codes, prep.labels["query"], prep.labels["database"], topk=topk)
    metrics.update({
        "fit_seconds": fit_t(),
        "encode_seconds": db_t() + q_t(),
        "encode_database_seconds": db_t(),
        "encode_query_seconds": q_t(),
        "n_parameters": float(hasher.n_parameters()),
        "peak_rss_mb": peak,
    })
    for key, value in hasher.run_info().items():
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            metrics[key] = float(value)
    curve = evaluation.pr_curve_by_radius(q_codes, db_codes, prep.labels["query"], prep.labels["database"],
                                          n_bits=hasher.n_bits)
    return metrics, hasher.training_history(), _pr_curve_csv(curve)


def run_sweep(spec: SweepSpec, *, tracking_uri: str | None = None,
              progress: Callable[[str], None] | None = None) -> SweepResult:
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    classes = {name: get_method(name) for name in spec.methods}      # unknown names fail before any work
    for name, cls in classes.items():                                # so do bad --param names
        try:
            cls(n_bits=spec.bits[0], seed=spec.seeds[0], **spec.overrides.get(name, {})).get_params()
        except TypeError as exc:
            raise UsageError(f"bad --param for {name}: {exc}") from None
    side_names, fit_only = side_inputs_needed(classes.values())
    get_loader(spec.dataset)                                         # and unknown datasets or protocols
    get_protocol(spec.dataset, spec.protocol)
    say(f"loading {spec.dataset} and computing features ...")
    with timer() as prep_t:
        prep = prepare(spec.dataset, protocol=spec.protocol, features=spec.features, data_root=spec.data_root,
                       side_inputs=side_names, fit_only_side=fit_only, allow_pickle=spec.allow_pickle,
                       data_options=spec.data_options, side_options=spec.side_options,
                       feature_options=spec.feature_options)
    sizes = prep.split.sizes()
    say(f"{spec.dataset}/{prep.protocol.name}: {sizes['n_query']} queries, {sizes['n_database']} database, "
        f"{sizes['n_train']} training items, features {prep.info.get('features')} "
        f"({prep.features['train'].shape[1]}-d), ready in {prep_t():.1f} s")

    tracker = Tracker(tracking_uri)
    experiment = f"{spec.dataset}/{prep.protocol.name}"
    exp_id = tracker.experiment_id(experiment)
    common = {
        "dataset": spec.dataset,
        "protocol": prep.protocol.name,
        "protocol_digest": prep.protocol.digest(),
        "protocol_spec": prep.protocol.as_dict(),
        "split_digest": prep.split.digest(),
        "topk": prep.protocol.topk,
        **sizes,
        **prep.info,
    }

    def own_common(cls: type) -> dict[str, Any]:
        """The sweep's facts minus those of side inputs this method does not read: a run of ITQ is the
        same run whether or not DeepBit's views were computed beside it."""
        unused = [f"{s}_" for s in side_names if s not in cls.side_inputs]
        return {k: v for k, v in common.items() if not k.startswith(tuple(unused))} if unused else common

    def key_of(facts: dict[str, Any]) -> dict[str, Any]:
        # Where files sit on this machine does not change a result: leave paths out of the identity of a run.
        return {k: v for k, v in facts.items() if k != "data_source" and not k.endswith("_cache")}
    env = {f"version_{k}": v for k, v in package_versions().items()} | {"git_commit": git_commit()}
    parent_id = tracker.start_run(
        exp_id, f"sweep-{spec.digest()[:8]}",
        params={"methods": ",".join(spec.methods), "bits": ",".join(map(str, spec.bits)),
                "seeds": ",".join(map(str, spec.seeds)), **common, **env},
        tags={KIND_TAG: "sweep"},
    )
    tracker.log_text(parent_id, "sweep.json", json.dumps(spec.as_dict(), indent=2, sort_keys=True, default=str))

    results: list[RunResult] = []
    total = len(spec.methods) * len(spec.bits) * len(spec.seeds)
    done = 0
    for name in spec.methods:
        cls = classes[name]
        method_common = own_common(cls)
        key_common = key_of(method_common)
        for bits in spec.bits:
            for seed in spec.seeds:
                done += 1
                tag = f"[{done}/{total}] {name} {bits} bits seed {seed}"
                params = cls(n_bits=bits, seed=seed, **spec.overrides.get(name, {})).get_params()
                run_params = {f"hp_{k}" if k in HARNESS_KEYS - {"n_bits", "seed"} else k: v
                              for k, v in params.items()}
                identity = {"method": name, "params": params, "common": key_common,
                            "hashbench": package_versions()["hashbench"]}
                key = _run_key(identity)
                config_params = {k: v for k, v in params.items() if k not in ("seed", "n_bits")}
                config_key = _run_key({**identity, "params": config_params})
                if not spec.force:
                    previous = tracker.find_finished(exp_id, key)
                    if previous is not None:
                        results.append(RunResult(name, bits, seed, "SKIPPED", dict(previous.data.metrics),
                                                 run_id=previous.info.run_id))
                        say(f"{tag}: identical finished run {previous.info.run_id[:8]} reused (--force to redo)")
                        continue
                run_id = tracker.start_run(
                    exp_id, f"{name}-{bits}b-s{seed}", parent_id=parent_id,
                    params={"method": name, **run_params, **method_common, **env},
                    tags={RUN_KEY_TAG: key, CONFIG_KEY_TAG: config_key, KIND_TAG: "run", "method": name},
                )
                tracker.log_text(run_id, "run_config.json", json.dumps(
                    {"method": name, "params": params, **method_common, **env}, indent=2, sort_keys=True,
                    default=str))
                try:
                    metrics, history, curve_csv = run_one(cls, params, prep)
                except KeyboardInterrupt:  # the user stopped the sweep: close its records as KILLED
                    tracker.finish(run_id, "KILLED")
                    tracker.finish(parent_id, "KILLED")
                    raise
                except Exception as exc:  # a method's failure must not end the sweep
                    message = f"{type(exc).__name__}: {exc}"
                    tracker.set_tag(run_id, ERROR_TAG, message)
                    tracker.log_text(run_id, "error.txt", traceback.format_exc())
                    tracker.finish(run_id, "FAILED")
                    results.append(RunResult(name, bits, seed, "FAILED", error=message, run_id=run_id))
                    say(f"{tag}: FAILED: {message}")
                    continue
                tracker.log_metrics(run_id, metrics)
                if history:
                    tracker.log_history(run_id, history)
                tracker.log_text(run_id, "pr_curve.csv", curve_csv)
                tracker.finish(run_id, "FINISHED")
                results.append(RunResult(name, bits, seed, "FINISHED", metrics, run_id=run_id))
                say(f"{tag}: fit {metrics['fit_seconds']:.2f} s, encode {metrics['encode_seconds']:.2f} s, "
                    f"mAP@{prep.protocol.topk} {metrics[f'map_at_{prep.protocol.topk}']:.4f}")
    n_failed = sum(r.status == "FAILED" for r in results)
    tracker.log_metrics(parent_id, {"runs_failed": n_failed, "runs_total": total})
    tracker.finish(parent_id, "FAILED" if n_failed else "FINISHED")
    return SweepResult(spec, results, prep.protocol.topk, experiment, parent_id, tracker.uri)

