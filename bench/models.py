"""What a run keeps besides its numbers: the fitted hasher as an MLflow ``pyfunc`` model and the database
codes as a faiss binary index. `bench search` answers queries from these two artifacts alone.

Artifacts of a run (``--no-save-models`` / ``save_models: false`` / ``run_sweep(save_models=False)``
skip them):

* ``model/``: an MLflow pyfunc model (``mlflow.pyfunc.load_model("runs:/<id>/model")``). Its
  ``predict`` takes the features, ``(n, d)`` float, or a dict ``{"features": X, "tags": P, ...}`` with
  the side inputs the method's encoding needs, and returns the packed ``uint8`` codes
  ``(n, ceil(n_bits / 8))``. Inside, the hasher is saved by `hashbench.methods.persist` (numbers and
  arrays, torch state dicts) and the model's code is `bench.pyfunc_model` (MLflow's "models from
  code"): nothing is pickled. The requirements are given explicitly (the versions installed when the run was
  made), so MLflow does not infer them per run.
* ``index/database.faissindex``: ``faiss.write_index_binary`` of an ``IndexBinaryIDMap`` over an
  ``IndexBinaryFlat`` of ``8 * ceil(n_bits / 8)`` bits holding the database codes (padding bits are
  zero, so distances are those of ``n_bits``), with the database ids: the dataset's item indices of the
  protocol's database, in database order. ``index/index.json`` says so (``n_bits``, ``n_database``,
  ``ids``).

Ranking by the stored index gives the harness's own ranking: ascending Hamming distance, ties broken
by database position (`search_index`).
"""
from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.environment import package_versions

MODEL_DIR = "model"
INDEX_DIR = "index"
INDEX_FILE = "database.faissindex"
INDEX_INFO = "index.json"

try:  # the wrapper must be a PythonModel for MLflow; importing mlflow is cheap enough only here
    from mlflow.pyfunc import PythonModel as _PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    _PythonModel = object


class HasherModel(_PythonModel):
    """The pyfunc face of a saved hasher: ``predict(features | {"features": X, <side>: ...}) -> codes``."""

    # MLflow wraps a subclass's predict to validate inputs against its type hints and, without hints,
    # advises adding them on every import; codes have no per-instance input schema (features plus
    # side inputs of any shape), so this model opts out as MLflow's own chat models do.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from hashbench.methods.persist import load_hasher

        self.hasher = load_hasher(context.artifacts["hasher"])

    # no type hints: MLflow would read them as an input schema (a list of instances), which codes are not
    def predict(self, context, model_input, params=None):
        """Packed ``uint8`` codes ``(n, ceil(n_bits / 8))`` of ``model_input``: an ``(n, d)`` array or
        DataFrame of features, or a dict with ``"features"`` and the side inputs by name.

        Raises ``hashbench.methods.InputError`` (one line) for bad features or missing side inputs."""
        if isinstance(model_input, dict):
            side = {k: np.asarray(v) for k, v in model_input.items() if k != "features"}
            if "features" not in model_input:
                from hashbench.methods import InputError

                raise InputError("the model input is a dict without 'features'")
            return self.hasher.encode(np.asarray(model_input["features"]), **side)
        return self.hasher.encode(np.asarray(model_input))


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow without its progress bars (stderr carries hashbench's lines) and without its advice to add
    type hints to ``predict`` (codes have no per-instance schema)."""
    from bench.tracking import _environ

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*[Tt]ype hint", category=UserWarning)
        with _environ({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}):
            yield


def load_model(uri: str) -> Any:
    """The pyfunc model at ``uri`` (``runs:/<id>/model`` or a folder), loaded quietly."""
    import mlflow.pyfunc

    with quiet_mlflow():
        return mlflow.pyfunc.load_model(uri)


def requirements(uses_torch: bool) -> list[str]:
    """The pip requirements of a saved model, pinned to the versions installed now: hashbench and what
    encoding imports (numpy, scipy, scikit-learn, mlflow; torch and torch-geometric for a model with
    torch weights)."""
    versions = package_versions()
    names = ["hashbench", "numpy", "scipy", "scikit-learn", "mlflow"]
    if uses_torch:
        names += ["torch", "torch-geometric"]
    return [f"{n}=={versions[n]}" if versions.get(n, "absent") != "absent" else n for n in names]


def save_model(hasher: Any, folder: Path) -> Path:
    """Save fitted ``hasher`` as a pyfunc model in ``folder / "model"`` (``folder`` must exist); returns it.

    The hasher goes through `hashbench.methods.persist.save_hasher` into a scratch folder that MLflow
    copies into the model as its ``hasher`` artifact."""
    import mlflow.pyfunc

    from hashbench.methods.persist import save_hasher

    scratch = folder / "hasher"
    save_hasher(hasher, scratch)
    uses_torch = (scratch / "modules").is_dir()
    target = folder / MODEL_DIR
    with quiet_mlflow():
        mlflow.pyfunc.save_model(str(target), python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                                 artifacts={"hasher": str(scratch)}, pip_requirements=requirements(uses_torch))
    shutil.rmtree(scratch)
    return target


def save_index(codes: np.ndarray, ids: np.ndarray, n_bits: int, folder: Path) -> Path:
    """Write the database ``codes`` (``uint8`` ``(n, ceil(n_bits / 8))``) with their ``ids`` (``(n,)`` int)
    as a faiss binary index, and its description, into ``folder / "index"``; returns that folder."""
    import faiss

    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    ids = np.asarray(ids, dtype=np.int64)
    index = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(8 * codes.shape[1]))
    index.add_with_ids(codes, ids)
    target = folder / INDEX_DIR
    target.mkdir(parents=True, exist_ok=True)
    faiss.write_index_binary(index, str(target / INDEX_FILE))
    (target / INDEX_INFO).write_text(json.dumps({"n_bits": int(n_bits), "n_database": int(codes.shape[0]),
                                                 "ids": "dataset item indices of the protocol's database"}))
    return target


def read_index(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The database codes (``uint8`` ``(n, n_bytes)``) and ids (``int64`` ``(n,)``) of a stored index, in
    database order."""
    import faiss

    index = faiss.read_index_binary(str(path))
    idmap = faiss.downcast_IndexBinary(index)
    flat = faiss.downcast_IndexBinary(idmap.index)
    codes = faiss.vector_to_array(flat.xb).reshape(flat.ntotal, flat.code_size)
    ids = faiss.vector_to_array(idmap.id_map).astype(np.int64)
    return codes, ids


def search_index(query_codes: np.ndarray, db_codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database positions of each query and their Hamming distances, in the harness's
    order (ascending distance, ties by ascending database position: the engine's stable ranking).

    Returns ``(positions, distances)``, both ``(n_queries, min(k, n_db))`` int64."""
    from bench.evaluation import hamming_distances

    dist = hamming_distances(query_codes, db_codes).astype(np.int64)
    k = min(int(k), db_codes.shape[0])
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, axis=1)
