"""Writing outputs so that an interrupted stage never leaves a half-written file; file digests;
a model's parameters as one file."""

import hashlib
import io
import json
import math
import os
import secrets
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

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


def write_params(path, params, model_fields):
    """``params`` (name -> array) and ``model_fields`` (conf's model.*) as one ``.npz`` file,
    atomically, byte for byte the same for the same arrays (no zip timestamps): ``np.load`` reads
    it, the fields under MODEL_KEY."""
    entries = {**params, MODEL_KEY: np.array(json.dumps(dict(model_fields), sort_keys=True))}
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        for name, array in entries.items():
            content = io.BytesIO()
            np.lib.format.write_array(content, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), content.getvalue())


def read_params(path):
    """``(params, model fields)`` from a file of ``write_params`` (fields None if it has none)."""
    with np.load(path, allow_pickle=False) as stored:
        params = {name: stored[name] for name in stored.files if name != MODEL_KEY}
        fields = json.loads(stored[MODEL_KEY].item()) if MODEL_KEY in stored.files else None
    return params, fields
