"""Read tracked runs back into one tidy table (a row per run), for tables and plots.

Runs are grouped as `bench.record` defines them: seeds of one configuration (same method,
hyper-parameters, data fingerprint and code fingerprint) are averaged; different configurations are
never averaged together. By default each setting (a configuration without its code) shows its latest
code only; ``code_versions="all"`` also shows older code, each row labelled with its code fingerprint.
Runs recorded before `bench.record` existed (no ``hashbench.layout`` tag, flat parameter names) are
read as configurations of their own, with code ``"legacy"``.
"""
from __future__ import annotations

import pandas as pd

from bench import metrics as metric_table
from bench import record
from bench.errors import UsageError
from bench.tracking import Tracker

CODE_VERSIONS = ("latest", "all")
LEGACY_CONFIG_TAG = "hashbench.config_key"  # the same tag name before and after the layout change


def _row(run, experiment: str) -> dict:
    """One run as a row, from either layout."""
    p, t = run.data.params, run.data.tags
    run_key = t.get(record.TAG_RUN_KEY, run.info.run_id)
    if t.get(record.TAG_LAYOUT) == record.LAYOUT_VERSION:
        facts = {"method": p.get("method"), "n_bits": p.get("hp.n_bits"), "seed": p.get("hp.seed"),
                 "dataset": p.get("data.dataset"), "protocol": p.get("data.protocol"),
                 "features": p.get("features.name"), "topk": p.get("data.topk"),
                 "config": t.get(record.TAG_CONFIG_KEY, run_key), "setting": t.get(record.TAG_SETTING_KEY, run_key),
                 "code": t.get(record.TAG_CODE, "unknown")}
    else:
        config = t.get(LEGACY_CONFIG_TAG, run_key)
        facts = {"method": p.get("method"), "n_bits": p.get("n_bits"), "seed": p.get("seed"),
                 "dataset": p.get("dataset"), "protocol": p.get("protocol"), "features": p.get("features"),
                 "topk": p.get("topk"), "config": config, "setting": config, "code": "legacy"}
    for key in ("n_bits", "seed", "topk"):
        facts[key] = int(facts[key]) if facts[key] not in (None, "") else 0
    return {"experiment": experiment, "run_id": run.info.run_id, "sweep": t.get("mlflow.parentRunId", ""),
            "run_key": run_key, "start_time": run.info.start_time, **facts, **run.data.metrics}


def load_runs(tracker: Tracker, experiment: str | None = None, sweep: str | None = None,
              code_versions: str = "latest") -> pd.DataFrame:
    """FINISHED per-(method, bits, seed) runs as a frame; where a run was redone (``--force``) the
    latest of its run key counts.

    ``experiment``: a ``dataset/protocol`` name (default: every experiment). ``sweep``: a sweep's run id
    (or its first characters): the runs its table showed, reused runs of earlier sweeps included. ``code_versions``: ``"latest"`` (each setting at its latest code) or
    ``"all"``. Columns: experiment, run_id, sweep, run_key, start_time, method (the row label, see
    `label_configurations`), method_name, n_bits, seed, dataset, protocol, features, topk, config,
    setting, code, code_label, then one column per recorded metric.

    Raises `UsageError` for an unknown experiment or a store without finished runs.
    """
    if code_versions not in CODE_VERSIONS:
        raise UsageError(f"code_versions must be one of {CODE_VERSIONS}, got {code_versions!r}")
    names = [experiment] if experiment else tracker.experiment_names()
    rows = []
    for name in names:
        exp_id = tracker.experiment_id(name, create=False)
        if exp_id is None:
            known = ", ".join(tracker.experiment_names()) or "none"
            raise UsageError(f"no experiment {name!r} in {tracker.uri}; experiments there: {known}")
        chosen = tracker.sweep_runs(exp_id, sweep) if sweep else None
        rows += [_row(run, name) for run in tracker.finished_runs(exp_id)
                 if chosen is None or run.info.run_id in chosen]
    frame = pd.DataFrame(rows)
    if frame.empty:
        where = f"experiment {experiment!r}" if experiment else "any experiment"
        raise UsageError(f"no finished runs in {where} of {tracker.uri}; run `python -m bench run` first")
    frame = frame.sort_values("start_time").drop_duplicates("run_key", keep="last").reset_index(drop=True)
    return label_configurations(frame, code_versions)


def label_configurations(frame: pd.DataFrame, code_versions: str = "latest") -> pd.DataFrame:
    """Give every configuration its own row label in ``method``.

    A method with several settings (hyper-parameters or data) in an experiment becomes
    ``method#<setting>`` (6 hex of the setting key; its parameters are in MLflow). Each setting keeps
    its latest code (that of its most recent run); with ``code_versions="all"`` older code stays too.
    A row whose code is not the newest code of its method in the experiment (an older code version,
    or a setting last run before the method's code changed) is labelled ``...@<code>`` (6 hex of the
    code fingerprint), so a reader always sees which rows ran on other code. ``code_label`` says
    ``latest`` or that short hash.
    """
    frame = frame.copy()
    frame["method_name"] = frame["method"]
    ordered = frame.sort_values("start_time")
    latest_of_setting = ordered.groupby(["experiment", "setting"])["code"].last()
    if code_versions == "latest":
        keep = [latest_of_setting[(e, s)] == c for e, s, c in zip(frame["experiment"], frame["setting"], frame["code"])]
        frame = frame[keep].reset_index(drop=True)
    newest_of_method = ordered.groupby(["experiment", "method"])["code"].last()
    newest = [newest_of_method[(e, m)] == c for e, m, c in zip(frame["experiment"], frame["method_name"], frame["code"])]
    frame["code_label"] = ["latest" if ok else c[:6] for ok, c in zip(newest, frame["code"])]
    n_settings = frame.groupby(["experiment", "method_name"])["setting"].transform("nunique")
    several = n_settings > 1
    frame.loc[several, "method"] = frame.loc[several, "method_name"] + "#" + frame.loc[several, "setting"].str[:6]
    older = frame["code_label"] != "latest"
    frame.loc[older, "method"] = frame.loc[older, "method"] + "@" + frame.loc[older, "code_label"]
    return frame


def default_metric(frame: pd.DataFrame) -> str:
    """mAP@K when every run shares one K, else the K-free tie-aware mAP."""
    topks = sorted(frame["topk"].unique())
    if len(topks) == 1 and metric_table.default_metric(topks[0]) in frame.columns:
        return metric_table.default_metric(topks[0])
    return "map_tie_aware"
