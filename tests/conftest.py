"""Shared test configuration."""
import os

import pytest

# Tests must never write into a user's cache or the working folder's MLflow store.
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "false")


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """An empty, private ``$HASHBENCH_DATA`` cache folder."""
    path = tmp_path / "hashbench-data"
    monkeypatch.setenv("HASHBENCH_DATA", str(path))
    return path


@pytest.fixture(scope="session")
def _migrated_mlflow_db(tmp_path_factory):
    """An MLflow sqlite store with its schema already created (creating one costs seconds)."""
    from bench.tracking import Tracker

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    Tracker(f"sqlite:///{path}").experiment_names()
    return path


@pytest.fixture
def tracking_uri(tmp_path, _migrated_mlflow_db):
    """A private, empty MLflow store for one test."""
    import shutil

    path = tmp_path / "mlflow.db"
    shutil.copy(_migrated_mlflow_db, path)
    return f"sqlite:///{path}"
