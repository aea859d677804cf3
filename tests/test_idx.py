"""IDX files: round trips, byte-reproducible writing, and one clear error per malformation."""

import gzip
import hashlib
import re

import numpy as np
import pytest

from pipeline.idx import IDXError, read_idx, write_idx


def labels_header(n):
    return (0x801).to_bytes(4, "big") + n.to_bytes(4, "big")


def images_header(n, rows=28, cols=28):
    return (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, rows, cols))


def test_round_trip_of_labels_and_images(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 50, dtype=np.uint8)
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "labels.gz", labels)
    write_idx(tmp_path / "images.gz", images)
    read_labels, read_images = read_idx(tmp_path / "labels.gz"), read_idx(tmp_path / "images.gz")
    assert read_labels.dtype == read_images.dtype == np.uint8
    np.testing.assert_array_equal(read_labels, labels)
    np.testing.assert_array_equal(read_images, images)


def test_writes_the_published_layout_and_reads_uncompressed_files(tmp_path):
    write_idx(tmp_path / "labels.gz", np.array([7, 2, 1], dtype=np.uint8))
    raw = gzip.decompress((tmp_path / "labels.gz").read_bytes())
    assert raw == labels_header(3) + bytes([7, 2, 1])
    (tmp_path / "labels").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), [7, 2, 1])


def test_writing_is_byte_reproducible(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "a.gz", images)
    write_idx(tmp_path / "b.gz", images)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


@pytest.mark.parametrize("array", [np.zeros(3, np.float32), np.zeros((3, 784), np.uint8)])
def test_write_idx_refuses_what_the_format_cannot_hold(tmp_path, array):
    with pytest.raises(ValueError, match="uint8 array of 1 or 3 dimensions"):
        write_idx(tmp_path / "x.gz", array)
    assert list(tmp_path.iterdir()) == []


MALFORMED = {
    "empty": (b"", "file is short: 0 bytes, not even the 4-byte magic number"),
    "bad magic": (b"\x00\x00\x08\x02" + bytes(8), "bad magic number 0x00000802: expected 0x00000801 (labels) or 0x00000803 (images)"),
    "text file": (b"hello, world", "bad magic number 0x68656c6c"),
    "cut inside the header": (images_header(2)[:10], "file is short: it ends inside the 16-byte header"),
    "fewer items than the header says": (labels_header(10) + bytes(5), "file is short: header claims 10 items (10 data bytes), the file holds 5 data bytes"),
    "more items than the header says": (labels_header(5) + bytes(10), "file is longer than its header says: data continues past 5 items (5 data bytes)"),
    "image rows cut short": (images_header(2) + bytes(2 * 784 - 1), "file is short: header claims 2 items (1,568 data bytes), the file holds 1,567 data bytes"),
    "label 11": (labels_header(5) + bytes([3, 1, 4, 11, 5]), "label 11 at index 3 is outside 0..9 (1 such labels)"),
    "images 28x27": (images_header(1, 28, 27) + bytes(28 * 27), "images are 28x27, expected 28x28"),
    "no items": (labels_header(0), "header says the file holds 0 items"),
}


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_files_each_give_their_clear_error(tmp_path, case, compress):
    content, message = MALFORMED[case]
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(IDXError, match=re.escape(f"{path}: {message}")):
        read_idx(path)


def test_a_header_claiming_a_billion_images_is_rejected_before_allocating(tmp_path):
    content = images_header(10**9) + bytes(784)
    claim = "header claims 1,000,000,000 items (784,000,000,000 data bytes)"
    (tmp_path / "raw").write_bytes(content)
    with pytest.raises(IDXError, match=re.escape(f"file is short: {claim}, the file holds 784 data bytes")):
        read_idx(tmp_path / "raw")
    compressed = gzip.compress(content)
    (tmp_path / "gz").write_bytes(compressed)
    with pytest.raises(IDXError, match=re.escape(f"{claim}, more than a {len(compressed)}-byte gzip file can hold")):
        read_idx(tmp_path / "gz")


def test_a_gzip_bomb_is_rejected_after_reading_one_byte_past_the_header_size(tmp_path):
    # 10 labels, then 64 MiB of zeros that compress to ~64 KiB.
    path = tmp_path / "bomb.gz"
    with gzip.open(path, "wb") as f:
        f.write(labels_header(10))
        for _ in range(64):
            f.write(bytes(1 << 20))
    with pytest.raises(IDXError, match="file is longer than its header says: data continues past 10 items"):
        read_idx(path)


@pytest.mark.parametrize("damage", ["cut in half", "garbage after the gzip header"])
def test_a_broken_gzip_stream_is_an_idx_error(tmp_path, damage):
    good = gzip.compress(labels_header(1000) + bytes(1000))
    bad = good[: len(good) // 2] if damage == "cut in half" else good[:10] + b"\xff" * 40
    path = tmp_path / "broken.gz"
    path.write_bytes(bad)
    with pytest.raises(IDXError, match=re.escape(f"{path}: corrupt gzip stream (")):
        read_idx(path)


def test_a_header_over_max_items_is_refused_and_max_items_itself_is_read(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, np.arange(10, dtype=np.uint8) % 10)
    assert read_idx(path, max_items=10).shape == (10,)
    with pytest.raises(IDXError, match=re.escape(f"{path}: header claims 10 items (10 data bytes), more than the 9 expected")):
        read_idx(path, max_items=9)


@pytest.mark.parametrize("content", ["valid", "refused"])
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_sha256_is_fed_every_byte_of_the_file_even_when_it_is_refused(tmp_path, content, compress):
    extra = np.random.default_rng(0).bytes(50_000)  # incompressible: the gzip reader stops well before its end
    data = labels_header(3) + bytes([1, 2, 3]) + (b"" if content == "valid" else extra)
    path = tmp_path / "labels"
    # A second gzip member after the first: bytes the decompressor is never asked for.
    path.write_bytes(gzip.compress(data) + (gzip.compress(b"") if content == "valid" else b"") if compress else data)
    digest = hashlib.sha256()
    if content == "valid":
        np.testing.assert_array_equal(read_idx(path, sha256=digest), [1, 2, 3])
    else:
        with pytest.raises(IDXError):
            read_idx(path, sha256=digest)
    assert digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
