"""Shared test configuration."""
import os

# One thread per library: the test workloads are small, and on a 2-core machine shared with other jobs,
# two threads per process oversubscribe the cores and slow small torch/BLAS calls down many times over.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402


os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "false")  # tests use sqlite stores, never ./mlruns


def pytest_configure(config):
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


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
    Tracker(f"sqlite:///{path}").open()
    return path


@pytest.fixture
def tracking_uri(tmp_path, _migrated_mlflow_db):
    """A private, empty MLflow store for one test."""
    import shutil

    path = tmp_path / "mlflow.db"
    shutil.copy(_migrated_mlflow_db, path)
    return f"sqlite:///{path}"
