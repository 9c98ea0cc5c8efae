"""The code of every saved hasher model (MLflow's "models from code"): MLflow copies this file into the
model and runs it on loading, so no Python object is pickled; the model's weights are its ``hasher``
artifact (`hashbench.methods.persist`). See `bench.models`."""
import mlflow.models

from bench.models import HasherModel

mlflow.models.set_model(HasherModel())
