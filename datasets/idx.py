"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed).

Layout: two zero bytes, one type byte, one byte ``nd`` (number of dimensions), then ``nd``
big-endian uint32 sizes, then ``prod(sizes)`` big-endian items of the type, row-major, nothing after.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from hashbench.datasets.errors import DataError

_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a damaged gzip file ({exc}); fetch it again") from exc


def parse_idx(raw: bytes, where: str = "IDX data") -> np.ndarray:
    """The array stored in the IDX bytes ``raw``, in native byte order; `DataError` if malformed."""
    if len(raw) < 4:
        raise DataError(f"{where} is not an IDX file: only {len(raw)} bytes")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise DataError(f"{where} is not an IDX file: header starts with {raw[:4].hex(' ')}, expected "
                        f"00 00 <type in {sorted(f'{t:02x}' for t in _TYPES)}> <dims>")
    dtype, nd = _TYPES[raw[2]], raw[3]
    if nd == 0:
        raise DataError(f"{where}: IDX header declares 0 dimensions")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise DataError(f"{where}: truncated IDX header ({len(raw)} bytes, {header} needed for {nd} dims)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=nd, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{where}: IDX header says shape {shape} ({expected} data bytes) but the file holds "
                        f"{len(raw) - header}; the file is truncated or corrupt, fetch it again")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not (recognised by its content, not its name)."""
    path = Path(path)
    return parse_idx(_read_bytes(path), where=str(path))
