"""A trained model as an MLflow Model: a pyfunc whose prediction is the project's own forward pass.

What is logged with a training run (``log_model``), as a LoggedModel the run's Models column
shows, loadable with ``mlflow.pyfunc.load_model`` and servable with ``mlflow models serve``:

    MLmodel              flavor python_function, the signature, the input example
    artifacts/params.npz the trained parameters, one array per name ({"W": (10, 784)}, or with
                         "b"; "W1", "b1", "W2", "b2" for a hidden layer)
    code/pipeline/       the modules the prediction runs (CODE_MODULES), so loading it needs
                         neither this repository nor an installed handgrad
    requirements.txt     numpy, pinned to the version that trained it (and mlflow)

Signature. Input: a float32 tensor (B, 784), each row a digit's pixels 0..255 row by row, as
MNIST stores them. Output: ``digit`` (B,) int64, the arg max of ``scores`` (B, 10), which are
the model's ``ŷ`` (probabilities after a softmax, raw scores for linear). The model is a variant
name of pipeline.model's table or, for any variant, its model fields (pipeline.variants.build). A served model answers a
wrong shape or dtype with MLflow's schema error (HTTP 400), and NaN or pixels outside 0..255
with an INVALID_PARAMETER_VALUE error (HTTP 400) rather than a silent wrong answer.

Layer: beside the MLflow adapter (pipeline.tracking); imports mlflow, unlike the pure modules.
"""

import shutil
from pathlib import Path
from tempfile import TemporaryDirectory

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline.constants import IMAGE_SIDE, PIXEL_MAX, scaled
from pipeline.model import variant as variant_named
from pipeline.variants import build

PIXELS = IMAGE_SIDE * IMAGE_SIDE
INPUT_DTYPE = np.float32  # pixels 0..255 are exact in float32
MODEL_NAME = "model"  # the LoggedModel's name; runs:/<run id>/model finds it
PARAMS_ARTIFACT = "params"
# Every module the prediction imports, shipped with the model; a test loads a model in a process
# that cannot see this repository, so a missing one fails there.
CODE_MODULES = ("__init__.py", "activations.py", "constants.py", "mlp.py", "model.py", "served_model.py", "variants.py")


def model_of(variant):
    """The table entry ``variant`` names: a name (softmax, linear) or a mapping of model fields."""
    return build(variant) if isinstance(variant, dict) else variant_named(variant)


def variant_name(variant):
    return variant["name"] if isinstance(variant, dict) else variant


def scores(params, pixels, variant):
    """``ŷ`` (B, 10) of the model ``variant`` (model_of) with parameters ``params`` (a dict of
    arrays) for pixel rows (B, 784) 0..255: the forward pass training and evaluation use, on
    ``x = pixel/255``."""
    model = model_of(variant)
    return model.forward(params, scaled(pixels, params[model.WEIGHTS[0]].dtype))


def pixel_problem(pixels):
    """Why ``pixels`` are not digits' pixels (B, 784) in 0..255, or None when they are."""
    if pixels.ndim != 2 or pixels.shape[1] != PIXELS or len(pixels) == 0:
        return f"expected pixel rows (B, {PIXELS}), got shape {pixels.shape}"
    # Two passes, no temporary: a NaN propagates into min and max, and fails the comparison.
    low, high = pixels.min(), pixels.max()
    if not (0 <= low and high <= PIXEL_MAX):
        if np.isnan(low) or np.isnan(high):
            return "the pixels hold NaN values"
        return f"pixels range over {low:g}..{high:g}, expected 0..{PIXEL_MAX}"
    return None


class DigitClassifier(mlflow.pyfunc.PythonModel):
    """The pyfunc: pixel rows in, ``{"digit": (B,), "scores": (B, 10)}`` out."""

    def __init__(self, variant):
        self.variant = variant
        self.params = None  # read from the model's artifact in load_context, not pickled

    def load_context(self, context):
        with np.load(context.artifacts[PARAMS_ARTIFACT], allow_pickle=False) as stored:
            self.params = {name: stored[name] for name in stored.files}

    # The np.ndarray hint tells MLflow the signature is not to be inferred from hints (it is logged).
    def predict(self, context, model_input: np.ndarray, params=None):
        pixels = np.asarray(model_input)
        problem = pixel_problem(pixels)
        if problem:
            raise MlflowException(problem, error_code=INVALID_PARAMETER_VALUE)
        S = scores(self.params, pixels, self.variant)
        return {"digit": S.argmax(axis=1), "scores": S}


def log_model(run, params, variant, example, tracking_uri=None):
    """Log the model ``variant`` (a name, or model fields) with ``params`` (a dict of arrays) into
    a run; its URI, or None.

    ``run``: a run id, the project's tracking.Run (nothing is logged when it is disabled), or
    None for MLflow's active run. ``example``: a few real digits, uint8 pixel rows (n, 784),
    stored as the input example. The run's status is left as it is. Raises ValueError for
    non-finite parameters (a diverged training has nothing worth serving).
    """
    if getattr(run, "enabled", True) is False:
        return None
    tracking_uri = tracking_uri or getattr(run, "tracking_uri", None) or mlflow.get_tracking_uri()
    run_id = run if isinstance(run, str) else run.run_id if run is not None else mlflow.active_run().info.run_id
    for name, array in params.items():
        if not np.isfinite(array).all():
            raise ValueError(f"parameter {name} holds NaN or infinite values: not logging a model")
    example = np.asarray(example, dtype=INPUT_DTYPE).reshape(-1, PIXELS)
    model = DigitClassifier(variant)
    model.params = params
    signature = mlflow.models.infer_signature(example, model.predict(None, example))
    model.params = None

    mlflow.set_tracking_uri(tracking_uri)  # Model.log resolves the store from the global URI
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    # Created here so it lands in the run's experiment, not the one the environment names.
    logged = client.create_logged_model(experiment_id, name=MODEL_NAME, source_run_id=run_id, tags={"variant": variant_name(variant)})
    with TemporaryDirectory() as folder:
        params_file = Path(folder) / "params.npz"
        np.savez(params_file, **params)
        info = mlflow.models.Model.log(
            artifact_path=None, name=MODEL_NAME, flavor=mlflow.pyfunc, run_id=run_id, model_id=logged.model_id,
            python_model=model, artifacts={PARAMS_ARTIFACT: str(params_file)},
            code_paths=[str(shipped_code(Path(folder)))], pip_requirements=[f"numpy=={np.__version__}"],
            signature=signature, input_example=example,
        )
    return info.model_uri


def shipped_code(folder):
    """A copy of the ``pipeline`` package holding only CODE_MODULES, in ``folder``."""
    package = folder / "pipeline"
    package.mkdir()
    for name in CODE_MODULES:
        shutil.copyfile(Path(__file__).with_name(name), package / name)
    return package
