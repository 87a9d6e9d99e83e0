"""A small, defensive reader of TIFF and BigTIFF structure: image directories and block tables.

It answers one question before GDAL reads any pixel: does every block the file lists lie inside
the file? A truncated download, a file cut short by a full disk, or a crafted header that points
past the end all fail here, cheaply (only the directories and the offset tables are read, never
pixel data), so satconv can refuse the input before it creates any output, and can check its own
outputs after writing them. Pure Python and numpy; nothing here goes through GDAL.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

#: Bytes per value of each TIFF field type (TIFF 6.0 and BigTIFF).
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
              13: 4, 16: 8, 17: 8, 18: 8}
_UINT_TYPES = {3: "u2", 4: "u4", 13: "u4", 16: "u8", 18: "u8"}

IMAGE_WIDTH, IMAGE_LENGTH, SAMPLES_PER_PIXEL, ROWS_PER_STRIP = 256, 257, 277, 278
STRIP_OFFSETS, STRIP_BYTE_COUNTS, TILE_OFFSETS, TILE_BYTE_COUNTS = 273, 279, 324, 325
TILE_WIDTH, TILE_LENGTH, PLANAR_CONFIG, BITS_PER_SAMPLE = 322, 323, 284, 258

#: Bounds that keep a hostile header from making this reader slow or hungry.
MAX_IFDS = 4096
MAX_ENTRIES = 4096
MAX_BLOCKS = 64 * 1024 * 1024

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def is_tiff(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts like a TIFF or BigTIFF."""
    return head[:4] in TIFF_MAGICS


@dataclass(frozen=True)
class _Entry:
    type: int
    count: int
    data: bytes | None  # the value bytes when stored inline in the entry
    offset: int         # where the values are when not inline


class LayoutError(ValueError):
    """The file's TIFF structure is broken; the message says where."""


class _Reader:
    def __init__(self, f, size: int):
        self.f = f
        self.size = size
        head = self._read(0, 16 if size >= 16 else size)
        if len(head) < 8 or not is_tiff(head):
            raise LayoutError("not a TIFF file (no TIFF header)")
        self.e = "<" if head[:2] == b"II" else ">"
        self.big = head[2:4] in (b"+\x00", b"\x00+")
        if self.big:
            if len(head) < 16:
                raise LayoutError("BigTIFF header is cut short")
            bytesize, reserved = struct.unpack(self.e + "HH", head[4:8])
            if bytesize != 8 or reserved != 0:
                raise LayoutError("BigTIFF header is invalid")
            self.first = struct.unpack(self.e + "Q", head[8:16])[0]
            self.header = 16
        else:
            self.first = struct.unpack(self.e + "I", head[4:8])[0]
            self.header = 8

    def _read(self, offset: int, n: int) -> bytes:
        self.f.seek(offset)
        return self.f.read(n)

    def ifd(self, offset: int, index: int) -> tuple[dict[int, _Entry], int]:
        """The entries of the IFD at ``offset`` and the offset of the next one (0 = last)."""
        csize, esize, psize = (8, 20, 8) if self.big else (2, 12, 4)
        if offset < self.header or offset + csize > self.size:
            raise LayoutError(f"image directory {index} at byte {offset} lies outside the file "
                              f"({self.size} bytes): truncated or corrupt")
        (n,) = struct.unpack(self.e + ("Q" if self.big else "H"), self._read(offset, csize))
        end = offset + csize + n * esize + psize
        if n == 0 or n > MAX_ENTRIES or end > self.size:
            raise LayoutError(f"image directory {index} at byte {offset} is cut short or "
                              f"corrupt ({n} entries)")
        raw = self._read(offset + csize, n * esize + psize)
        entries: dict[int, _Entry] = {}
        inline = 8 if self.big else 4
        fmt = self.e + ("HHQ" if self.big else "HHI")
        head = struct.calcsize(fmt)
        for i in range(n):
            rec = raw[i * esize:(i + 1) * esize]
            tag, typ, count = struct.unpack(fmt, rec[:head])
            value = rec[head:]
            size = TYPE_SIZES.get(typ)
            if size is None:  # unknown type: libtiff skips the entry
                continue
            nbytes = count * size
            if nbytes <= inline:
                entries[tag] = _Entry(typ, count, value[:nbytes], 0)
                continue
            (voff,) = struct.unpack(self.e + ("Q" if self.big else "I"), value)
            if voff + nbytes > self.size:
                raise LayoutError(f"image directory {index}: tag {tag} points to bytes "
                                  f"{voff}-{voff + nbytes}, past the end of the file "
                                  f"({self.size} bytes): truncated or corrupt")
            entries[tag] = _Entry(typ, count, None, voff)
        (nxt,) = struct.unpack(self.e + ("Q" if self.big else "I"), raw[n * esize:])
        return entries, nxt

    def values(self, entry: _Entry, what: str) -> np.ndarray:
        dt = _UINT_TYPES.get(entry.type)
        if dt is None:
            raise LayoutError(f"{what} have field type {entry.type}, not an unsigned integer")
        if entry.count > MAX_BLOCKS:
            raise LayoutError(f"{what}: {entry.count} values, more than this reader accepts")
        raw = entry.data if entry.data is not None else self._read(
            entry.offset, entry.count * TYPE_SIZES[entry.type])
        return np.frombuffer(raw, dtype=np.dtype(dt).newbyteorder(self.e)).astype(np.uint64)

    def scalar(self, entries: dict[int, _Entry], tag: int, default: int) -> int:
        e = entries.get(tag)
        if e is None or e.count < 1:
            return default
        return int(self.values(e, f"tag {tag}")[0])


@dataclass(frozen=True)
class Layout:
    """The first image of a TIFF as stored: its blocks as written in the file (GDAL may report
    a single compressed strip as many one-row blocks, but must still decode it whole)."""

    width: int
    height: int
    block_width: int
    block_height: int
    samples_per_pixel: int
    separate_planes: bool
    bits_per_sample: int
    tiled: bool

    @property
    def block_bytes(self) -> int:
        """Uncompressed bytes of one block: what must be decoded to read any pixel of it."""
        samples = 1 if self.separate_planes else self.samples_per_pixel
        return self.block_width * self.block_height * samples * -(-self.bits_per_sample // 8)


def _layout(r: _Reader, entries: dict[int, _Entry]) -> Layout:
    width = r.scalar(entries, IMAGE_WIDTH, 0)
    height = r.scalar(entries, IMAGE_LENGTH, 0)
    if TILE_OFFSETS in entries:
        bw, bh = r.scalar(entries, TILE_WIDTH, 0), r.scalar(entries, TILE_LENGTH, 0)
    else:
        bw, bh = width, min(r.scalar(entries, ROWS_PER_STRIP, height) or height, height)
    bits = entries.get(BITS_PER_SAMPLE)
    nbits = int(r.values(bits, "bits per sample").max()) if bits is not None and bits.count \
        else 1
    return Layout(width, height, bw, bh, r.scalar(entries, SAMPLES_PER_PIXEL, 1),
                  r.scalar(entries, PLANAR_CONFIG, 1) == 2, nbits, TILE_OFFSETS in entries)


def _expected_blocks(r: _Reader, entries: dict[int, _Entry], tiled: bool) -> int | None:
    width = r.scalar(entries, IMAGE_WIDTH, 0)
    height = r.scalar(entries, IMAGE_LENGTH, 0)
    if width == 0 or height == 0:
        return None
    spp = r.scalar(entries, SAMPLES_PER_PIXEL, 1)
    planes = spp if r.scalar(entries, PLANAR_CONFIG, 1) == 2 else 1
    if tiled:
        tw, th = r.scalar(entries, TILE_WIDTH, 0), r.scalar(entries, TILE_LENGTH, 0)
        if tw == 0 or th == 0:
            raise LayoutError("tile width or height is 0")
        return -(-width // tw) * -(-height // th) * planes
    rps = min(r.scalar(entries, ROWS_PER_STRIP, height) or height, height)
    return -(-height // rps) * planes


def check(path: str | os.PathLike[str], allow_sparse: bool = True) -> Layout:
    """Raise :class:`LayoutError` unless every image directory of the TIFF at ``path``, every
    value it points to and every block it lists lie inside the file; return the first image's
    :class:`Layout`.

    ``allow_sparse`` accepts blocks with offset and byte count 0 (GDAL's sparse files, read
    as nodata); satconv's own outputs write every block, so they are checked without it.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        r = _Reader(f, size)
        if r.first == 0:
            raise LayoutError("the file has no image directory: truncated or unfinished")
        offset, index, seen = r.first, 0, set()
        first: Layout | None = None
        while offset:
            if offset in seen:
                raise LayoutError(f"image directory {index} loops back to byte {offset}")
            if index >= MAX_IFDS:
                raise LayoutError(f"more than {MAX_IFDS} image directories")
            seen.add(offset)
            entries, nxt = r.ifd(offset, index)
            _check_blocks(r, entries, index, allow_sparse)
            if first is None:
                first = _layout(r, entries)
            offset, index = nxt, index + 1
    assert first is not None
    return first


def _check_blocks(r: _Reader, entries: dict[int, _Entry], index: int,
                  allow_sparse: bool) -> None:
    tiled = TILE_OFFSETS in entries
    otag, ctag = (TILE_OFFSETS, TILE_BYTE_COUNTS) if tiled else (STRIP_OFFSETS, STRIP_BYTE_COUNTS)
    if otag not in entries:
        raise LayoutError(f"image directory {index} lists no strips or tiles")
    where = f"image directory {index}"
    offs = r.values(entries[otag], f"{where}: block offsets")
    expected = _expected_blocks(r, entries, tiled)
    if expected is not None and offs.size < expected:
        raise LayoutError(f"{where} lists {offs.size} blocks, its image needs {expected}: "
                          "truncated or corrupt")
    if ctag in entries:
        counts = r.values(entries[ctag], f"{where}: block byte counts")
        if counts.size != offs.size:
            raise LayoutError(f"{where} lists {offs.size} block offsets but {counts.size} "
                              "byte counts")
    else:  # libtiff estimates missing byte counts; at least the offsets must be inside
        counts = np.ones_like(offs)
    size = np.uint64(r.size)
    sparse = (offs == 0) & (counts == 0)
    inside = (offs >= np.uint64(r.header)) & (offs <= size) & (counts <= size - np.minimum(offs,
                                                                                         size))
    bad = ~inside & (~sparse if allow_sparse else True)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        o, c = int(offs[i]), int(counts[i])
        if sparse[i]:
            raise LayoutError(f"{where}: block {i} was never written: truncated or unfinished")
        raise LayoutError(f"{where}: block {i} (bytes {o}-{o + c}) lies outside the file "
                          f"({r.size} bytes): truncated or corrupt")
