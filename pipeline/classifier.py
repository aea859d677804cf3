"""The digit classifier a logged MLflow Model runs: pixel rows in, the model table's forward pass out.

This module, ``pipeline.model`` and ``pipeline.constants`` are packaged inside every logged model
(pipeline.served_model ships them): loading the model imports them from there, so it needs
neither this repository nor an installed handgrad. Nothing here imports the rest of the project.

A model is a variant's fields (conf/model/<variant>.yaml: ``{"name": "softmax"}``) and its
parameters (a dict of arrays, ``{"W": (10, 784)}`` for the single-layer variants); the forward
pass is that variant's entry in the model table, so a new variant needs no change here.

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
from pipeline.model import variant

PIXELS = IMAGE_SIDE * IMAGE_SIDE
INPUT_DTYPE = np.float32  # pixels 0..255 are exact in float32
PARAMS_ARTIFACT = "params"  # the model's artifact holding the parameters, params.npz


def model_of(fields):
    """The model table's entry for a variant's fields (a mapping with ``name``) or its name."""
    return variant(variant_name(fields))


def variant_name(fields):
    return fields if isinstance(fields, str) else fields["name"]


def scores(params, pixels, fields):
    """``ŷ`` (B, 10) of the variant ``fields`` with parameters ``params`` (a dict of arrays) for
    pixel rows (B, 784) 0..255: the forward pass training and evaluation use, on ``x = pixel/255``
    in the parameters' dtype."""
    dtype = next(iter(params.values())).dtype
    return model_of(fields).forward(params, scaled(pixels, dtype))


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

    Pickled with the model: the variant's fields only (plain values); the parameters are read
    from the model's artifact in ``load_context``.
    """

    def __init__(self, fields):
        self.fields = dict(fields) if not isinstance(fields, str) else {"name": fields}
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
