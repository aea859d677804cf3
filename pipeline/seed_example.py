"""The worked example that started the project, run through ``loss_and_grad``.

``W = ones((2, 3))``, ``x = [-1, 1, 1]``, ``y = [1, 2]``, variant ``linear``: ten steps of
``W -= 0.1 * ∂L/∂W``, printing the loss before each step. The output is byte-identical to the
original hand-written loop ``ŷ = W @ x; L = ((ŷ - y)**2).sum(); W -= 0.1 * outer(2(ŷ - y), x)``.

    python -m pipeline.seed_example
"""

import numpy as np

from pipeline.model import loss_and_grad


def worked_example_losses(steps=10, lr=0.1):
    W = np.ones((2, 3))
    X = np.array([[-1.0, 1.0, 1.0]])
    Y = np.array([[1.0, 2.0]])
    losses = []
    for _ in range(steps):
        L, dW = loss_and_grad(W, X, Y, "linear")
        losses.append(L)
        W -= lr * dW
    return losses


def main():
    for L in worked_example_losses():
        print(L)


if __name__ == "__main__":
    main()
