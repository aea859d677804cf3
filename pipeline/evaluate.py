"""python -m pipeline.evaluate: the trained W on the test split, which training never touched.

    python -m pipeline.evaluate                  # W from results/softmax/, test split of data/mnist
    python -m pipeline.evaluate model=linear

The model is the one params.npz says it is (its model fields). Computes with pipeline.metrics
the test loss (the training loss), accuracy, per-class precision and recall and the confusion
matrix, and writes them into ``train_dir`` next to the parameters, as one set (all five, or none):

    test_metrics.json   test loss, accuracy and number of digits         (dvc metrics)
    per_class.csv       digit,precision,recall,support                   (dvc plots)
    confusion.csv       actual,predicted: one row per test digit         (dvc plots, confusion)
    confusion.png       the confusion matrix as a heatmap
    misclassified.png   the most confidently wrong test digits, true and predicted label

All of it goes into the MLflow run of the training that produced W (its id is in
mlflow_run.json), without changing that run's status; if the run is gone (a deleted database or
run), into a new run tagged ``trained_by_run`` with the old id: the test loss and accuracy, the
precision and recall per digit as one table (replaced when the run is evaluated again), the
test files as the run's testing dataset. It ends with one line: the variant, the test accuracy
and the link that opens the run. With ``tracking.register=true``, the run's model then becomes
a version of ``handgrad-<variant>`` in the Model Registry (pipeline.registry: the alias
``champion`` moves to it if its validation accuracy is the best).

Nothing is written before the MLflow store has answered (and the run is found or created).

Exit status: 0 evaluated; 1 no trained W, or no test data or data not matching its provenance.json,
or an MLflow store that does not answer or cannot be written, or an output that cannot be written,
or the registry refused the model (the outputs are written by then); 2 invalid config, or a
params.npz that is not the finite float parameters of its model; 130 interrupted (Ctrl-C), 143
terminated (SIGTERM), with the outputs as they were.
"""

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from pipeline import tracking
from pipeline.app import stage_app
from pipeline.config import ConfigError, EvaluateConfig, validated
from pipeline.constants import scaled
from pipeline.data import load_split, read_provenance
from pipeline.constants import N_CLASSES, N_PIXELS
from pipeline.files import PARAMS_FILE, WeightsError, json_bytes, read_params, write_set
from pipeline.idx import IDXError
from pipeline.metrics import evaluate, most_confidently_wrong
from pipeline.evaluation_pictures import confusion_picture, mistakes_picture, png_writer
from pipeline.tracking import schema
from pipeline.variants import build

OUTPUT_FILES = ("test_metrics.json", "per_class.csv", "confusion.csv", "confusion.png", "misclassified.png")
MLFLOW_ARTIFACT_DIR = schema.EVALUATION_DIR


@stage_app("evaluate")
def main(cfg):
    status = run(cfg)
    if status:
        sys.exit(status)


def run(cfg, quiet=False):
    """The whole stage for a composed config; returns the exit status (see the module docstring).
    ``quiet``: no final line (a sweep prints its own, one per job)."""
    try:
        validated(cfg, EvaluateConfig)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    variant, train_dir = cfg.model.name, Path(cfg.train_dir)
    try:
        params, model, trained_run = load_training(train_dir, variant, cfg.model)
        images, labels, sha256 = load_split(cfg.data.dir, "test")
        provenance = read_provenance(cfg.data.dir)
    except WeightsError as error:
        print(f"cannot evaluate: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IDXError, ValueError) as error:
        print(f"cannot evaluate: {error}", file=sys.stderr)
        return 1

    Z, Y_hat = model.predict(params, scaled(images, params[model.WEIGHTS[0]].dtype))
    result = evaluate(Y_hat, labels, model, logits=Z)
    mistakes = most_confidently_wrong(Y_hat, labels, cfg.mistakes_shown)
    predicted = Y_hat.argmax(axis=1)
    name = f"{variant}, trained in {train_dir}"
    confusion_image = confusion_picture(result.confusion, f"{variant}: test accuracy {result.accuracy:.1%} on {len(labels):,} digits")
    mistakes_image = mistakes_picture(
        images[mistakes], labels[mistakes], predicted[mistakes],
        Y_hat[mistakes, predicted[mistakes]] - Y_hat[mistakes, labels[mistakes]],
        f"{variant}: the {len(mistakes)} most confidently wrong of {np.count_nonzero(predicted != labels):,} mistakes",
    )

    settings = tracking.settings(OmegaConf.to_container(cfg, resolve=True), schema.EVALUATE_SETTINGS)
    # The outputs only once the run is open: a store that does not answer or takes no writes
    # fails the stage (stage_app: one line, exit 1) with nothing written.
    with tracking.continue_run(cfg.tracking, trained_run, f"{variant} test evaluation", settings, {schema.VARIANT: variant}) as mlflow_run:
        write_outputs(train_dir, result, labels, predicted, confusion_image, mistakes_image)
        mlflow_run.log_metrics({schema.TEST_LOSS: result.loss, schema.TEST_ACCURACY: result.accuracy}, step=0)
        mlflow_run.log_table(per_digit_table(result), schema.PER_DIGIT_TABLE)
        tracking.log_data(mlflow_run, provenance, sha256, cfg.data.dir, schema.TESTING, {"test_rows": len(labels)})
        tracking.log_files(mlflow_run, [train_dir / file_name for file_name in OUTPUT_FILES], MLFLOW_ARTIFACT_DIR)
    if not quiet:
        print(summary(name, result, mlflow_run))
    if cfg.tracking.register and mlflow_run.enabled:
        return register(mlflow_run)
    return 0


def register(mlflow_run):
    """The run's model as a version of ``handgrad-<variant>``, said in a line; the exit status."""
    from mlflow.exceptions import MlflowException

    from pipeline.registry import register_best

    try:
        registrations = register_best(mlflow_run.tracking_uri, run_ids=[mlflow_run.run_id])
    except MlflowException as error:
        print(f"cannot register run {mlflow_run.run_id}: {error.message.splitlines()[0]}", file=sys.stderr)
        return 1
    for registration in registrations:
        print(f"registered {registration}")
    if not registrations:
        print(f"not registered: run {mlflow_run.run_id} has no logged model (trained with tracking off, diverged, or gone)")
    return 0


def load_training(train_dir, variant, model_fields):
    """The trained parameters, the model they are for (params.npz's own model fields, else
    ``model_fields``) and the training's MLflow run record (run_id may be None: not tracked).
    WeightsError for parameters that are not that model's (files.read_params checks the rest)."""
    weights, record = train_dir / PARAMS_FILE, train_dir / "mlflow_run.json"
    for path in (weights, record):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run the train stage first (python -m pipeline.train model={variant})")
    params, fields = read_params(weights)
    try:
        model = build(fields or model_fields)
    except (ValueError, KeyError) as error:
        raise WeightsError(f"{weights}: its model fields describe no model ({error})") from None
    shapes, expected = {key: P.shape for key, P in params.items()}, model.parameter_shapes(N_PIXELS, N_CLASSES)
    if shapes != expected:
        raise WeightsError(f"{weights}: holds {shapes}, expected {expected} for the model {model.name}")
    return params, model, json.loads(record.read_text())


def per_class_rows(result):
    """One dict per digit; an undefined ratio (NaN) is left empty."""
    def cell(value):
        return "" if np.isnan(value) else f"{value:.6g}"

    return [
        {"digit": digit, "precision": cell(p), "recall": cell(r), "support": int(s)}
        for digit, (p, r, s) in enumerate(zip(result.precision, result.recall, result.support))
    ]


def csv_bytes(rows, columns):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def write_outputs(out_dir, result, labels, predicted, confusion_image, mistakes_image):
    """The five output files, as one set: all of them or, on a failure, none (files.write_set)."""
    pairs = np.column_stack([labels, predicted])
    write_set(out_dir, {
        "test_metrics.json": json_bytes({"test": {"loss": result.loss, "accuracy": result.accuracy, "digits": len(labels)}}),
        "per_class.csv": csv_bytes(per_class_rows(result), ("digit", "precision", "recall", "support")),
        "confusion.csv": b"actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in pairs).encode(),
        "confusion.png": png_writer(confusion_image),
        "misclassified.png": png_writer(mistakes_image),
    })


def per_digit_table(result):
    """Precision, recall and support per digit as table columns (schema.PER_DIGIT_COLUMNS); an
    undefined ratio (NaN) is None."""
    def ratios(values):
        return [None if np.isnan(value) else float(value) for value in values]

    columns = (list(range(len(result.support))), ratios(result.precision), ratios(result.recall), [int(s) for s in result.support])
    return dict(zip(schema.PER_DIGIT_COLUMNS, columns))


def summary(name, result, mlflow_run):
    """The one line printed at the end: what was evaluated, its test accuracy, the link to its run."""
    return f"{name}: test accuracy {result.accuracy:.1%} on {result.confusion.sum():,} digits; {tracking.where_logged(mlflow_run)}"


if __name__ == "__main__":
    main()
