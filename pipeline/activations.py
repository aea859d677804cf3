"""The hidden layer's activations, each forward beside its derivative: pure numpy, no I/O.

``h = act(a)`` element-wise, with ``a = W₁x + b₁`` (docs/derivation.md §14). Each ``backward``
takes the activation's *output* ``H`` and an upstream gradient ``G = ∂L/∂H`` and returns
``∂L/∂A = G ⊙ act'(A)``, with the derivative written in terms of the output, so the forward pass
need not keep ``A``:

    relu      h = max(a, 0)          h' = 1 where h > 0, else 0
    sigmoid   h = 1 / (1 + e^(−a))   h' = h (1 − h)
    tanh      h = tanh(a)            h' = 1 − h²

``out`` (may be the input itself) receives the result without allocating. Each activation names
the initialisation suited to it (pipeline.mlp): He for relu, Glorot for sigmoid and tanh.
"""

import numpy as np


class ReLU:
    init = "he"  # keeps the variance of a through layers that zero half their inputs

    def forward(self, A, out=None):
        """``H = max(A, 0)``."""
        return np.maximum(A, 0, out=out)

    def backward(self, H, G, out=None):
        """``Δ = G ⊙ [H > 0]``: the slope is 1 where the unit is on, 0 where it is off (and at 0)."""
        return np.multiply(G, H > 0, out=out)


class Sigmoid:
    init = "glorot"

    def forward(self, A, out=None):
        """``H = 1 / (1 + e^(−A)) = (1 + tanh(A/2)) / 2``: the tanh form never overflows."""
        H = np.multiply(A, 0.5, out=out)
        np.tanh(H, out=H)
        H += 1
        H *= 0.5
        return H

    def backward(self, H, G, out=None):
        """``Δ = G ⊙ H ⊙ (1 − H)``."""
        slope = H * (1 - H)
        return np.multiply(G, slope, out=out)


class Tanh:
    init = "glorot"

    def forward(self, A, out=None):
        """``H = tanh(A)``."""
        return np.tanh(A, out=out)

    def backward(self, H, G, out=None):
        """``Δ = G ⊙ (1 − H²)``."""
        slope = 1 - H * H
        return np.multiply(G, slope, out=out)


RELU, SIGMOID, TANH = ReLU(), Sigmoid(), Tanh()
# By the names conf/model/*.yaml gives them (model.activation).
ACTIVATIONS = {"relu": RELU, "sigmoid": SIGMOID, "tanh": TANH}
