"""The digit classifier a logged MLflow Model runs: pixel rows in, the model table's forward pass out.

This module and the pure ones it imports (pipeline.pixel_scores, variants, model, mlp,
activations, constants) are packaged inside every logged model (pipeline.served_model ships
them): loading the model imports them from there, so it needs neither this repository nor an
installed handgrad. The forward pass on pixels is pipeline.pixel_scores' (re-exported here), so
a new variant needs no change here.

Input: a float32 tensor (B, 784), each row a digit's pixels 0..255 row by row, as MNIST stores
them. Output: ``digit`` (B,) int64, the arg max of ``scores`` (B, 10), the model's ``ŷ``
(probabilities for softmax, raw scores for linear). NaN or pixels outside 0..255 are refused
with an INVALID_PARAMETER_VALUE error (HTTP 400 from a served model), never answered.
"""

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline.pixel_scores import INPUT_DTYPE, PIXELS, model_of, pixel_problem, scores, variant_name

__all__ = ["INPUT_DTYPE", "PARAMS_ARTIFACT", "PIXELS", "DigitClassifier", "model_of", "pixel_problem", "scores", "variant_name"]

PARAMS_ARTIFACT = "params"  # the model's artifact holding the parameters, params.npz


class DigitClassifier(mlflow.pyfunc.PythonModel):
    """The pyfunc: pixel rows in, ``{"digit": (B,), "scores": (B, 10)}`` out.

    Pickled with the model: its fields only (plain values); the parameters are read from the
    model's artifact in ``load_context``.
    """

    def __init__(self, fields):
        self.fields = dict(fields) if not isinstance(fields, str) else fields
        self.params = None

    def load_context(self, context):
        with np.load(context.artifacts[PARAMS_ARTIFACT], allow_pickle=False) as stored:
            self.params = {name: stored[name] for name in stored.files}

    # The np.ndarray hint tells MLflow the signature is not to be inferred from hints (it is logged).
    def predict(self, context, model_input: np.ndarray, params=None):
        pixels = np.asarray(model_input)
        problem = pixel_problem(pixels)
        if problem:
            raise MlflowException(problem, error_code=INVALID_PARAMETER_VALUE)
        S = scores(self.params, pixels, self.fields)
        return {"digit": S.argmax(axis=1), "scores": S}
