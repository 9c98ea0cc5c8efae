"""MLflow is the record: one experiment per dataset/protocol, a parent run per sweep, a nested run
per (method, bits, seed).

The tracking URI is, in order: ``--tracking-uri``, ``$MLFLOW_TRACKING_URI``, else a sqlite file
``mlflow.db`` in the working folder (git-ignored). For sqlite stores, artifacts go to
``mlartifacts/`` beside the database file, so a store and its artifacts move together.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

RUN_KEY_TAG = "hashbench.run_key"        # identity of a run: configuration and seed
CONFIG_KEY_TAG = "hashbench.config_key"  # identity of a configuration: the run key without the seed
KIND_TAG = "hashbench.kind"
ERROR_TAG = "hashbench.error"


def resolve_tracking_uri(uri: str | None = None) -> str:
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
    return uri


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return text[:6000]


class Tracker:
    """Thin wrapper over `MlflowClient`: explicit run ids, no global active-run state."""

    def __init__(self, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = resolve_tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)

    # --------------------------------------------------------------- experiments
    def experiment_id(self, name: str, *, create: bool = True) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        if not create:
            return None
        location = None
        if self.uri.startswith("sqlite:///"):
            location = (Path(self.uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def experiment_names(self) -> list[str]:
        return [e.name for e in self.client.search_experiments() if e.name != "Default"]

    # --------------------------------------------------------------- runs
    def start_run(self, experiment_id: str, name: str, *, params: dict[str, Any] | None = None,
                  tags: dict[str, str] | None = None, parent_id: str | None = None) -> str:
        tags = dict(tags or {})
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(experiment_id, run_name=name, tags=tags)
        if params:
            self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i:i + 500])

    def log_history(self, run_id: str, history: dict[str, list[float]], prefix: str = "train_") -> None:
        """Per-epoch curves as metrics with steps (step = epoch index)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(prefix + key, float(v), now, step)
                 for key, values in history.items() for step, v in enumerate(values)]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i:i + 500])

    def log_text(self, run_id: str, filename: str, text: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / filename
            path.write_text(text)
            self.client.log_artifact(run_id, str(path))

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value[:5000])

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def find_finished(self, experiment_id: str, run_key: str):
        """The latest FINISHED run carrying ``run_key``, or None."""
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' and attributes.status = 'FINISHED'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return runs[0] if runs else None
