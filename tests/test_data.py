"""The dataset on disk: loading a split, the stratified split, the provenance record."""

import json

import numpy as np
import pytest

from pipeline.data import (
    PROVENANCE_FILE,
    TEST_FILES,
    TRAIN_FILES,
    class_counts,
    load_split,
    read_provenance,
    stratified_split,
    train_val_split,
)
from pipeline.idx import IDXError, write_idx


def write_split(folder, files, images, labels):
    images_name, labels_name = files
    write_idx(folder / images_name, images)
    write_idx(folder / labels_name, labels)


def test_load_split_gives_flat_uint8_images_without_copying(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 12, dtype=np.uint8)
    write_split(tmp_path, TRAIN_FILES, images, labels)
    write_split(tmp_path, TEST_FILES, images[:4], labels[:4])

    flat, read_labels = load_split(tmp_path, "train")
    assert flat.shape == (12, 784) and flat.dtype == np.uint8
    assert not flat.flags.owndata  # a reshaped view of the array read from disk
    np.testing.assert_array_equal(flat, images.reshape(12, 784))
    np.testing.assert_array_equal(read_labels, labels)
    np.testing.assert_array_equal(load_split(tmp_path, "test")[1], labels[:4])


def test_load_split_refuses_images_and_labels_of_different_lengths(tmp_path):
    write_split(tmp_path, TRAIN_FILES, np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8))
    images_path, labels_path = (tmp_path / name for name in TRAIN_FILES)
    with pytest.raises(IDXError, match=f"{images_path} holds 5 images but {labels_path} holds 4 labels"):
        load_split(tmp_path, "train")


def test_load_split_notices_files_swapped(tmp_path):
    images_name, labels_name = TRAIN_FILES
    write_idx(tmp_path / images_name, np.zeros(3, np.uint8))
    write_idx(tmp_path / labels_name, np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(IDXError, match=f"{tmp_path / images_name}: holds labels, expected images"):
        load_split(tmp_path, "train")


def test_load_split_names_the_allowed_splits(tmp_path):
    with pytest.raises(ValueError, match="split must be one of train, test, got 'val'"):
        load_split(tmp_path, "val")


def test_stratified_split_holds_out_the_fraction_of_every_class():
    labels = np.repeat(np.arange(10, dtype=np.uint8), [100, 50, 80, 80, 80, 80, 80, 80, 80, 90])
    kept, held_out = stratified_split(labels, 0.1, seed=3)
    assert class_counts(labels[held_out]) == [10, 5, 8, 8, 8, 8, 8, 8, 8, 9]
    assert np.array_equal(np.sort(np.concatenate([kept, held_out])), np.arange(len(labels)))
    assert np.all(np.diff(kept) > 0) and np.all(np.diff(held_out) > 0)


def test_stratified_split_shares_remainders_to_hold_out_exactly_the_rounded_fraction():
    labels = np.repeat(np.arange(3, dtype=np.uint8), [7, 7, 6])
    _, held_out = stratified_split(labels, 0.5, seed=0)
    # Quotas 3.5, 3.5, 3: the one row left over goes to the largest remainder, ties to the lower class.
    assert class_counts(labels[held_out])[:3] == [4, 3, 3]


def test_stratified_split_is_determined_by_its_seed():
    labels = np.random.default_rng(0).integers(0, 10, 1000).astype(np.uint8)
    first, second, other = (stratified_split(labels, 0.2, seed)[1] for seed in (7, 7, 8))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("fraction", [0.001, 0.999])
def test_stratified_split_refuses_an_empty_side(fraction):
    with pytest.raises(ValueError, match=f"fraction {fraction} of 100 rows leaves one side of the split empty"):
        stratified_split(np.arange(100) % 10, fraction, seed=0)


def test_train_val_split_is_the_stratified_split_of_the_training_labels():
    labels = np.arange(200, dtype=np.uint8) % 10
    train_idx, val_idx = train_val_split(labels, 0.1, seed=5)
    assert len(val_idx) == 20 and class_counts(labels[val_idx]) == [2] * 10
    np.testing.assert_array_equal(val_idx, stratified_split(labels, 0.1, 5)[1])
    np.testing.assert_array_equal(train_idx, stratified_split(labels, 0.1, 5)[0])


def test_read_provenance(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"provenance.json not found: run `python -m pipeline.download` first"):
        read_provenance(tmp_path)
    record = {"source": "packaged", "files": {"a": "0" * 64}}
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps(record))
    assert read_provenance(tmp_path) == record
