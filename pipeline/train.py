"""python -m pipeline.train: minibatch SGD with the hand-derived gradient, tracked in MLflow.

Reads the training split of ``data.dir`` (never the test split), holds out the validation rows,
trains W with pipeline.sgd, records the run through pipeline.tracking, logs the trained model
into it as an MLflow Model (pipeline.served_model; none for a diverged run), and writes, at
stable paths in ``out_dir`` and only once training is over and its model logged (as one set: all
five, or none):

    params.npz       the final parameters (W, b; W1, b1, W2, b2) and the model's fields
    metrics.json     final train and validation loss and accuracy, epochs run, divergence
    history.csv      one row per epoch, for ``dvc plots``
    timing.json      seconds spent training and in all (not a DVC metric: it differs every run)
    mlflow_run.json  run id, experiment id and tracking URI, for the evaluate stage

It ends with one line: the run, its validation accuracy (or where it diverged) and the link that
opens its MLflow run; in a sweep's job nothing (the sweep prints one line per job).

Exit status: 0 trained, or diverged (a result, recorded as such); 1 diverged with
``divergence.fatal=true``, or no data, or data not matching its provenance.json, or an MLflow
store that does not answer or cannot be written (checked before training), or an output that
cannot be written (full disk); 2 invalid config; 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM): the previous outputs untouched and the MLflow run KILLED.
"""

import csv
import functools
import io
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf
from tqdm import tqdm

from pipeline import tracking
from pipeline.app import stage_app
from pipeline.config import ConfigError, TrainConfig, validated
from pipeline.data import load_split, read_provenance, train_val_split
from pipeline.files import PARAMS_FILE, json_bytes, params_writer, write_set
from pipeline.idx import IDXError
from pipeline.least_squares import linear_optimum
from pipeline.mlp_sgd import initial_params, trainer
from pipeline.initial import seeded_generators
from pipeline.sgd import loss_and_accuracy
from pipeline.tracking import schema
from pipeline.tracking import training as training_run
from pipeline.variants import build, plain

OUTPUT_FILES = (PARAMS_FILE, "metrics.json", "history.csv", "timing.json", "mlflow_run.json")
HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")
PROGRESS_UPDATES_PER_EPOCH = 10
EXAMPLE_DIGITS = 3  # validation digits stored as the logged model's input example


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, 784)
    labels: np.ndarray  # uint8 (N,)


@dataclass
class Training:
    """What the epochs produced, for the outputs and the final log."""

    history: list = field(default_factory=list)  # one dict per completed epoch, HISTORY_COLUMNS
    logged_steps: list = field(default_factory=list)  # global steps of the logged train/loss points
    logged_losses: list = field(default_factory=list)
    steps: int = 0  # updates applied
    diverged_at: int | None = None  # global step whose loss blew up (its update not applied)
    diverged_loss: float | None = None  # that loss
    seconds: float = 0.0


@stage_app("train")
def main(cfg):
    status = run(cfg)  # Ctrl-C and SIGTERM: stage_app's message and exit status
    if status:  # a clean return lets a multirun go on to its next job
        sys.exit(status)
    # What a sweeper searching for the best settings maximises (conf/experiment/lr_search.yaml).
    return json.loads((Path(cfg.out_dir) / "metrics.json").read_text())["val"]["accuracy"]


def run(cfg):
    """The whole stage for a composed config; returns the exit status (see the module docstring)."""
    started = time.perf_counter()
    try:
        validated(cfg, TrainConfig)
        model = built(cfg.model)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        provenance = read_provenance(cfg.data.dir)
        train, val, sha256 = load_training_data(cfg.data)
    except (FileNotFoundError, IDXError) as error:
        print(f"cannot train: {error}", file=sys.stderr)
        return 1

    optim = cfg.optim
    init_rng, shuffle_rng = seeded_generators(optim.seed)
    initial = initial_params(model, optim.init, optim.init_scale, train.images.shape[1], cfg.dtype, init_rng)
    sgd = trainer(train.images, train.labels, initial, model, optim.lr, optim.batch_size, shuffle_rng, cfg.divergence.factor, optim.weight_decay)
    optimum = linear_optimum(train.images, train.labels, model, weight_decay=optim.weight_decay) if model.is_least_squares else None

    name, sweep_job = run_name(cfg), is_sweep_job()
    params = tracking.settings(OmegaConf.to_container(cfg, resolve=True), schema.TRAIN_SETTINGS)
    params.update({schema.TRAIN_ROWS: len(train.labels), schema.VAL_ROWS: len(val.labels)})
    tags = {**run_tags(cfg, provenance, sha256), schema.OUT_DIR: cfg.out_dir}
    with tracking.start_run(cfg.tracking, name, params, tags) as mlflow_run:
        mlflow_run.log_dict(provenance, schema.PROVENANCE)
        tracking.log_data(mlflow_run, provenance, sha256, cfg.data.dir, schema.TRAINING,
                          {"train_rows": len(train.labels), "validation_rows": len(val.labels)})
        if optimum is not None:
            mlflow_run.log_metrics({schema.MAX_STABLE_LR: optimum.max_stable_lr, schema.LEAST_SQUARES_LOSS: optimum.loss}, step=0)

        training = fit(sgd, val, optim.epochs, cfg.tracking, mlflow_run, name, optim.weight_decay, quiet=sweep_job)
        metrics = final_metrics(sgd, train, val, training, optim.weight_decay)
        training_run.log_outcome(mlflow_run, sgd.params, training, metrics, optimum, name, sgd.steps_per_epoch, picture)
        training_run.log_model(mlflow_run, sgd.params, plain(cfg.model), val.images[:EXAMPLE_DIGITS], training)
        if optimum is not None:  # in MLflow since the start, as max_stable_lr and least_squares_loss
            metrics["linear"] = {"max_stable_lr": optimum.max_stable_lr, "least_squares_loss": optimum.loss}
        record = {"run_id": mlflow_run.run_id, "experiment_id": mlflow_run.experiment_id, "tracking_uri": mlflow_run.tracking_uri}
        timing = {"seconds": {"train": training.seconds, "total": time.perf_counter() - started}}
        mlflow_run.wait()  # a failed MLflow write fails the stage before any output is replaced
        write_outputs(Path(cfg.out_dir), sgd.params, plain(cfg.model), metrics, training.history, timing, record)

    if not sweep_job:
        print(summary(name, metrics, training, mlflow_run))
    return 1 if metrics["diverged"] and cfg.divergence.fatal else 0


def is_sweep_job():
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def built(model_fields):
    """The table entry of conf's model fields; ConfigError for a combination the pieces refuse."""
    try:
        return build(model_fields)
    except ValueError as error:
        raise ConfigError(f"invalid config: {error}") from None


def load_training_data(data):
    """The training split's (train, validation) parts, each a contiguous uint8 copy, and the files' SHA-256."""
    images, labels, sha256 = load_split(data.dir, "train")
    train_rows, val_rows = train_val_split(labels, data.val_fraction, data.split_seed)
    return Split(images[train_rows], labels[train_rows]), Split(images[val_rows], labels[val_rows]), sha256


def run_name(cfg):
    return f"{cfg.model.name} lr={cfg.optim.lr:g} bs={cfg.optim.batch_size}"


def run_tags(cfg, provenance, sha256):
    """Variant, code version, data provenance and the SHA-256 of the files read, and where the run
    came from (sweep, DVC)."""
    tags = {schema.VARIANT: cfg.model.name, **tracking.git_tags(), schema.DATA_SOURCE: provenance.get("source", "unknown")}
    tags.update({schema.DATA_SHA256_PREFIX + name: digest for name, digest in sha256.items()})
    if is_sweep_job():
        hydra_cfg = HydraConfig.get()
        tags.update({schema.HYDRA_SWEEP_DIR: hydra_cfg.sweep.dir, schema.HYDRA_JOB_NUM: hydra_cfg.job.num, **tracking.sweep_job_tags()})
    if os.environ.get("DVC_EXP_NAME"):
        tags[schema.DVC_EXP_NAME] = os.environ["DVC_EXP_NAME"]
    return tags


def fit(sgd, val, epochs, tracking_cfg, mlflow_run, name, weight_decay=0.0, quiet=False):
    """Run the epochs, logging as it goes; stops early if the loss diverges. The weights'
    snapshots start after the first epoch: the initial W (zeros by default) is a blank picture."""
    training = Training()
    started = time.perf_counter()
    steps_per_epoch = sgd.steps_per_epoch
    # tqdm's default lock is a multiprocessing semaphore: a sweep's worker killed on Ctrl-C leaks
    # it (a "leaked semaphore" warning). Bars in separate processes share no lock anyway.
    tqdm.set_lock(threading.RLock())
    with tqdm(total=epochs * steps_per_epoch, desc=name, unit="step", disable=True if quiet else None, leave=False) as bar:
        on_steps = None if bar.disable else bar.update
        for epoch in range(1, epochs + 1):
            epoch_started = time.perf_counter()
            result = sgd.run_epoch(on_steps, report_every=max(1, steps_per_epoch // PROGRESS_UPDATES_PER_EPOCH))
            steps, losses = window_means(result.step_losses, tracking_cfg.log_every, first_step=training.steps)
            training.logged_steps += steps
            training.logged_losses += losses
            mlflow_run.log_series(schema.TRAIN_LOSS, steps, losses)
            if result.diverged:
                training.diverged_at = training.steps + len(result.step_losses) - 1
                training.diverged_loss = float(result.step_losses[-1])
                training.steps = training.diverged_at
                break
            training.steps += len(result.step_losses)
            val_loss, val_accuracy = loss_and_accuracy(sgd.params, val.images, val.labels, sgd.variant)
            row = {"epoch": epoch, "train_loss": result.loss, "train_accuracy": result.accuracy,
                   "val_loss": val_loss, "val_accuracy": val_accuracy, "seconds": time.perf_counter() - epoch_started}
            training.history.append(row)
            mlflow_run.log_metrics(
                {schema.TRAIN_LOSS_EPOCH: result.loss, schema.TRAIN_ACCURACY: result.accuracy, schema.VAL_LOSS: val_loss,
                 schema.VAL_ACCURACY: val_accuracy, schema.EPOCH_SECONDS: row["seconds"]},
                step=epoch,
            )
            if weight_decay:  # the penalty λ||W||², beside the data term loss/train
                mlflow_run.log_metrics({schema.TRAIN_PENALTY: sgd.variant.penalty(sgd.params, weight_decay)}, step=epoch)
            if tracking_cfg.snapshot_every and epoch % tracking_cfg.snapshot_every == 0 and epoch < epochs:
                mlflow_run.log_snapshot(sgd.params, epoch, functools.partial(picture, "parameter_images", title=f"W after epoch {epoch}"))
            bar.set_postfix(loss=f"{result.loss:.4f}", val_acc=f"{val_accuracy:.3f}", refresh=False)
    training.seconds = time.perf_counter() - started
    return training


def window_means(step_losses, window, first_step):
    """Mean loss of each run of ``window`` steps, at the global step of the run's last batch."""
    starts = np.arange(0, len(step_losses), window)
    counts = np.diff(np.append(starts, len(step_losses)))
    means = np.add.reduceat(step_losses, starts) / counts
    return (first_step + starts + counts - 1).tolist(), means.tolist()


def final_metrics(sgd, train, val, training, weight_decay=0.0):
    """metrics.json: exact losses and accuracies of the final W, and how training went. With
    weight decay, ``train.penalty`` (λ||W||²) beside the data term ``train.loss``."""
    train_loss, train_accuracy = loss_and_accuracy(sgd.params, train.images, train.labels, sgd.variant)
    val_loss, val_accuracy = loss_and_accuracy(sgd.params, val.images, val.labels, sgd.variant)
    metrics = {
        "train": {"loss": train_loss, "accuracy": train_accuracy},
        "val": {"loss": val_loss, "accuracy": val_accuracy},
        "epochs": len(training.history),
        "steps": training.steps,
        "diverged": training.diverged_at is not None,
        "diverged_at_step": training.diverged_at,
    }
    if weight_decay:
        metrics["train"]["penalty"] = sgd.variant.penalty(sgd.params, weight_decay)
    return metrics


def picture(name, *args, **kwargs):
    """pipeline.pictures' ``name`` (parameter_images, weights_picture, loss_curve_picture) drawn with
    these arguments, imported only when a tracked run draws it."""
    from pipeline import pictures

    return getattr(pictures, name)(*args, **kwargs)


def write_outputs(out_dir, params, model_fields, metrics, history, timing, record):
    """The five output files, as one set: all of them or, on a failure, none (files.write_set)."""
    history_text = io.StringIO()
    writer = csv.DictWriter(history_text, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_set(out_dir, {
        PARAMS_FILE: params_writer(params, model_fields),
        "metrics.json": json_bytes(metrics),
        "history.csv": history_text.getvalue().encode(),
        "timing.json": json_bytes(timing),
        "mlflow_run.json": json_bytes(record),
    })


def summary(name, metrics, training, mlflow_run):
    """The one line printed at the end: the run, how it went, the link to it."""
    if training.diverged_at is not None:
        outcome = f"DIVERGED at step {training.diverged_at:,} (batch loss {training.diverged_loss:.3g})"
    else:
        outcome = f"val accuracy {metrics['val']['accuracy']:.1%} after {metrics['epochs']} epochs"
    return f"{name}: {outcome}; {tracking.where_logged(mlflow_run)}"


if __name__ == "__main__":
    main()
