"""The hidden-layer loop (pipeline.mlp_sgd.HiddenLayerSGD) against its own floor, and the peak
memory of a hidden-layer training run."""

import statistics
import tempfile
from pathlib import Path

import numpy as np

from bench.commands import train_command
from bench.data import train_settings
from bench.loop import Floor, timed_epochs
from bench.measure import run_command, spread
from pipeline.constants import N_CLASSES
from pipeline.mlp_sgd import initial_params, trainer
from pipeline.initial import seeded_generators
from pipeline.variants import build

VARIANT = "mlp"
BATCH_SIZES = (256, None)  # None: full batch
MEMORY_WIDTH = 256  # hidden units of the run whose peak memory is measured


class HiddenFloor(Floor):
    """The work an epoch of the hidden-layer loop cannot avoid, timed on this machine: one pass
    converting all rows from uint8 to float, and per batch (or chunk of a full batch, at its
    fastest size) the five products of the gradient: ``P W₁ᵀ``, ``H W₂ᵀ``, ``Δ₂ᵀ H``, ``Δ₂ W₂``,
    ``Δ₁ᵀ P`` (the first and last, B x 784 x m, are nearly all of it). BLAS on one thread, as the
    loop runs them, and on its default number of threads; the faster counts. The conversion, the
    choice of chunk and the timing are bench.loop.Floor's; only the products differ."""

    def __init__(self, images, batch_rows, width, dtype, repeats):
        self.width = width  # before Floor.__init__, which builds and times the products
        super().__init__(images, batch_rows, dtype, repeats)

    def _products(self, rows):
        rng = np.random.default_rng(0)
        n_rows, n = self.images.shape
        m, k, dtype = self.width, N_CLASSES, self.dtype
        P = self.images[:rows].astype(dtype)
        W1 = np.asfortranarray(rng.normal(0, 0.05, (m, n)).astype(dtype))
        W2 = np.asfortranarray(rng.normal(0, 0.1, (k, m)).astype(dtype))
        H, Z, D2, D1 = (np.empty(shape, dtype) for shape in ((rows, m), (rows, k), (rows, k), (rows, m)))
        D2[:] = rng.normal(0, 0.1, (rows, k))
        gW1, gW2 = np.empty_like(W1), np.empty_like(W2)
        sizes = [rows] * (n_rows // rows) + ([n_rows % rows] if n_rows % rows else [])
        views = [(P[:s], H[:s], Z[:s], D2[:s], D1[:s]) for s in sizes]

        def products():
            for P_b, H_b, Z_b, D2_b, D1_b in views:
                np.matmul(P_b, W1.T, out=H_b)
                np.matmul(H_b, W2.T, out=Z_b)
                np.matmul(D2_b.T, H_b, out=gW2)
                np.matmul(D2_b, W2, out=D1_b)
                np.matmul(D1_b.T, P_b, out=gW1)

        return products

    def measure(self):
        """Seconds of the conversion pass plus the faster of the products' BLAS settings."""
        conversion, products = super().measure()
        return conversion + min(products.values())


def hidden_loop(images, labels, epochs, quick, width=None):
    """Epochs of the mlp variant's loop (its conf settings; ``width`` hidden units if given),
    float32, batch 256 and full, each after a sample of its floor."""
    settings = train_settings(VARIANT)
    fields = {**settings.model, **({"hidden": width} if width else {})}
    model = build(fields)
    results = []
    for batch_size in BATCH_SIZES:
        batch_rows = batch_size or len(images)
        floor = HiddenFloor(images, batch_rows, model.hidden, "float32", repeats=2 if quick else 3)
        init_rng, shuffle_rng = seeded_generators(settings.optim.seed)
        params = initial_params(model, settings.optim.init, settings.optim.init_scale, images.shape[1], "float32", init_rng)
        sgd = trainer(images, labels, params, model, settings.optim.lr, batch_rows, shuffle_rng, settings.divergence.factor)
        epoch_times, floors = timed_epochs(sgd, floor, epochs, f"{VARIANT}, batch {batch_rows}")
        results.append({
            "variant": VARIANT, "hidden": model.hidden, "dtype": "float32", "batch_size": batch_size or "full",
            "loop_threads": 1 if sgd.helper is None else 2, "epoch_seconds": spread(epoch_times),
            "samples_per_second": len(images) / statistics.median(epoch_times), "floor_seconds": spread(floors),
            "ratio": min(epoch_times) / min(floors),
        })
    return results


def hidden_memory(workspace, width=MEMORY_WIDTH, epochs=2):
    """Peak RSS (MB) of ``python -m pipeline.train model=mlp model.hidden=<width>`` on the
    benchmark rows, tracking off, and its wall time."""
    with tempfile.TemporaryDirectory(dir=workspace.root) as out:
        command = train_command(f"data.dir={workspace.data_dir()}", f"out_dir={Path(out)}", f"model={VARIANT}",
                                f"model.hidden={width}", f"optim.epochs={epochs}", "tracking.enabled=false")
        finished = run_command(command, workspace.root, workspace.env(), peak_rss=True)
    return {"command": f"python -m pipeline.train model={VARIANT} model.hidden={width} optim.epochs={epochs} tracking.enabled=false",
            "rows": len(workspace.images), "peak_rss_mb": finished.peak_rss / 1e6, "seconds": finished.seconds}
