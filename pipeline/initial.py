"""The starting point of training: W's initialisation and the seeded random streams, numpy only.

Kept apart from the loop (pipeline.sgd) so that the loop, the hidden layer's initialisation and
the benchmark's peers draw the same W₀ and the same batch order from one seed.
"""

import numpy as np

from pipeline.constants import N_CLASSES

INITS = ("zeros", "ones", "normal")


def seeded_generators(seed):
    """Independent generators for W's initialisation and for shuffling, both from ``seed``.

    Separate streams, so switching ``init`` does not change the order batches are drawn in.
    """
    init_seed, shuffle_seed = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(init_seed), np.random.default_rng(shuffle_seed)


def initial_weights(init, scale, n_inputs, dtype, rng, n_classes=N_CLASSES):
    """W (n_classes, n_inputs): all ``zeros``, all ``ones``, or ``normal`` with std ``scale``."""
    shape = (n_classes, n_inputs)
    if init == "zeros":
        return np.zeros(shape, dtype=dtype)
    if init == "ones":
        return np.ones(shape, dtype=dtype)
    if init == "normal":
        return rng.normal(0.0, scale, size=shape).astype(dtype)
    raise ValueError(f"unknown init {init!r}: expected one of {', '.join(INITS)}")
