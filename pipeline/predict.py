"""python -m pipeline.predict: what a trained model says about pictures of digits.

    python -m pipeline.predict images=tests/digits                        # W of results/softmax/
    python -m pipeline.predict images=tests/digits trained=results/linear
    python -m pipeline.predict images=my_seven.png trained=models:/handgrad-softmax@champion
    python -m pipeline.predict images=data/mnist/t10k-images-idx3-ubyte.gz trained=<run id>

``images``: a file, a folder (its pictures, IDX and .npy files) or a glob pattern, or a list of
them (``'images=[a.png,b.jpg]'``). Pictures are made MNIST-like first (pipeline.digits: cropped,
scaled into 20x20, centred by mass); IDX files and .npy arrays are MNIST inputs already.
``trained``: a folder the train stage wrote (params.npz, which names its model; an older
folder's W.npy is taken to be of the variant its name, or ``variant=...``, says), an MLflow run id (the model logged with that run), or an MLflow model URI
(``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``models:/<model id>``, ``runs:/...``)
looked up in ``tracking.uri``. Either way the prediction is the project's own forward pass.

Prints one line per image: its name, the predicted digit, and the ``top`` highest scores
(probabilities for softmax, raw scores ``Wx`` for linear). Nothing is written.

Exit status: 0 every image classified; 2 invalid config, an unreadable or inkless image, or a
model that cannot be found (the message says which and where it looked).
"""

import glob
import os
import re
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from pipeline import pixel_scores, tracking
from pipeline.app import stage_app
from pipeline.config import ConfigError, PredictConfig, validated
from pipeline.digits import DigitError, read_digits
from pipeline.files import PARAMS_FILE, WeightsError, read_params, read_weights
from pipeline.model import VARIANTS
from pipeline.tracking import schema

# What a folder's files are taken to be images by; a file named explicitly may be anything.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".npy", ".gz", ".idx"}
RUN_ID = re.compile(r"[0-9a-f]{32}")
PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class ModelNotFound(LookupError):
    pass


@stage_app("predict")
def main(cfg):
    status = run(cfg)
    if status:
        sys.exit(status)


def run(cfg):
    """The whole command for a composed config; returns the exit status (see the module docstring)."""
    try:
        if OmegaConf.is_missing(cfg, "images"):  # the one setting conf/ leaves to the user
            raise ConfigError("images=???: name the pictures to classify, e.g. images=tests/digits")
        validated(cfg, PredictConfig)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        names, images = read_all(image_files(cfg.images))
        predict, description = load_predictor(cfg.trained, cfg.variant, cfg.tracking)
    except (DigitError, ModelNotFound) as error:
        print(f"cannot predict: {error}", file=sys.stderr)
        return 2
    S = predict(images.reshape(len(images), -1))
    print(f"{len(names):,} images, {description}")
    for name, row in zip(names, S):
        print(line(name, row, cfg.top))
    return 0


def image_files(spec):
    """The files ``images=`` names, in order: files as given, folders' image files and globs'
    matches sorted. DigitError for a folder or pattern with nothing in it."""
    files = []
    for entry in [spec] if isinstance(spec, str) else list(spec):
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif glob.has_magic(str(entry)):
            found = sorted(Path(p) for p in glob.glob(str(entry)) if Path(p).is_file())
        else:
            found = [path]
        if not found:
            raise DigitError(f"{entry}: no image files there ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += found
    return files


def read_all(files):
    """Names (``file``, or ``file[i]`` for files of several images) and uint8 images (N, 28, 28)."""
    names, images = [], []
    for path in files:
        digits = read_digits(path)
        names += [str(path)] if len(digits) == 1 else [f"{path}[{i}]" for i in range(len(digits))]
        images.append(digits)
    return names, np.concatenate(images)


def load_predictor(trained, variant, tracking_cfg):
    """``(pixels (B, 784) -> scores (B, 10), description)`` for what ``trained=`` names."""
    folder = Path(trained)
    if folder.is_dir():
        return folder_predictor(folder, variant)
    if RUN_ID.fullmatch(trained):
        uri = f"runs:/{trained}/{schema.LOGGED_MODEL}"
    elif ":/" in trained:
        uri = trained
    else:
        raise ModelNotFound(f"trained={trained}: no such folder, and neither a run id nor a model URI (models:/<name>@<alias>)")
    store = tracking.resolve_uri(tracking_cfg.uri)
    model = load_pyfunc(uri, store)
    return (lambda pixels: model.predict(pixels.astype(pixel_scores.INPUT_DTYPE))["scores"]), f"model {uri} from {store}"


def folder_predictor(folder, variant):
    """The model of a folder the train stage wrote: params.npz and the model fields in it; or an
    older folder's W.npy, of the variant ``variant`` or the folder's name."""
    weights = folder / PARAMS_FILE
    try:
        if weights.is_file():
            params, fields = read_params(weights)
            model = fields or variant or folder.name
        else:
            weights = folder / "W.npy"
            if not weights.is_file():
                raise ModelNotFound(f"{folder / PARAMS_FILE} not found: train first (python -m pipeline.train), or name a run or model")
            params, model = {"W": read_weights(weights)}, variant or folder.name
    except WeightsError as error:
        raise ModelNotFound(str(error)) from None
    if not isinstance(model, dict) and model not in VARIANTS:
        raise ModelNotFound(f"{folder}: cannot tell its variant from the folder's name; add variant=<{'|'.join(VARIANTS)}>")
    name = pixel_scores.variant_name(model)
    return (lambda pixels: pixel_scores.scores(params, pixels, model)), f"{name} {', '.join(params)} from {weights}"


def load_pyfunc(uri, store):
    """The pyfunc model at ``uri`` in the store ``store``; ModelNotFound saying what is missing.
    A sqlite store that does not exist is not opened: MLflow would create it, to find nothing."""
    if (database := tracking.absent_database(store)) is not None:
        raise ModelNotFound(f"{uri}: no MLflow store at {database} (train with tracking on first, or point MLFLOW_TRACKING_URI at one)")
    tracking.import_mlflow(store)
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    progress_bar = os.environ.get(PROGRESS_BAR_VARIABLE)
    os.environ[PROGRESS_BAR_VARIABLE] = "false"  # a bar per file read, in the way of the answers
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as error:
        raise ModelNotFound(f"{uri}: {error.message.splitlines()[0]} (looked in {store})") from None
    except OSError as error:  # a run or model whose artifacts are gone
        raise ModelNotFound(f"{uri}: cannot read the model's files ({error}; store {store})") from None
    finally:
        if progress_bar is None:
            del os.environ[PROGRESS_BAR_VARIABLE]
        else:
            os.environ[PROGRESS_BAR_VARIABLE] = progress_bar


def line(name, scores, top):
    """``name: digit  (d: score, ...)`` with the ``top`` highest scores."""
    best = np.argsort(-scores, kind="stable")[:top]
    return f"{name}: {best[0]}  (" + ", ".join(f"{d}: {scores[d]:.3f}" for d in best) + ")"


if __name__ == "__main__":
    main()
