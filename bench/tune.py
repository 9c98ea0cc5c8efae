"""Equal-budget tuning on the validation split (``python -m bench tune``).

For each method, the same budget: its defaults are scored once, then ``trials`` configurations drawn from
its declared `search_space` (plain data on the method's class) by Ray Tune's random search, or as many as
fit in ``time_budget_s`` seconds. Every configuration is a validation sweep of one (method, bits, seed)
(`bench.runner.run_sweep` with ``validation=True``): fitted on the protocol's training split minus the
validation queries and scored on the validation split only (`datasets.protocols.validation_split`), recorded
like any other run in the experiment ``<dataset>/<protocol>-validation`` with the tag
``hashbench.split=validation``. The protocol's queries and evaluation database are never featurised nor
scored. The chosen configuration of each method is the best validation score (its defaults when no trial
beats them); `write_sweep_file` writes them as a sweep file that ``python -m bench run --config`` reads.

A trial may run with a documented reduced schedule when the budget demands it: pass it as a fixed
hyper-parameter (``fixed``), which every trial and the defaults' run then share and the sweep file keeps.

Ray is imported here and in `bench.ray_executor` only (whose `start_ray` starts or joins it); each trial is a Ray Tune trial asking for
``threads`` CPUs, so a local Ray instance runs ``cores / threads`` trials at once.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.errors import UsageError


@dataclass(frozen=True)
class TuneSpec:
    """What to tune: ``methods`` on ``dataset``'s protocol at ``bits``, method seed ``seed``; ``trials``
    configurations per method or ``time_budget_s`` seconds per method (exactly one of the two);
    ``fixed`` hyper-parameters per method that every trial shares (a reduced schedule)."""

    methods: tuple[str, ...]
    dataset: str
    bits: int
    trials: int | None = None
    time_budget_s: float | None = None
    seed: int = 0
    protocol: str | None = None
    features: str | None = None
    data_root: str | None = None
    fixed: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def budget(self) -> str:
        """The budget per method in words ("20 trials", "15 minutes"), as progress and the sweep file say it."""
        if self.trials is not None:
            return f"{self.trials} trial{'s' if self.trials != 1 else ''}"
        return f"{self.time_budget_s / 60:g} minutes"

    def __post_init__(self):
        if (self.trials is None) == (self.time_budget_s is None):
            raise UsageError("give the budget as --trials N or as --time-budget MINUTES (one of the two)")
        if self.trials is not None and (isinstance(self.trials, bool) or self.trials < 1):
            raise UsageError(f"--trials must be an integer >= 1, got {self.trials!r}")
        if self.time_budget_s is not None and not (self.time_budget_s > 0 and math.isfinite(self.time_budget_s)):
            raise UsageError(f"--time-budget must be a positive number of minutes, got {self.time_budget_s / 60!r}")
        if not self.methods:
            raise UsageError("no method given: pass --methods, e.g. --methods itq,lagnh")
        twice = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if twice:
            raise UsageError(f"--methods names {', '.join(twice)} more than once")
        stray = sorted(set(self.fixed) - set(self.methods))
        if stray:
            raise UsageError(f"--param names {', '.join(stray)}, which {'is' if len(stray) == 1 else 'are'} not "
                             f"among --methods ({', '.join(self.methods)})")


@dataclass
class Trial:
    """One scored configuration: the hyper-parameters it set (empty: the defaults), its validation score
    and the run that recorded it."""

    params: dict[str, Any]
    score: float
    run_id: str
    metric: str = ""


@dataclass
class MethodTuning:
    """A method's defaults, its trials and the chosen configuration."""

    method: str
    metric: str
    default: Trial
    trials: list[Trial]

    @property
    def best(self) -> Trial:
        """The best-scoring configuration; the defaults when no trial beats them (ties keep the defaults)."""
        best = self.default
        for trial in self.trials:
            if trial.score > best.score:
                best = trial
        return best


def ray_search_space(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A method's `search_space` as Ray Tune sampling domains: ``{"low", "high"}`` of ints -> an integer
    in [low, high] (log-uniform with ``"log"``), of floats -> a float in [low, high] (log-uniform with
    ``"log"``); ``{"choices"}`` -> one of them, uniformly."""
    from ray import tune

    out: dict[str, Any] = {}
    for name, spec in space.items():
        if "choices" in spec:
            out[name] = tune.choice(list(spec["choices"]))
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            out[name] = (tune.lograndint if spec.get("log") else tune.randint)(spec["low"], spec["high"] + 1)
        else:
            out[name] = (tune.loguniform if spec.get("log") else tune.uniform)(float(spec["low"]), float(spec["high"]))
    return out


def validation_sweep(spec: TuneSpec, method: str, params: dict[str, Any]):
    """The one-run validation sweep (`bench.sweep.SweepSpec`) that scores ``method`` with ``params`` over
    ``spec.fixed``: what every trial, the defaults' run and the up-front validation of a tune share."""
    from bench.sweep import SweepSpec

    overrides = {**params, **spec.fixed.get(method, {})}  # a fixed value always wins
    return SweepSpec(methods=(method,), dataset=spec.dataset, bits=(spec.bits,), seeds=(spec.seed,),
                     protocol=spec.protocol, features=spec.features, data_root=spec.data_root,
                     overrides={method: overrides} if overrides else {}, validation=True, save_models=False)


def score_configuration(spec: TuneSpec, method: str, params: dict[str, Any], tracking_uri: str,
                        threads: int) -> Trial:
    """Run ``method`` with ``params`` (over ``spec.fixed``) on the validation split once and return its
    score: mAP@K of the validation split (`datasets.protocols.validation_topk`).

    Raises:
        RuntimeError: the run failed (the method's or the harness's fault; its record says which).
    """
    from bench.runner import run_sweep

    sweep = validation_sweep(spec, method, params)
    result = run_sweep(sweep, tracking_uri=tracking_uri, threads=threads, progress=lambda msg: None)
    run = result.results[0]
    if run.status not in ("FINISHED", "REUSED"):
        raise RuntimeError(f"{method} {params}: the run ended {run.status}: {run.error}")
    return Trial(dict(params), float(run.metrics[result.table_metric]), run.run_id, result.table_metric)


def tune_methods(spec: TuneSpec, *, tracking_uri: str | None = None, threads: int = 1, ray_address: str | None = None,
                 say: Callable[[str], None] = print) -> list[MethodTuning]:
    """Tune every method of ``spec`` with the same budget (module docstring); returns their tunings in
    the order given.

    Raises:
        UsageError: an unknown method, a budget or setting the sweep refuses, Ray missing or unreachable.
    """
    from bench.sweep import validate
    from bench.tracking import absolute_tracking_uri
    from hashbench.methods import get_method

    tracking_uri = absolute_tracking_uri(tracking_uri)  # trials run in Ray's workers, in folders of their own

    for method in spec.methods:  # every user error before anything runs
        validate(validation_sweep(spec, method, {}))
    ray = _start_ray(ray_address, threads)
    out = []
    try:
        for method in spec.methods:
            # A hyper-parameter fixed with --param (a reduced schedule) is shared by every trial, not searched.
            fixed = spec.fixed.get(method, {})
            space = {k: v for k, v in get_method(method).search_space.items() if k not in fixed}
            say(f"{method}: defaults on the validation split ...")
            default = score_configuration(spec, method, {}, tracking_uri, threads)
            trials: list[Trial] = []
            if space:
                kept = f"; fixed: {', '.join(f'{k}={v}' for k, v in fixed.items())}" if fixed else ""
                say(f"{method}: searching {', '.join(space)} ({spec.budget}{kept}) ...")
                trials = _search(spec, method, space, tracking_uri, threads)
            elif fixed:
                say(f"{method}: every setting of its search space is fixed by --param: only that is scored")
            else:
                say(f"{method}: no search space (nothing of it but the code length and seed changes its codes)")
            out.append(MethodTuning(method, default.metric, default, trials))
            best = out[-1].best
            say(f"{method}: defaults {default.score:.4f}, best {best.score:.4f} "
                f"({'the defaults' if best is default else best.params})")
    finally:
        if ray_address is None:
            ray.shutdown()
    return out


def _start_ray(address: str | None, threads: int):
    from bench.ray_executor import _import_ray, start_ray
    from bench.threads import available_cores

    ray = _import_ray("bench tune")
    start_ray(ray, address, max(threads, available_cores()))
    return ray


def _search(spec: TuneSpec, method: str, space: dict[str, dict[str, Any]], tracking_uri: str,
            threads: int) -> list[Trial]:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    # No console tables (the harness reports progress itself) and no TensorBoard logger (not installed):
    # the JSON and CSV loggers that Ray's result grid reads back are named explicitly.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

    def trainable(config: dict[str, Any]) -> dict[str, Any]:
        trial = score_configuration(spec, method, dict(config), tracking_uri, threads)
        return {"score": trial.score, "run_id": trial.run_id, "metric": trial.metric}

    import ray

    # As many trials in flight as the cluster runs at once: with a time budget the search is open-ended,
    # and Ray would otherwise queue trials that never start.
    slots = max(1, int(ray.cluster_resources().get("CPU", 1.0) // threads))
    with tempfile.TemporaryDirectory(prefix="hashbench-tune-") as storage:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": threads}),
            param_space=ray_search_space(space),
            tune_config=tune.TuneConfig(
                metric="score", mode="max",
                num_samples=spec.trials if spec.trials is not None else -1,
                time_budget_s=spec.time_budget_s,
                search_alg=BasicVariantGenerator(random_state=spec.seed), max_concurrent_trials=slots,
            ),
            run_config=tune.RunConfig(storage_path=storage, name=method, verbose=0,
                                      callbacks=[JsonLoggerCallback(), CSVLoggerCallback()]),
        )
        return scored_trials(method, tuner.fit())


def scored_trials(method: str, results) -> list[Trial]:
    """The trials of Ray Tune ``results`` (a result grid) that scored; trials that never started or were
    cut short when a time budget ran out (no error, no score) are left out.

    Raises:
        RuntimeError: a trial raised (its error is named).
    """
    trials = []
    for result in results:
        if result.error is not None:
            raise RuntimeError(f"{method}: a trial failed: {result.error}")
        if not result.metrics or "score" not in result.metrics:
            continue
        trials.append(Trial({k: _plain(v) for k, v in result.config.items()}, float(result.metrics["score"]),
                            str(result.metrics["run_id"]), str(result.metrics["metric"])))
    return trials


def _plain(value: Any) -> Any:
    """numpy scalars from Ray's samplers as plain Python numbers (for YAML and MLflow)."""
    return value.item() if hasattr(value, "item") else value


def write_sweep_file(spec: TuneSpec, tunings: list[MethodTuning], path: str, tracking_uri: str | None = None) -> None:
    """Write the chosen configurations as a sweep file for ``python -m bench run --config``: the methods,
    dataset, protocol, features and code length of the tune, each method's chosen hyper-parameters
    (``params``; the fixed ones included) and, when given, the store the trials went to (``tracking_uri``,
    so the protocol's runs land beside them; ``--tracking-uri`` on ``run`` overrides it), headed by
    comments giving each method's validation scores."""
    import yaml

    params = {}
    for t in tunings:
        chosen = {**spec.fixed.get(t.method, {}), **t.best.params}
        if chosen:
            params[t.method] = chosen
    body = {"methods": [t.method for t in tunings], "dataset": spec.dataset, "bits": [spec.bits],
            "seeds": [spec.seed]}
    for key in ("protocol", "features", "data_root"):
        if getattr(spec, key) is not None:
            body[key] = getattr(spec, key)
    if params:
        body["params"] = params
    if tracking_uri is not None:
        body["tracking_uri"] = tracking_uri
    lines = [f"# Chosen by python -m bench tune on the validation split of {spec.dataset} ({spec.budget} per method,",
             "# seed {}, {} bits); validation scores, defaults -> chosen:".format(spec.seed, spec.bits)]
    for t in tunings:
        lines.append(f"#   {t.method}: {t.metric} {t.default.score:.4f} -> {t.best.score:.4f} "
                     f"({'defaults kept' if t.best is t.default else 'tuned'}; {len(t.trials)} trials)")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False))
