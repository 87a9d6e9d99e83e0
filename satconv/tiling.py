"""The tile grid, the sample grid of a strided tile, and boundary index maps.

Everything here is integer geometry on the image's pixel grid; nothing reads data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOUNDARY_MODES = ("reflect", "mirror", "nearest", "constant", "wrap")


@dataclass(frozen=True)
class Tile:
    """A tile of the grid: index (ty, tx) and pixel bounds [row0, row1) x [col0, col1)."""

    ty: int
    tx: int
    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def height(self) -> int:
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        return self.col1 - self.col0


@dataclass(frozen=True)
class TileGrid:
    """Square tiles of ``size`` anchored at the image origin; edge tiles are partial."""

    height: int
    width: int
    size: int

    @property
    def shape(self) -> tuple[int, int]:
        """Tiles down and across."""
        return (-(-self.height // self.size), -(-self.width // self.size))

    def tile(self, ty: int, tx: int) -> Tile:
        r0, c0 = ty * self.size, tx * self.size
        return Tile(ty, tx, r0, min(r0 + self.size, self.height), c0,
                    min(c0 + self.size, self.width))

    def tiles(self) -> list[Tile]:
        """All tiles in row-major order."""
        ny, nx = self.shape
        return [self.tile(ty, tx) for ty in range(ny) for tx in range(nx)]


def sample_positions(start: int, stop: int, n: int, stride: int) -> np.ndarray:
    """Global positions sampled by a tile spanning [start, stop) of an axis of length ``n``.

    The positions are the multiples of ``stride`` inside the span (``start`` is one, as tiles
    are anchored on the grid), plus one closing position so every pixel of the span lies
    between two samples: the next grid point, or the image's last pixel when the grid point
    falls outside the image. The closing sample of an inner tile is the first sample of the
    next tile, which is what makes neighbouring strided tiles meet without a seam.
    """
    pos = np.arange(start, stop, stride, dtype=np.int64)
    last = stop - 1
    if pos[-1] != last:
        pos = np.append(pos, min(pos[-1] + stride, n - 1))
    return pos


def boundary_index(lo: int, hi: int, n: int, mode: str) -> np.ndarray:
    """Source index along an axis of length ``n`` for each global index in [lo, hi).

    Indices inside the image map to themselves; outside, they follow ``mode`` exactly as
    ``scipy.ndimage`` extends an array. ``constant`` marks outside indices with -1.
    """
    i = np.arange(lo, hi, dtype=np.int64)
    inside = (i >= 0) & (i < n)
    if mode == "constant":
        return np.where(inside, i, -1)
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return np.mod(i, n)
    if mode == "reflect":
        m = np.mod(i, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    if mode == "mirror":
        if n == 1:
            return np.zeros_like(i)
        m = np.mod(i, 2 * n - 2)
        return np.where(m < n, m, 2 * n - 2 - m)
    raise ValueError(f"unknown boundary mode {mode!r}")


def contiguous_runs(idx: np.ndarray) -> list[tuple[int, int]]:
    """Split the distinct non-negative values of ``idx`` into maximal [start, stop) runs."""
    u = np.unique(idx[idx >= 0])
    if u.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(u) != 1) + 1
    return [(int(seg[0]), int(seg[-1]) + 1) for seg in np.split(u, breaks)]


def tiles_touched(row0: np.ndarray, col0: np.ndarray, row1: np.ndarray, col1: np.ndarray,
                  grid: TileGrid) -> np.ndarray:
    """Which tiles the boxes ``[row0, row1) x [col0, col1)`` (pixel coordinates, fractional
    allowed) overlap: a ``grid.shape`` bool array. Boxes outside the image are ignored; a box
    that only meets a tile along its border does not touch it."""
    eps = 1e-6
    r0 = np.maximum(np.asarray(row0, dtype=np.float64), 0.0)
    c0 = np.maximum(np.asarray(col0, dtype=np.float64), 0.0)
    r1 = np.minimum(np.asarray(row1, dtype=np.float64), grid.height)
    c1 = np.minimum(np.asarray(col1, dtype=np.float64), grid.width)
    keep = (r1 - r0 > eps) & (c1 - c0 > eps)
    ny, nx = grid.shape
    marks = np.zeros((ny + 1, nx + 1), dtype=np.int64)
    if keep.any():
        ty0 = np.floor(r0[keep] / grid.size).astype(np.int64)
        tx0 = np.floor(c0[keep] / grid.size).astype(np.int64)
        ty1 = np.ceil(r1[keep] / grid.size - eps).astype(np.int64)
        tx1 = np.ceil(c1[keep] / grid.size - eps).astype(np.int64)
        np.add.at(marks, (ty0, tx0), 1)
        np.add.at(marks, (ty0, tx1), -1)
        np.add.at(marks, (ty1, tx0), -1)
        np.add.at(marks, (ty1, tx1), 1)
    return np.cumsum(np.cumsum(marks, axis=0), axis=1)[:ny, :nx] > 0
