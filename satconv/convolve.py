"""Convolution of one tile at a stride: the public face of the numba kernels in ``core``.

The caller supplies a ``read`` function that returns the input at given source indices; this
module decides which indices a tile needs (its samples plus the kernel's halo, extended past
the image edges by the boundary mode), computes the samples and reconstructs the tile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import kernels
from .core import conv, reconstruct
from .tiling import Tile, boundary_index, sample_positions

#: read(rows, cols) -> float64 array (bands, len(rows), len(cols)); index -1 means "cval".
Reader = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PreparedKernel:
    """A kernel ready for the numba core: flipped for correlation, split when separable."""

    weights: np.ndarray
    column: np.ndarray | None
    row: np.ndarray | None

    @property
    def ry(self) -> int:
        return self.weights.shape[0] // 2

    @property
    def rx(self) -> int:
        return self.weights.shape[1] // 2

    @classmethod
    def from_kernel(cls, kernel: np.ndarray) -> PreparedKernel:
        k = np.asarray(kernel, dtype=np.float64)
        if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
            raise ValueError(f"kernel must be 2-D with odd sides, got shape {k.shape}")
        flipped = np.ascontiguousarray(k[::-1, ::-1])
        sep = kernels.separate(flipped)
        if sep is None or min(k.shape) < 3:
            return cls(flipped, None, None)
        return cls(flipped, np.ascontiguousarray(sep.column), np.ascontiguousarray(sep.row))


@dataclass(frozen=True)
class TileSamples:
    """Where a tile at a stride samples, tile-local, and the block of input it needs."""

    rpos: np.ndarray
    cpos: np.ndarray
    src_rows: np.ndarray
    src_cols: np.ndarray


def tile_samples(
    tile: Tile, stride: int, height: int, width: int, kernel: PreparedKernel, mode: str
) -> TileSamples:
    """The sample grid of ``tile`` at ``stride`` and the source indices of its padded block.

    Block row ``i`` holds global row ``tile.row0 - ry + i``; the samples' windows start at
    block rows ``rpos`` (and columns ``cpos``).
    """
    rows = sample_positions(tile.row0, tile.row1, height, stride)
    cols = sample_positions(tile.col0, tile.col1, width, stride)
    src_rows = boundary_index(tile.row0 - kernel.ry, int(rows[-1]) + kernel.ry + 1, height, mode)
    src_cols = boundary_index(tile.col0 - kernel.rx, int(cols[-1]) + kernel.rx + 1, width, mode)
    return TileSamples(rows - tile.row0, cols - tile.col0, src_rows, src_cols)


def convolve_samples(
    block: np.ndarray, kernel: PreparedKernel, rpos: np.ndarray, cpos: np.ndarray, stride: int
) -> np.ndarray:
    """Convolution of every band of a padded ``block`` at the samples ``rpos`` x ``cpos``.

    ``cpos`` is a regular grid of ``stride`` from 0, optionally closed by one extra position.
    Returns float64 ``(bands, len(rpos), len(cpos))``.
    """
    n_grid = cpos.size
    if n_grid > 1 and cpos[-1] - cpos[-2] != stride:
        n_grid -= 1
    out = np.empty((block.shape[0], rpos.size, cpos.size), dtype=np.float64)
    for b in range(block.shape[0]):
        band = block[b]
        out[b, :, :n_grid] = _correlate(band, kernel, rpos, 0, stride, n_grid)
        if n_grid < cpos.size:
            out[b, :, n_grid:] = _correlate(band, kernel, rpos, int(cpos[-1]), 1, 1)
    return out


def _correlate(band: np.ndarray, kernel: PreparedKernel, rows: np.ndarray, col0: int,
               step: int, ncols: int) -> np.ndarray:
    if kernel.column is not None:
        return conv.correlate_separable_grid(
            band, kernel.column, kernel.row, rows, col0, step, ncols
        )
    return conv.correlate_grid(band, kernel.weights, rows, col0, step, ncols)


def reconstruct_tile(
    samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, h: int, w: int, method: str
) -> np.ndarray:
    """Full-resolution (bands, h, w) tile from its samples; stride-1 samples pass unchanged."""
    if rpos.size == h and cpos.size == w:
        return samples
    fn = reconstruct.bilinear if method == "bilinear" else reconstruct.nearest
    return np.stack([fn(samples[b], rpos, cpos, h, w) for b in range(samples.shape[0])])


def convolve_tile(
    read: Reader,
    tile: Tile,
    stride: int,
    height: int,
    width: int,
    kernel: PreparedKernel,
    mode: str,
    method: str = "bilinear",
) -> tuple[np.ndarray, np.ndarray]:
    """Convolve one tile at ``stride``; return (filtered tile, the tile's own input pixels).

    Every sample equals the dense convolution of the whole image at that pixel; with stride 1
    the tile equals the dense result exactly (up to float rounding).
    """
    ts = tile_samples(tile, stride, height, width, kernel, mode)
    block = read(ts.src_rows, ts.src_cols)
    samples = convolve_samples(block, kernel, ts.rpos, ts.cpos, stride)
    out = reconstruct_tile(samples, ts.rpos, ts.cpos, tile.height, tile.width, method)
    own = block[:, kernel.ry:kernel.ry + tile.height, kernel.rx:kernel.rx + tile.width]
    return out, own

