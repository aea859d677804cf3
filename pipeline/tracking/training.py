"""What a training run records once its epochs are over: how it ended (diverged or not, the
training time), the final weights (a snapshot, W_final.png), the loss curve, and the trained model.

The stage hands over the function that draws its pictures (``draw(name, *args, **kwargs)``,
pipeline.pictures' ``name``): nothing here draws. The pictures are drawn, and the model logged,
on the run's writer thread, and only for a tracked run: training neither waits for them nor,
with tracking off, loads Pillow or MLflow's model code at all.
"""

import functools

import numpy as np

from pipeline.tracking import schema


def log_outcome(mlflow_run, params, training, metrics, optimum, name, steps_per_epoch, draw):
    """Whether it diverged (then the run ends FAILED, named "diverged: ..."), the training time,
    the final W (a snapshot, and W_final.png) and the loss curve.

    ``params``: the final parameters; ``training``: the train stage's Training (history, logged
    per-step losses, steps, divergence, seconds); ``metrics``: its metrics.json; ``optimum``: the
    least-squares floor (linear variant) or None.

    A diverged run's curves end with a point for the W it stopped with (the last before the loss
    blew up, the W evaluated and saved), at the epoch it stopped in: a curve's last point is
    always the final W's.
    """
    diverged = training.diverged_at is not None
    stopped_in = len(training.history) + diverged  # the epoch it stopped in
    mlflow_run.log_metrics({schema.TRAIN_SECONDS: training.seconds}, step=0)
    tags = {schema.DIVERGED: str(diverged).lower()}
    if diverged:
        mlflow_run.log_metrics({schema.TRAIN_LOSS_EPOCH: metrics["train"]["loss"], schema.TRAIN_ACCURACY: metrics["train"]["accuracy"],
                                schema.VAL_LOSS: metrics["val"]["loss"], schema.VAL_ACCURACY: metrics["val"]["accuracy"]}, step=stopped_in)
        tags[schema.DIVERGED_AT_STEP] = training.diverged_at
        mlflow_run.end_status = "FAILED"
        mlflow_run.rename(schema.DIVERGED_NAME_PREFIX + name)
    mlflow_run.set_tags(tags)
    mlflow_run.log_snapshot(params, stopped_in, functools.partial(draw, "parameter_images", title=f"W after epoch {stopped_in}"))
    if "W" in params:  # the final W, larger
        mlflow_run.log_picture(functools.partial(draw, "weights_picture", params["W"], title=f"{name}: the final W, epoch {stopped_in}",
                                                 zoom=6), schema.WEIGHTS_FINAL_PICTURE)
    curve = {"history": training.history, "step_loss_steps": training.logged_steps, "step_losses": training.logged_losses,
             "steps_per_epoch": steps_per_epoch, "title": name,
             "floor": optimum.loss if optimum else None, "diverged_at": training.diverged_at}
    mlflow_run.log_picture(functools.partial(draw, "loss_curve_picture", **curve), schema.LOSS_CURVE)


def log_model(mlflow_run, params, model_fields, example, training):
    """The trained model as the run's MLflow Model (pipeline.served_model), queued on the run's
    writer thread after the final metrics, which are linked to it; ``example``: a few validation
    digits, its input example. The stage waits for MLflow's writes before writing its outputs,
    so a model that fails to log fails the run before any output is written. Nothing for a
    diverged training: it has nothing worth serving."""
    if training.diverged_at is not None:
        return
    mlflow_run.flush()
    # C order, as params.npz is written: the products, and so the scores, are then its to the last bit.
    params = {name: np.ascontiguousarray(value) for name, value in params.items()}
    mlflow_run.log_model(logged_model, params, model_fields, example,
                         step=len(training.history))  # the last epoch: its curves' points are the model's


def logged_model(run_id, *args, **kwargs):
    """pipeline.served_model.log_model's URI of the model logged into run ``run_id``."""
    from pipeline.served_model import log_model

    return log_model(run_id, *args, **kwargs)
