"""What a model says about digits' pixel rows: the model table's forward pass on pixels 0..255.

Pure (numpy and the model table only): pipeline.predict answers a trained folder with it without
importing MLflow, and pipeline.classifier's pyfunc (the logged model) answers with the same
functions, shipped inside the model with it.

A model is its fields (conf/model/<name>.yaml, as pipeline.variants.plain gives them; or just the
name of an entry of pipeline.model's table) and its parameters (a dict of arrays: W, b; W1, b1,
W2, b2 for a hidden layer); the forward pass is the table entry pipeline.variants.build makes of
the fields, so a new variant needs no change here.
"""

import numpy as np

from pipeline.constants import IMAGE_SIDE, PIXEL_MAX, scaled
from pipeline.model import variant as variant_named
from pipeline.variants import build

PIXELS = IMAGE_SIDE * IMAGE_SIDE
INPUT_DTYPE = np.float32  # pixels 0..255 are exact in float32


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
