"""IDX, the MNIST file format: read strictly and fast, written atomically.

Layout, big-endian: a 4-byte magic number ``0x0000 TT DD`` (TT = 0x08: unsigned bytes,
DD = number of dimensions), DD uint32 sizes, then ``prod(sizes)`` data bytes, row-major.
MNIST uses two kinds: labels ``0x00000801`` with shape (N,) and values 0..9, images
``0x00000803`` with shape (N, 28, 28). Files may be gzip-compressed (the published ones are).
"""

import gzip
import zlib
from pathlib import Path

import numpy as np

from pipeline.constants import IMAGE_SIDE, N_CLASSES  # noqa: F401 (re-exported)
from pipeline.files import atomic_write

LABELS_MAGIC = 0x00000801
IMAGES_MAGIC = 0x00000803
GZIP_MAGIC = b"\x1f\x8b"
# Deflate expands at most ~1032:1, so a gzip file of s bytes cannot hold more than 1032·s bytes:
# a header claiming more is a lie, caught before anything is decompressed or allocated.
MAX_DEFLATE_RATIO = 1032


class IDXError(ValueError):
    """A file that is not a valid MNIST IDX file; the message names the file and the problem."""


def read_idx(path, max_items=None, sha256=None):
    """Read an IDX file (gzip or raw) into a uint8 array: labels (N,) or images (N, 28, 28).

    Strict: the magic number, 28x28 images, labels in 0..9, and a data length exactly equal to
    what the header implies (``N`` for labels, ``N·28·28`` for images). A header claiming more
    than ``max_items`` items (or more data than the file can hold) is refused before anything is
    allocated, and decompression stops one byte past the claimed length, so neither a gzip bomb
    nor a lying header can exhaust memory. ``sha256``, a hashlib object, is fed every byte of the
    file as it is read (the rest of the file too, if its content is refused): one pass gives both
    the array and the digest of the bytes it came from. Raises IDXError naming the file.
    """
    path = Path(path)
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        gzipped = f.peek(2)[:2] == GZIP_MAGIC
        raw = f if sha256 is None else _Hashing(f, sha256)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        try:
            try:
                array = _read_stream(stream, path, file_size, gzipped, max_items)
            except (OSError, EOFError, zlib.error) as error:
                raise IDXError(f"{path}: corrupt gzip stream ({error})") from error
        except IDXError:
            if sha256 is not None:
                raw.drain()
            raise
        if sha256 is not None:
            raw.drain()  # usually nothing left: the check for trailing data read to the end
        return array


class _Hashing:
    """A binary file that feeds every byte read from it to ``digest``."""

    def __init__(self, file, digest):
        self.file, self.digest = file, digest

    def read(self, size=-1):
        chunk = self.file.read(size)
        self.digest.update(chunk)
        return chunk

    def readinto(self, buffer):
        n = self.file.readinto(buffer)
        self.digest.update(memoryview(buffer)[:n])
        return n

    def drain(self):
        while self.read(1 << 16):
            pass


def _read_stream(stream, path, file_size, gzipped, max_items):
    def fail(problem):
        return IDXError(f"{path}: {problem}")

    magic_bytes = stream.read(4)
    if len(magic_bytes) < 4:
        raise fail(f"file is short: {len(magic_bytes)} bytes, not even the 4-byte magic number")
    magic = int.from_bytes(magic_bytes, "big")
    if magic not in (LABELS_MAGIC, IMAGES_MAGIC):
        raise fail(
            f"bad magic number 0x{magic:08x}: expected 0x{LABELS_MAGIC:08x} (labels) "
            f"or 0x{IMAGES_MAGIC:08x} (images)"
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    dims_bytes = stream.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise fail(f"file is short: it ends inside the {header_size}-byte header")
    shape = tuple(int(d) for d in np.frombuffer(dims_bytes, dtype=">u4"))
    if magic == IMAGES_MAGIC and shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise fail(f"images are {shape[1]}x{shape[2]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    if shape[0] == 0:
        raise fail("header says the file holds 0 items")

    n_bytes = int(np.prod(shape))
    claim = f"header claims {shape[0]:,} items ({n_bytes:,} data bytes)"
    if max_items is not None and shape[0] > max_items:
        raise fail(f"{claim}, more than the {max_items:,} expected")
    if gzipped and n_bytes > file_size * MAX_DEFLATE_RATIO:
        raise fail(f"{claim}, more than a {file_size:,}-byte gzip file can hold")
    if not gzipped and n_bytes > file_size - header_size:
        raise fail(f"file is short: {claim}, the file holds {file_size - header_size:,} data bytes")
    data = np.empty(n_bytes, dtype=np.uint8)
    filled = _fill(stream, data)
    if filled < n_bytes:
        raise fail(f"file is short: {claim}, the file holds {filled:,} data bytes")
    if stream.read(1):
        raise fail(
            f"file is longer than its header says: data continues past {shape[0]:,} items "
            f"({n_bytes:,} data bytes)"
        )
    if magic == LABELS_MAGIC:
        bad = np.flatnonzero(data >= N_CLASSES)
        if bad.size:
            raise fail(
                f"label {data[bad[0]]} at index {bad[0]} is outside 0..{N_CLASSES - 1} "
                f"({bad.size:,} such labels)"
            )
    return data.reshape(shape)


def _fill(stream, buffer):
    """Read into ``buffer`` until it is full or the stream ends; return the bytes read."""
    view = memoryview(buffer)
    filled = 0
    while filled < len(view):
        n = stream.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def write_idx(path, array):
    """Write a uint8 array of 1 dimension (labels) or 3 (images) as gzip IDX, atomically.

    Byte-reproducible (gzip mtime 0, no file name in the gzip header), so the same array always
    gives the same SHA-256. Compression level 6: level 9 is 15x slower for 2% smaller files. Only the format is enforced here; the MNIST rules (28x28, labels
    0..9) are read_idx's, which lets tests write malformed files with this writer.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise ValueError(f"write_idx takes a uint8 array of 1 or 3 dimensions, got {array.dtype} {array.shape}")
    header = (0x800 | array.ndim).to_bytes(4, "big") + np.array(array.shape, dtype=">u4").tobytes()
    with atomic_write(path) as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=6, mtime=0) as gz:
        gz.write(header)
        gz.write(np.ascontiguousarray(array).data)
