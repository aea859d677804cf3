"""The digit classifier a logged MLflow Model runs: pixel rows in, the model table's forward pass out.

This module and the pure ones it imports (pipeline.variants, model, mlp, activations,
constants) are packaged inside every logged model (pipeline.served_model ships them): loading the
model imports them from there, so it needs neither this repository nor an installed handgrad.

A model is its fields (conf/model/<name>.yaml, as pipeline.variants.plain gives them; or just the
name of an entry of pipeline.model's table) and its parameters (a dict of arrays: W, b; W1, b1,
W2, b2 for a hidden layer); the forward pass is the table entry pipeline.variants.build makes of
the fields, so a new variant needs no change here.

Input: a float32 tensor (B, 784), each row a digit's pixels 0..255 row by row, as MNIST stores
them. Output: ``digit`` (B,) int64, the arg max of ``scores`` (B, 10), the model's ``ŷ``
(probabilities for softmax, raw scores for linear). NaN or pixels outside 0..255 are refused
with an INVALID_PARAMETER_VALUE error (HTTP 400 from a served model), never answered.
"""

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline.constants import IMAGE_SIDE, PIXEL_MAX, scaled
from pipeline.model import variant as variant_named
from pipeline.variants import build

PIXELS = IMAGE_SIDE * IMAGE_SIDE
INPUT_DTYPE = np.float32  # pixels 0..255 are exact in float32
PARAMS_ARTIFACT = "params"  # the model's artifact holding the parameters, params.npz


def model_of(fields):
    """The table entry of a model's fields (a mapping, pipeline.variants.build) or its name."""
    return build(fields) if isinstance(fields, dict) else variant_named(fields)


def variant_name(fields):
    return fields["name"] if isinstance(fields, dict) else fields


def scores(params, pixels, fields):
    """``ŷ`` (B, 10) of the model ``fields`` (model_of) with parameters ``params`` (a dict of
    arrays) for pixel rows (B, 784) 0..255: the forward pass training and evaluation use, on
    ``x = pixel/255`` in the dtype of the model's first weights."""
    model = model_of(fields)
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
