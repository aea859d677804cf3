"""The training loop (pipeline.sgd.SGD) against its floor, and the evaluate stage's computation."""

import statistics
import time

import numpy as np

from bench import EVALUATION_ROWS
from pipeline.model import VARIANTS
from bench.data import train_settings
from bench.measure import blas_threads, default_blas_threads, seconds, spread
from pipeline.constants import N_CLASSES
from pipeline.constants import scaled
from pipeline.metrics import evaluate
from pipeline.model import forward
from pipeline.initial import initial_weights, seeded_generators
from pipeline.sgd import SGD

DTYPES = ("float32", "float64")
BATCH_SIZES = (32, 256, None)  # None: full batch
# Rows per block when the floor converts all of X: blocks that stay in cache are the cheapest way
# (a float copy of all 60,000 rows would be written out to memory).
CONVERSION_ROWS = 1024
FULL_BATCH_CHUNKS = (64, 128, 256, 512, 1024, 2048)
BLAS_SPIN_SECONDS = 0.15


class Floor:
    """The work an epoch of ``batch_rows`` rows per step cannot avoid, timed on this machine.

    One pass converting all ``images`` to ``dtype``, in cache-resident blocks of CONVERSION_ROWS;
    and per batch the two products of the gradient on a cache-resident block of real rows,
    ``Z = P Wᵀ`` and ``Δᵀ P`` (W and the gradient column-major, as in the loop), summed over an
    epoch's batches. A full batch may be computed in chunks: the products are timed for each of
    FULL_BATCH_CHUNKS and the fastest chunk is used. Both with BLAS on one thread and on its
    default number of threads; ``measure`` times both.
    """

    THREADS = (1, None)  # None: BLAS's default

    def __init__(self, images, batch_rows, dtype, repeats):
        self.images, self.dtype = images, np.dtype(dtype)
        self.conversion_buffer = np.empty((CONVERSION_ROWS, images.shape[1]), self.dtype)
        candidates = [c for c in FULL_BATCH_CHUNKS if c < len(images)] if batch_rows >= len(images) else [batch_rows]
        self.rows, self.products = {}, {}
        for threads in self.THREADS:
            timings = {}
            for rows in candidates:
                products = self._products(rows)
                with blas_threads(threads):
                    products()
                    timings[rows] = min(seconds(products) for _ in range(repeats))
            self.rows[threads] = min(timings, key=timings.get)
            self.products[threads] = self._products(self.rows[threads])

    def _products(self, rows):
        """A function computing both products for each batch (or chunk) of ``rows`` of an epoch."""
        rng = np.random.default_rng(0)
        n_rows, n_inputs = self.images.shape
        pixels = self.images[:rows].astype(self.dtype)
        W = np.asfortranarray(rng.normal(0, 0.01, (N_CLASSES, n_inputs)).astype(self.dtype))
        Z = np.empty((rows, N_CLASSES), self.dtype)
        delta = rng.normal(0, 0.1, (rows, N_CLASSES)).astype(self.dtype)
        gradient = np.empty_like(W)
        sizes = [rows] * (n_rows // rows) + ([n_rows % rows] if n_rows % rows else [])
        views = [(pixels[:size], Z[:size], delta[:size]) for size in sizes]

        def products():
            for P, Z_b, delta_b in views:
                np.matmul(P, W.T, out=Z_b)
                np.matmul(delta_b.T, P, out=gradient)

        return products

    def convert(self):
        buffer, images = self.conversion_buffer, self.images
        for start in range(0, len(images), CONVERSION_ROWS):
            block = images[start : start + CONVERSION_ROWS]
            np.copyto(buffer[: len(block)], block)

    def measure(self):
        """Seconds of the conversion pass, and of the products for each BLAS thread setting.

        Ends with a pause (BLAS_SPIN_SECONDS) when BLAS runs on more than one thread: OpenBLAS's
        threads keep spinning for a while after a multithreaded product, on the core whatever is
        timed next would use. With one thread (OPENBLAS_NUM_THREADS=1, as the tests set it) there
        is no other thread to spin.
        """
        products = {}
        for threads in sorted(self.products, key=lambda t: t is not None):  # the default first
            with blas_threads(threads):
                products[threads] = seconds(self.products[threads])
        conversion = seconds(self.convert)
        if default_blas_threads() > 1:
            time.sleep(BLAS_SPIN_SECONDS)
        return conversion, products


def timed_epochs(sgd, floor, epochs, what):
    """A warm-up epoch of ``sgd``, then ``epochs`` timed ones, each after a sample of ``floor``
    (interleaved, so both see the same machine): (epoch seconds, floor samples)."""
    sgd.run_epoch()  # warm-up
    epoch_times, samples = [], []
    for _ in range(epochs):
        samples.append(floor.measure())
        started = time.perf_counter()
        epoch = sgd.run_epoch()
        epoch_times.append(time.perf_counter() - started)
        if epoch.diverged:
            raise RuntimeError(f"{what} diverged: its epochs would be cut short")
    return epoch_times, samples


def loop(images, labels, epochs, quick):
    """Each (dtype, batch size, variant): epochs of pipeline.sgd.SGD, each after a floor sample."""
    settings = {variant: train_settings(variant) for variant in VARIANTS}
    results = []
    for dtype in DTYPES:
        for batch_size in BATCH_SIZES:
            batch_rows = batch_size or len(images)
            floor = Floor(images, batch_rows, dtype, repeats=2 if quick else 3)
            for variant in VARIANTS:
                optim = settings[variant].optim
                init_rng, shuffle_rng = seeded_generators(optim.seed)
                W = initial_weights(optim.init, optim.init_scale, images.shape[1], np.dtype(dtype), init_rng)
                sgd = SGD(images, labels, W, variant, optim.lr, batch_rows, shuffle_rng, settings[variant].divergence.factor)
                epoch_times, samples = timed_epochs(sgd, floor, epochs, f"{variant}, batch {batch_rows}, {dtype}")
                conversions = [conversion for conversion, _ in samples]
                products = {threads: [p[threads] for _, p in samples] for threads in Floor.THREADS}
                floors = [conversion + min(p.values()) for conversion, p in samples]
                one_thread_floor = min(c + p for c, p in zip(conversions, products[1]))
                results.append({
                    "dtype": dtype,
                    "variant": variant,
                    "batch_size": batch_size or "full",
                    "lr": optim.lr,
                    "steps_per_epoch": sgd.steps_per_epoch,
                    "loop_threads": 1 if sgd.helper is None else 2,
                    "epoch_seconds": spread(epoch_times),
                    "samples_per_second": len(images) / statistics.median(epoch_times),
                    "floor_seconds": spread(floors),
                    "floor_conversion_seconds": spread(conversions),
                    "floor_products_seconds": {f"{threads or 'default'} BLAS threads": spread(p) for threads, p in products.items()},
                    "floor_rows_per_product": {f"{threads or 'default'} BLAS threads": rows for threads, rows in floor.rows.items()},
                    "ratio": min(epoch_times) / min(floors),
                    "ratio_to_one_thread_floor": min(epoch_times) / one_thread_floor,
                })
    return results


def evaluation(images, labels, repeats):
    """The evaluate stage's computation on its test rows: ``forward`` of the ``scaled`` pixels,
    then ``pipeline.metrics.evaluate`` (loss, accuracy, confusion matrix, precision, recall)."""
    images, labels = images[:EVALUATION_ROWS], labels[:EVALUATION_ROWS]
    W = np.random.default_rng(0).normal(0, 0.01, (N_CLASSES, images.shape[1])).astype(np.float32)
    results = []
    for variant in VARIANTS:

        def evaluate_rows():
            evaluate(forward(W, scaled(images, W.dtype), variant), labels, variant)

        evaluate_rows()
        times = [seconds(evaluate_rows) for _ in range(repeats)]
        results.append({"variant": variant, "rows": len(images), "seconds": spread(times), "rows_per_second": len(images) / statistics.median(times)})
    return results
