"""Writing outputs so that an interrupted stage never leaves a half-written file; file digests."""

import hashlib
import json
import math
import os
import secrets
from contextlib import contextmanager
from pathlib import Path


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
