"""Decoded tiles kept from the plan pass for the execute pass: the input is decoded once.

A policy plan reads every tile before execution (``planning.scan``), and execution reads them
again with their halos. Decoding a compressed GeoTIFF is most of what a read costs; copying
raw pixels back from a file the system keeps in its page cache is a small part of it. So the
plan pass writes each tile's pixels, as decoded, to a :class:`TileCache`, and the execute pass
reads its windows from there.

The cache is an unlinked temporary file (``O_TMPFILE``) in the outputs' folder: nothing is
left behind, even by a killed run, and it is not mapped into memory, so the process's memory
stays bounded by the tiles in flight. :func:`decide` keeps one only when it pays and fits:
the input is compressed, remote or not a GeoTIFF; the pixels fit in half the memory the
system (or the process's control group) has available, so that they are read back from the
page cache, not the disk; and the folder has room for them beside the run's outputs. The
cache is closed as soon as the execute pass is done, before the outputs are finished. Every
write and read is positional (``pwrite``/``preadv``): worker threads share the file without a
lock.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import raster_io
from .raster_io import RasterInfo
from .tiling import Tile, TileGrid

#: The kept pixels may take at most this share of the memory the system has available...
MEMORY_SHARE = 0.5
#: ... divided among the scenes that run at once on this machine: set in each worker process
#: of a ``--jobs`` batch, and in each Dask task (a worker's threads).
SCENES_AT_ONCE = 1


@dataclass(frozen=True)
class Decision:
    """Whether to keep the decoded tiles, and why (for the run report)."""

    keep: bool
    reason: str


def _bytes_per_value(info: RasterInfo) -> int:
    """Each pixel and band: its value in the input's type, plus a byte of validity where the
    input carries a mask of its own."""
    return np.dtype(info.dtype).itemsize + (1 if _own_mask(info) else 0)


def nbytes(info: RasterInfo) -> int:
    """Bytes a cache of the scene takes."""
    return info.height * info.width * info.data_count * _bytes_per_value(info)


def _meminfo_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


#: Where cgroup v2 shows the process's own group (a container's limit).
CGROUP = Path("/sys/fs/cgroup")


def _cgroup_room() -> int | None:
    """What the process's control group may still use, in bytes; None without a limit. Page
    cache counts against it."""
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((CGROUP / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def _available_memory() -> int | None:
    """Memory the system can give without swapping, in bytes, within the control group's
    limit (None where unknown: not Linux)."""
    known = [m for m in (_meminfo_available(), _cgroup_room()) if m is not None]
    return min(known) if known else None


def _remote(path: str) -> bool:
    return path.startswith("/vsi") or "://" in path


def decide(info: RasterInfo, folder: Path, outputs: int = 0) -> Decision:
    """Whether the plan pass should keep its decoded tiles for execution, in ``folder``, where
    the run also writes about ``outputs`` bytes."""
    if info.driver == "GTiff" and info.compression is None and not _remote(info.path):
        return Decision(False, "the input is not compressed: reading it again is as cheap")
    size = nbytes(info)
    mb = f"{size / 2**20:.0f} MB of decoded pixels"
    avail = _available_memory()
    if avail is None:
        return Decision(False, f"{mb}; the memory available is unknown")
    if size > MEMORY_SHARE * avail / max(1, SCENES_AT_ONCE):
        return Decision(False, f"{mb} would not stay in memory")
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    if size + outputs > free:
        return Decision(False, f"{mb}: too little free space in {folder} beside the outputs")
    return Decision(True, mb)


def _own_mask(info: RasterInfo) -> bool:
    """The validity is not in the values themselves (a mask band or alpha): it is kept too."""
    return info.mask in ("dataset", "alpha")


class TileCache:
    """Every tile's decoded pixels, written once (:meth:`put`) and read back as any window
    (:meth:`read_window_valid`, the same contract as ``raster_io.read_window_valid``).

    Each tile is stored row-major with its bands interleaved by row, ``(h, bands, w)``, so a
    run of its rows is one contiguous read; its validity follows, where the input has a mask
    of its own and the tile holds invalid pixels. A write that fails (a full disk) is
    recorded in :attr:`failure`, not raised: the run then decodes the input again."""

    def __init__(self, grid: TileGrid, info: RasterInfo, folder: Path):
        self.grid = grid
        self.info = info
        self._dtype = np.dtype(info.dtype)
        nb = info.data_count
        ny, nx = grid.shape
        heights = np.array([grid.tile(ty, 0).height for ty in range(ny)], dtype=np.int64)
        widths = np.array([grid.tile(0, tx).width for tx in range(nx)], dtype=np.int64)
        sizes = (heights[:, None] * widths[None, :] * nb * _bytes_per_value(info)).ravel()
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).reshape(ny, nx)
        self._stored = np.zeros((ny, nx), dtype=bool)
        self._masked = np.zeros((ny, nx), dtype=bool)
        self.failure: str | None = None
        self._file = tempfile.TemporaryFile(dir=folder, prefix=".satconv-tiles-")
        self._fd = self._file.fileno()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TileCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def complete(self) -> bool:
        """Every tile is stored and no write failed."""
        return self.failure is None and bool(self._stored.all())

    def put(self, tile: Tile, data: np.ndarray, valid: np.ndarray | None) -> None:
        """Store a tile's pixels ``(bands, h, w)`` and validity, as read by
        ``raster_io.read_window_valid``."""
        if self.failure is not None:
            return
        at = (tile.ty, tile.tx)
        offset = int(self._offsets[at])
        try:
            _pwrite_all(self._fd, np.ascontiguousarray(data.transpose(1, 0, 2)), offset)
            if _own_mask(self.info) and valid is not None:
                _pwrite_all(self._fd, np.ascontiguousarray(valid.transpose(1, 0, 2)),
                            offset + data.size * self._dtype.itemsize)
                self._masked[at] = True
        except OSError as err:
            self.failure = err.strerror or raster_io.first_line(err)
            return
        self._stored[at] = True

    def read_window_valid(self, row0: int, row1: int, col0: int,
                          col1: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The window ``[row0, row1) x [col0, col1)`` of the data bands in their own type,
        with its validity mask (None when all is valid), as ``raster_io.read_window_valid``
        reads it from the input."""
        info, size = self.info, self.grid.size
        nb = info.data_count
        data = np.empty((nb, row1 - row0, col1 - col0), dtype=self._dtype)
        valid = None
        for ty in range(row0 // size, (row1 - 1) // size + 1):
            for tx in range(col0 // size, (col1 - 1) // size + 1):
                tile = self.grid.tile(ty, tx)
                a, b = max(row0, tile.row0), min(row1, tile.row1)
                c, d = max(col0, tile.col0), min(col1, tile.col1)
                w = tile.width
                offset = int(self._offsets[ty, tx])
                rows = slice(a - row0, b - row0)
                cols = slice(c - col0, d - col0)
                part = self._read(offset, (b - a, nb, w), self._dtype,
                                  (a - tile.row0) * nb * w)
                data[:, rows, cols] = part[:, :, c - tile.col0:d - tile.col0].transpose(1, 0, 2)
                if self._masked[ty, tx]:
                    if valid is None:
                        valid = np.ones(data.shape, dtype=bool)
                    ok = self._read(offset + tile.height * nb * w * self._dtype.itemsize,
                                    (b - a, nb, w), np.dtype(bool), (a - tile.row0) * nb * w)
                    valid[:, rows, cols] = ok[:, :, c - tile.col0:d - tile.col0].transpose(
                        1, 0, 2)
        if info.mask in ("nodata", "nan"):
            valid = raster_io.valid_mask(data, info.nodata)
            valid = None if valid.all() else valid
        return data, valid

    def _read(self, offset: int, shape: tuple[int, ...], dtype: np.dtype,
              skip: int) -> np.ndarray:
        """``shape`` items of ``dtype`` from ``skip`` items past ``offset``."""
        out = np.empty(shape, dtype=dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        pos = offset + skip * dtype.itemsize
        done = 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], pos + done)
            if n <= 0:
                raise OSError(f"the kept tiles ended early at byte {pos + done}")
            done += n
        return out


def _pwrite_all(fd: int, arr: np.ndarray, offset: int) -> None:
    view = memoryview(arr.reshape(-1).view(np.uint8))
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
