"""The MNIST shape and the pixel scale, defined once, at the bottom of the imports.

Pure numpy; imports nothing from the project, so every layer above (math, file formats, stages,
orchestration) can take these from here.
"""

import numpy as np

N_CLASSES = 10  # digits 0..9: the outputs k
IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE  # 784: the inputs n
# Pixels are stored as uint8 0..255; the model sees x = pixel / 255 in [0, 1].
PIXEL_MAX = 255


def scaled(images, dtype):
    """``X = images / 255`` as ``dtype``: the model's inputs from the stored uint8 pixels."""
    return np.multiply(images, 1 / PIXEL_MAX, dtype=dtype)
