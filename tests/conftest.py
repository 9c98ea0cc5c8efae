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
