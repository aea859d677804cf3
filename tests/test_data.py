"""The dataset on disk: loading a split, the stratified split, the provenance record."""

import builtins
import gzip
import hashlib
import json
import re
import tracemalloc

import numpy as np
import pytest

from pipeline.data import (
    PROVENANCE_FILE,
    TEST_FILES,
    TRAIN_FILES,
    ProvenanceError,
    class_counts,
    load_split,
    read_provenance,
    stratified_split,
    train_val_split,
)
from pipeline.idx import IDXError, write_idx

RESTORE = "to restore it, run `dvc repro -f download` or `python -m pipeline.download`"


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_split(folder, files, images, labels):
    """Both files of a split, and provenance.json recording the SHA-256 of every data file there."""
    images_name, labels_name = files
    write_idx(folder / images_name, images)
    write_idx(folder / labels_name, labels)
    record_provenance(folder)


def record_provenance(folder):
    files = {path.name: sha256(path) for path in sorted(folder.glob("*.gz"))}
    (folder / PROVENANCE_FILE).write_text(json.dumps({"source": "test", "files": files}))


def test_load_split_gives_flat_uint8_images_without_copying(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 12, dtype=np.uint8)
    write_split(tmp_path, TRAIN_FILES, images, labels)
    write_split(tmp_path, TEST_FILES, images[:4], labels[:4])

    flat, read_labels, digests = load_split(tmp_path, "train")
    assert flat.shape == (12, 784) and flat.dtype == np.uint8
    assert not flat.flags.owndata  # a reshaped view of the array read from disk
    np.testing.assert_array_equal(flat, images.reshape(12, 784))
    np.testing.assert_array_equal(read_labels, labels)
    assert digests == {name: sha256(tmp_path / name) for name in TRAIN_FILES}
    np.testing.assert_array_equal(load_split(tmp_path, "test").labels, labels[:4])


def test_load_split_refuses_images_and_labels_of_different_lengths(tmp_path):
    write_split(tmp_path, TRAIN_FILES, np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8))
    images_path, labels_path = (tmp_path / name for name in TRAIN_FILES)
    with pytest.raises(IDXError, match=f"{images_path} holds 5 images but {labels_path} holds 4 labels"):
        load_split(tmp_path, "train")


def test_load_split_notices_files_swapped(tmp_path):
    images_name, labels_name = TRAIN_FILES
    write_idx(tmp_path / images_name, np.zeros(3, np.uint8))
    write_idx(tmp_path / labels_name, np.zeros((3, 28, 28), np.uint8))
    record_provenance(tmp_path)
    with pytest.raises(IDXError, match=f"{tmp_path / images_name}: holds labels, expected images"):
        load_split(tmp_path, "train")


def test_load_split_names_the_allowed_splits(tmp_path):
    with pytest.raises(ValueError, match="split must be one of train, test, got 'val'"):
        load_split(tmp_path, "val")


# --- checked against provenance.json -------------------------------------------------------


@pytest.fixture
def split_dir(tmp_path):
    """A training split of 30 digits with its provenance, as the download stage leaves it."""
    rng = np.random.default_rng(0)
    write_split(tmp_path, TRAIN_FILES, rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), np.arange(30, dtype=np.uint8) % 10)
    return tmp_path


def test_shuffled_labels_still_a_valid_file_are_refused_naming_the_file_and_the_fix(split_dir):
    labels_path = split_dir / TRAIN_FILES[1]
    recorded = sha256(labels_path)
    write_idx(labels_path, np.random.default_rng(1).permutation(np.arange(30, dtype=np.uint8) % 10))
    with pytest.raises(ProvenanceError) as refused:
        load_split(split_dir, "train")
    assert str(refused.value) == (
        f"{labels_path}: changed since the download stage wrote it (SHA-256 {sha256(labels_path)}, "
        f"provenance.json records {recorded}); {RESTORE}"
    )


def test_the_same_content_gzipped_with_another_header_is_a_mismatch(split_dir):
    labels_path = split_dir / TRAIN_FILES[1]
    content = gzip.decompress(labels_path.read_bytes())
    labels_path.write_bytes(gzip.compress(content, mtime=1))  # one byte of the header differs
    with pytest.raises(ProvenanceError, match=re.escape(f"{labels_path}: changed since the download stage wrote it")):
        load_split(split_dir, "train")


def test_a_damaged_file_is_reported_as_changed_with_the_fix_not_only_as_malformed(split_dir):
    images_path = split_dir / TRAIN_FILES[0]
    images_path.write_bytes(images_path.read_bytes()[:1000])
    with pytest.raises(ProvenanceError, match=re.escape(f"{images_path}: changed since the download stage")) as refused:
        load_split(split_dir, "train")
    assert str(refused.value).endswith(RESTORE)
    assert isinstance(refused.value.__cause__, IDXError)  # what is wrong with it, kept as the cause


def test_each_file_is_opened_once_its_hash_taken_while_it_is_read(split_dir, monkeypatch):
    opened = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    load_split(split_dir, "train")
    assert sorted(path for path in opened if path.endswith(".gz")) == sorted(str(split_dir / name) for name in TRAIN_FILES)


@pytest.mark.parametrize(
    ("provenance", "problem"),
    [
        (None, "provenance.json not found: run `python -m pipeline.download` first"),
        ("{not json", "provenance.json: unreadable ("),
        ('{"source": "packaged"}', "provenance.json: records no SHA-256 of the data files; " + RESTORE),
        ('{"files": {}}', f"{TRAIN_FILES[0]}: provenance.json records no SHA-256 for it; " + RESTORE),
    ],
    ids=["missing", "not JSON", "no files", "file not recorded"],
)
def test_data_that_provenance_cannot_vouch_for_is_refused(split_dir, provenance, problem):
    (split_dir / PROVENANCE_FILE).unlink()
    if provenance is not None:
        (split_dir / PROVENANCE_FILE).write_text(provenance)
    with pytest.raises((FileNotFoundError, ProvenanceError), match=re.escape(problem)):
        load_split(split_dir, "train")


def test_a_missing_file_says_how_to_restore_it(split_dir):
    (split_dir / TRAIN_FILES[1]).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{split_dir / TRAIN_FILES[1]} not found; {RESTORE}")):
        load_split(split_dir, "train")


def test_a_header_claiming_more_rows_than_mnist_holds_is_refused_before_allocating(tmp_path):
    # 1.3 million images claimed by a 1 MB gzip: under deflate's 1032:1 bound, so only the
    # dataset's own size (60,000 training rows) can refuse it before 1 GB is allocated.
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (1_300_000, 28, 28))
    images_path = tmp_path / TRAIN_FILES[0]
    images_path.write_bytes(gzip.compress(header + np.random.default_rng(0).bytes(1 << 20)))
    write_idx(tmp_path / TRAIN_FILES[1], np.zeros(10, np.uint8))
    record_provenance(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(IDXError) as refused:
            load_split(tmp_path, "train")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(refused.value) == (
        f"{images_path}: header claims 1,300,000 items (1,019,200,000 data bytes), more than the 60,000 expected"
    )
    assert peak < 10 * 2**20  # bytes: the reader's buffers, not the claimed gigabyte


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
