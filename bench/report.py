"""Read tracked runs back from MLflow into one tidy table (a row per run), for tables and plots."""
from __future__ import annotations

import pandas as pd

from bench.errors import UsageError
from bench.tracking import CONFIG_KEY_TAG, KIND_TAG, RUN_KEY_TAG, Tracker


def load_runs(tracker: Tracker, experiment: str | None = None, sweep: str | None = None) -> pd.DataFrame:
    """FINISHED per-(method, bits, seed) runs; where a run was redone (``--force``) the latest counts.

    ``experiment``: a ``dataset/protocol`` name (default: every experiment). ``sweep``: a parent run id
    (or its first characters) to restrict to one sweep.
    """
    names = [experiment] if experiment else tracker.experiment_names()
    ids = []
    for name in names:
        exp_id = tracker.experiment_id(name, create=False)
        if exp_id is None:
            known = ", ".join(tracker.experiment_names()) or "none"
            raise UsageError(f"no experiment {name!r} in {tracker.uri}; experiments there: {known}")
        ids.append((name, exp_id))
    rows = []
    for name, exp_id in ids:
        token = None
        while True:
            page = tracker.client.search_runs(
                [exp_id], filter_string=f"tags.`{KIND_TAG}` = 'run' and attributes.status = 'FINISHED'",
                max_results=1000, page_token=token, order_by=["attributes.start_time ASC"])
            for run in page:
                parent = run.data.tags.get("mlflow.parentRunId", "")
                if sweep and not parent.startswith(sweep):
                    continue
                p = run.data.params
                rows.append({
                    "experiment": name, "run_id": run.info.run_id, "sweep": parent,
                    "run_key": run.data.tags.get(RUN_KEY_TAG, run.info.run_id),
                    "config": run.data.tags.get(CONFIG_KEY_TAG, run.data.tags.get(RUN_KEY_TAG, run.info.run_id)),
                    "method": p.get("method"), "n_bits": int(p.get("n_bits", 0)), "seed": int(p.get("seed", 0)),
                    "dataset": p.get("dataset"), "protocol": p.get("protocol"), "features": p.get("features"),
                    "topk": int(p.get("topk", 0)), "start_time": run.info.start_time,
                    **run.data.metrics,
                })
            token = page.token
            if not token:
                break
    frame = pd.DataFrame(rows)
    if frame.empty:
        where = f"experiment {experiment!r}" if experiment else "any experiment"
        raise UsageError(f"no finished runs in {where} of {tracker.uri}; run `python -m bench run` first")
    frame = frame.sort_values("start_time").drop_duplicates("run_key", keep="last").reset_index(drop=True)
    return label_configurations(frame)


def label_configurations(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs of one method under different settings (hyper-parameters, features, code version) are never
    averaged together: where a method has several configurations in an experiment, each becomes its own
    row, ``method#<config>``, with the configuration's short hash (its parameters are in MLflow)."""
    frame = frame.copy()
    frame["method_name"] = frame["method"]
    n_configs = frame.groupby(["experiment", "method"])["config"].transform("nunique")
    several = n_configs > 1
    frame.loc[several, "method"] = frame.loc[several, "method"] + "#" + frame.loc[several, "config"].str[:6]
    return frame


def default_metric(frame: pd.DataFrame) -> str:
    topks = sorted(frame["topk"].unique())
    if len(topks) == 1 and f"map_at_{topks[0]}" in frame.columns:
        return f"map_at_{topks[0]}"
    return "map_tie_aware"
