"""A trained model as an MLflow Model: a pyfunc whose prediction is the project's own forward pass.

What is logged with a training run (``log_model``; the train stage hands it to its run's writer
thread), as a LoggedModel the run's Models column shows, loadable with
``mlflow.pyfunc.load_model`` and servable with ``mlflow models serve``:

    MLmodel              flavor python_function, the signature, the input example
    python_model.pkl     the pipeline.classifier.DigitClassifier: the model's fields only
    artifacts/params.npz the trained parameters, one array per name ({"W": (10, 784)}, or with
                         "b"; "W1", "b1", "W2", "b2" for a hidden layer)
    code/pipeline/       the modules the prediction runs (CODE_MODULES), so loading it needs
                         neither this repository nor an installed handgrad
    requirements.txt     numpy, pinned to the version that trained it (and mlflow)

Signature: see pipeline.classifier. A served model answers a wrong shape or dtype with MLflow's
schema error (HTTP 400), and NaN or pixels outside 0..255 with an INVALID_PARAMETER_VALUE error.

Layer: beside the MLflow adapter (pipeline.tracking); imports mlflow, unlike the pure modules.
"""

import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

import mlflow
import numpy as np

from pipeline.classifier import INPUT_DTYPE, PARAMS_ARTIFACT, PIXELS, DigitClassifier, variant_name
from pipeline.tracking import schema

# Every module the prediction imports, shipped with the model; a test loads a model in a process
# that cannot see this repository, so a missing one fails there.
CODE_MODULES = ("__init__.py", "activations.py", "classifier.py", "constants.py", "heads.py", "mlp.py", "model.py",
                "pixel_scores.py", "variants.py")
# MLflow's notes on every log: that a Python object is pickled (it holds plain values here), that
# the input example is checked; and the progress bar of loading the model back to check it.
QUIET_LOGGERS = ("mlflow.pyfunc", "mlflow.models")
PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def log_model(run, params, fields, example, tracking_uri=None, step=0):
    """Log the model of the variant ``fields`` with ``params`` (a dict of arrays) into a run; its
    URI, or None.

    ``run``: a run id, the project's tracking.Run (nothing is logged when it is disabled), or
    None for MLflow's active run. ``fields``: the model's fields (pipeline.variants.plain of
    conf's model) or the name of an entry of pipeline.model's table. ``example``: a few real digits, uint8 pixel rows (n, 784), stored as the input example.
    ``step``: the run's metrics at this step are linked to the model (the final ones, when the
    train stage logs it). The run's status is left as it is. Raises ValueError for non-finite
    parameters (a diverged training has nothing worth serving).
    """
    if getattr(run, "enabled", True) is False:
        return None
    tracking_uri = tracking_uri or getattr(run, "tracking_uri", None) or mlflow.get_tracking_uri()
    run_id = run if isinstance(run, str) else run.run_id if run is not None else mlflow.active_run().info.run_id
    for name, array in params.items():
        if not np.isfinite(array).all():
            raise ValueError(f"parameter {name} holds NaN or infinite values: not logging a model")
    example = np.asarray(example, dtype=INPUT_DTYPE).reshape(-1, PIXELS)
    model = DigitClassifier(fields)
    model.params = params
    signature = mlflow.models.infer_signature(example, model.predict(None, example))
    model.params = None

    mlflow.set_tracking_uri(tracking_uri)  # Model.log resolves the store from the global URI
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    # Created here so it lands in the run's experiment, not the one the environment names.
    logged = client.create_logged_model(
        experiment_id, name=schema.LOGGED_MODEL, source_run_id=run_id, model_type="pyfunc",
        tags={schema.VARIANT: variant_name(fields)},
        params={f"model.{k}": str(v) for k, v in (fields.items() if isinstance(fields, dict) else [("name", fields)])},
    )
    with TemporaryDirectory() as folder, quiet(), requirements_checked_by_name():
        params_file = Path(folder) / "params.npz"
        np.savez(params_file, **params)
        info = mlflow.models.Model.log(
            artifact_path=None, name=schema.LOGGED_MODEL, flavor=mlflow.pyfunc, run_id=run_id, model_id=logged.model_id,
            step=step, python_model=model, artifacts={PARAMS_ARTIFACT: str(params_file)},
            code_paths=[str(shipped_code(Path(folder)))], pip_requirements=[f"numpy=={np.__version__}"],
            signature=signature, input_example=example,
        )
    return info.model_uri


@contextmanager
def quiet():
    """MLflow shows errors only, and no progress bar, while the block runs: its notes would be
    noise in every training's output."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    progress_bar = os.environ.get(PROGRESS_BAR_VARIABLE)
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    os.environ[PROGRESS_BAR_VARIABLE] = "false"
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if progress_bar is None:
            os.environ.pop(PROGRESS_BAR_VARIABLE, None)
        else:
            os.environ[PROGRESS_BAR_VARIABLE] = progress_bar


@contextmanager
def requirements_checked_by_name():
    """MLflow checks the requirements against the installed packages while it saves the model:
    it looks each one up by name, but first maps every installed distribution to its modules (a
    scan of the whole environment), a map it needs only to infer requirements, which are given
    here. The map is left empty for the block (the check itself unchanged), then unset again so
    that anything inferring requirements later in the process still builds it."""
    from mlflow.utils import requirements_utils

    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", {}) is not None:  # built already, or kept elsewhere
        yield
        return
    requirements_utils._MODULES_TO_PACKAGES = {}
    try:
        yield
    finally:
        requirements_utils._MODULES_TO_PACKAGES = None


def shipped_code(folder):
    """A copy of the ``pipeline`` package holding only CODE_MODULES, in ``folder``."""
    package = folder / "pipeline"
    package.mkdir()
    for name in CODE_MODULES:
        shutil.copyfile(Path(__file__).with_name(name), package / name)
    return package
