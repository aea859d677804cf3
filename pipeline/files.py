"""Writing outputs so that an interrupted stage never leaves a half-written file, nor a set of
outputs half old and half new; file digests; a model's parameters as one file, and reading them
(or an older W.npy) back, checked."""

import hashlib
import io
import json
import math
import os
import secrets
import signal
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pipeline.constants import N_CLASSES, N_PIXELS

PARAMS_FILE = "params.npz"  # every parameter of a trained model, and its model fields
MODEL_KEY = "_model"  # the entry of PARAMS_FILE holding the model fields, as JSON text


@contextmanager
def atomic_write(path):
    """Yield a binary file that becomes ``path`` only if the block succeeds.

    It is a temporary file in the same folder (``.<name>.<random>.part``), fsynced and then
    renamed over ``path`` with os.replace, which is atomic: readers see the old file or the
    new one, never a half-written one. On any error the temporary file is removed.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with open(temporary, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# The folders whose set of outputs this process has written: what an interruption leaves.
WRITTEN_SETS = []


def write_set(folder, contents):
    """Write the files of ``contents`` (``{name: bytes, or a function writing into a binary
    file}``) into ``folder`` as one set: every file to a temporary first (fsynced), then all
    renamed into place, with SIGINT and SIGTERM held back until the last rename. A failure (a
    full disk) or an interruption leaves the previous set as it was, never some files old and
    some new; the temporary files are removed. An OSError names the output it was writing.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    temporaries = {}
    try:
        for name, content in contents.items():
            temporaries[name] = folder / f".{name}.{secrets.token_hex(4)}.part"
            try:
                with open(temporaries[name], "xb") as f:
                    content(f) if callable(content) else f.write(content)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as error:  # a write's error names no file
                raise OSError(error.errno, error.strerror, str(folder / name)) from error
        with _signals_held():
            for name, temporary in temporaries.items():
                os.replace(temporary, folder / name)
            WRITTEN_SETS.append(folder)
    except BaseException:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        raise


@contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait until the block is over (then interrupt as usual)."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class WeightsError(ValueError):
    """A W.npy that is not a trained W; bad input, exit status 2."""

    exit_status = 2


def read_weights(path):
    """The trained W stored at ``path``: a finite float array (N_CLASSES, N_PIXELS).

    WeightsError naming the file for anything else: not a .npy, pickled objects, integers or
    complex numbers (the model's arithmetic would cast or fail), another shape, NaN or infinity
    (every score NaN: a silent 10% accuracy).
    """
    try:
        W = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as error:
        raise WeightsError(f"{path}: not a numpy array of numbers ({error})") from None
    if not isinstance(W, np.ndarray) or W.dtype.kind != "f":
        raise WeightsError(f"{path}: holds {getattr(W, 'dtype', type(W).__name__)} values, expected floats (the train stage writes float32 or float64)")
    if W.shape != (N_CLASSES, N_PIXELS):
        raise WeightsError(f"{path}: has shape {W.shape}, expected ({N_CLASSES}, {N_PIXELS}): one row of weights per digit")
    if not np.isfinite(W).all():
        raise WeightsError(f"{path}: {np.count_nonzero(~np.isfinite(W)):,} weights are NaN or infinite (a diverged training?)")
    return W


def params_writer(params, model_fields):
    """A function writing ``params`` (name -> array) and ``model_fields`` (conf's model.*) into a
    binary file as one ``.npz``, byte for byte the same for the same arrays (no zip timestamps):
    ``np.load`` reads it, the fields under MODEL_KEY. For write_set."""
    entries = {**params, MODEL_KEY: np.array(json.dumps(dict(model_fields), sort_keys=True))}

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
            for name, array in entries.items():
                content = io.BytesIO()
                np.lib.format.write_array(content, np.ascontiguousarray(array), allow_pickle=False)
                archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), content.getvalue())

    return write


def write_params(path, params, model_fields):
    """``params_writer``'s file at ``path``, atomically."""
    with atomic_write(path) as f:
        params_writer(params, model_fields)(f)


def read_params(path):
    """``(params, model fields)`` from a file of ``params_writer`` (fields None if it has none).

    WeightsError naming the file for anything but finite float arrays: not an .npz, pickled
    objects, integers, NaN or infinity (a diverged training). Their shapes are the model's to
    check (the caller knows it).
    """
    try:
        with np.load(path, allow_pickle=False) as stored:
            params = {name: stored[name] for name in stored.files if name != MODEL_KEY}
            fields = json.loads(stored[MODEL_KEY].item()) if MODEL_KEY in stored.files else None
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, AttributeError) as error:
        raise WeightsError(f"{path}: not a file of parameters ({error})") from None
    if not params:
        raise WeightsError(f"{path}: holds no parameters")
    for name, P in params.items():
        if P.dtype.kind != "f":
            raise WeightsError(f"{path}: {name} holds {P.dtype} values, expected floats (the train stage writes float32 or float64)")
        if not np.isfinite(P).all():
            raise WeightsError(f"{path}: {np.count_nonzero(~np.isfinite(P)):,} values of {name} are NaN or infinite (a diverged training?)")
    return params, fields


def json_bytes(value):
    """Strict JSON (non-finite numbers, which JSON cannot hold, become null), indented."""

    def finite(v):
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return (json.dumps(finite(value), indent=2, allow_nan=False) + "\n").encode()


def file_sha256(path):
    """The SHA-256 of a file's bytes, in hex (``path``: a Path or an importlib resource)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
