"""Convolution of one tile at a stride: the public face of the numba kernels in ``core``.

The caller supplies a ``read`` function that returns the input (and its validity) at given
source indices; this module decides which indices a tile needs (its samples plus the kernel's
halo, extended past the image edges by the boundary mode), computes the samples and
reconstructs the tile.

Invalid pixels (nodata, masked, NaN) are never used as data. Where a kernel window holds
invalid pixels, the result is the *normalised convolution* over the valid ones: the kernel is
split into its positive part ``K+`` and negative part ``K-``, and each part is rescaled by the
share of its weight that falls on valid pixels::

    Y = sum(K+ X M) * sum(K+) / sum(K+ M)  -  sum(K- X M) * sum(K-) / sum(K- M)

With every pixel valid this is exactly ``sum(K X)``. For a kernel of one sign (Gaussian, box)
it is the usual ``sum(K X M) / sum(K M)`` rescaled to the kernel's gain; for zero-sum kernels
(Sobel, Laplacian) each part is renormalised on its own, so a flat valid region still gives 0
next to a hole instead of a spurious edge. An output pixel is nodata when its own pixel is
invalid, when the valid pixels carry less than ``min_fraction`` of the kernel's absolute
weight, or when one part of the kernel sees no valid pixel at all.

At a stride, the samples are exact; a pixel is interpolated only when its own kernel window is
entirely valid and the samples it interpolates between are valid. Every other valid pixel (the
ring of pixels within a kernel radius of a hole) is computed exactly, so nothing bleeds across
nodata at any stride.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import kernels
from .core import conv, reconstruct
from .tiling import Tile, boundary_index, sample_positions

#: read(rows, cols) -> (data (bands, len(rows), len(cols)), valid bool or None); index -1 means
#: "outside, cval". The data's type (float32 or float64) is the type the tile is computed in.
Reader = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class PreparedKernel:
    """A kernel ready for the numba core: flipped for correlation, split when separable, and
    split into its positive part and the magnitude of its negative part for masked data."""

    weights: np.ndarray
    column: np.ndarray | None
    row: np.ndarray | None
    positive: np.ndarray
    negative: np.ndarray
    parts: tuple[PreparedKernel | None, PreparedKernel | None] = (None, None)

    @property
    def ry(self) -> int:
        return self.weights.shape[0] // 2

    @property
    def rx(self) -> int:
        return self.weights.shape[1] // 2

    @classmethod
    def from_kernel(cls, kernel: np.ndarray, with_parts: bool = True) -> PreparedKernel:
        """Prepare ``kernel``; ``parts`` holds its positive part and the magnitude of its
        negative part as kernels of their own (None when empty), for normalised convolution."""
        k = np.asarray(kernel, dtype=np.float64)
        if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
            raise ValueError(f"kernel must be 2-D with odd sides, got shape {k.shape}")
        flipped = np.ascontiguousarray(k[::-1, ::-1])
        pos = np.ascontiguousarray(np.maximum(flipped, 0.0))
        neg = np.ascontiguousarray(np.maximum(-flipped, 0.0))
        parts: tuple[PreparedKernel | None, PreparedKernel | None] = (None, None)
        if with_parts:
            parts = tuple(  # type: ignore[assignment]
                cls.from_kernel(np.maximum(sign * k, 0.0), with_parts=False)
                if (sign * k > 0).any() else None
                for sign in (1.0, -1.0)
            )
        sep = kernels.separate(flipped)
        if sep is None or min(k.shape) < 3:
            return cls(flipped, None, None, pos, neg, parts)
        return cls(flipped, np.ascontiguousarray(sep.column), np.ascontiguousarray(sep.row),
                   pos, neg, parts)


@dataclass(frozen=True)
class TileSamples:
    """Where a tile at a stride samples, tile-local, and the block of input it needs."""

    rpos: np.ndarray
    cpos: np.ndarray
    src_rows: np.ndarray
    src_cols: np.ndarray


@dataclass(frozen=True)
class TileResult:
    """A filtered tile (bands, h, w), NaN where the output is nodata, and the number of kernel
    evaluations it cost (samples plus pixels computed exactly next to invalid data)."""

    values: np.ndarray
    evaluations: int


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


def _grid_split(cpos: np.ndarray, stride: int) -> int:
    """How many of ``cpos`` lie on the regular grid (the rest is the closing sample)."""
    n = cpos.size
    return n - 1 if n > 1 and cpos[-1] - cpos[-2] != stride else n


def convolve_samples(
    block: np.ndarray, kernel: PreparedKernel, rpos: np.ndarray, cpos: np.ndarray, stride: int
) -> np.ndarray:
    """Convolution of every band of a padded, all-valid ``block`` at ``rpos`` x ``cpos``.

    ``cpos`` is a regular grid of ``stride`` from 0, optionally closed by one extra position.
    Returns ``(bands, len(rpos), len(cpos))`` in the block's type.
    """
    return np.stack([_band_samples(block[b], kernel, rpos, cpos, stride)
                     for b in range(block.shape[0])])


def _band_samples(band: np.ndarray, kernel: PreparedKernel, rpos: np.ndarray,
                  cpos: np.ndarray, stride: int) -> np.ndarray:
    """Plain convolution of an all-valid band at the samples, in the band's type.

    In float32 the block is first shifted by its centre pixel (added back times the kernel's
    sum): the sums then carry only the local variation, so an offset-heavy scene (uint16
    reflectance near 10000) keeps float32's seven digits for the detail that matters.
    """
    offset = 0.0
    if band.dtype == np.float32:
        offset = float(band[band.shape[0] // 2, band.shape[1] // 2])
        if offset:
            band = band - np.float32(offset)
    out = _grid_samples(band, kernel, rpos, cpos, stride)
    if offset:
        out += np.float32(offset * kernel.weights.sum())
    return out


def _masked_samples(band: np.ndarray, valid: np.ndarray, kernel: PreparedKernel,
                    rpos: np.ndarray, cpos: np.ndarray, stride: int,
                    min_fraction: float) -> np.ndarray:
    """Normalised convolution over the valid pixels at the samples, NaN where undefined.

    Each kernel part is applied to ``X*M`` and to ``M`` with the same (vectorised, separable
    where possible) correlation as plain data, in float64; the rules are those of
    ``core.conv.correlate_masked_points``, which computes single points the same way.
    """
    m = valid.astype(np.float64)
    xm = np.where(valid, band, 0.0).astype(np.float64)
    total = float(np.abs(kernel.weights).sum())
    value = np.zeros((rpos.size, cpos.size))
    weight = np.zeros((rpos.size, cpos.size))
    defined = np.ones((rpos.size, cpos.size), dtype=bool)
    for part, sign in zip(kernel.parts, (1.0, -1.0), strict=True):
        if part is None:
            continue
        den = _grid_samples(m, part, rpos, cpos, stride)
        num = _grid_samples(xm, part, rpos, cpos, stride)
        psum = float(part.weights.sum())
        has = den > 0.0
        defined &= has
        value += sign * num * (psum / np.where(has, den, 1.0))
        weight += den
    defined &= weight >= min_fraction * total * (1.0 - 1e-9)
    return np.where(defined, value, np.nan).astype(band.dtype, copy=False)


def _grid_samples(band: np.ndarray, kernel: PreparedKernel, rpos: np.ndarray,
                  cpos: np.ndarray, stride: int) -> np.ndarray:
    n_grid = _grid_split(cpos, stride)
    out = _correlate(band, kernel, rpos, 0, stride, n_grid)
    if n_grid < cpos.size:
        out = np.concatenate([out, _correlate(band, kernel, rpos, int(cpos[-1]), 1, 1)], axis=1)
    return out


def _correlate(band: np.ndarray, kernel: PreparedKernel, rows: np.ndarray, col0: int,
               step: int, ncols: int) -> np.ndarray:
    dt = band.dtype
    if kernel.column is not None:
        return conv.correlate_separable_grid(
            band, kernel.column.astype(dt, copy=False), kernel.row.astype(dt, copy=False), rows,
            col0, step, ncols)
    return conv.correlate_grid(band, kernel.weights.astype(dt, copy=False), rows, col0, step,
                               ncols)


def _reconstruct(samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, h: int, w: int,
                 method: str) -> np.ndarray:
    if rpos[-1] == rpos.size - 1 == h - 1 and cpos[-1] == cpos.size - 1 == w - 1:
        return samples
    fn = reconstruct.bilinear if method == "bilinear" else reconstruct.nearest
    return fn(samples, rpos, cpos, h, w)


def reconstruct_tile(
    samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, h: int, w: int, method: str
) -> np.ndarray:
    """Full-resolution (bands, h, w) tile from its samples; stride-1 samples pass unchanged."""
    return np.stack([_reconstruct(samples[b], rpos, cpos, h, w, method)
                     for b in range(samples.shape[0])])


def _touches_invalid(valid: np.ndarray, kh: int, kw: int, h: int, w: int) -> np.ndarray:
    """For each tile pixel, whether its kernel window in the block holds an invalid pixel."""
    bad = np.zeros((valid.shape[0] + 1, valid.shape[1] + 1), dtype=np.int64)
    bad[1:, 1:] = np.cumsum(np.cumsum(~valid, axis=0), axis=1)
    count = bad[kh:kh + h, kw:kw + w] - bad[:h, kw:kw + w] - bad[kh:kh + h, :w] + bad[:h, :w]
    return count > 0


def convolve_tile(
    read: Reader,
    tile: Tile,
    stride: int,
    height: int,
    width: int,
    kernel: PreparedKernel,
    mode: str,
    method: str = "bilinear",
    min_fraction: float = 0.5,
) -> TileResult:
    """Convolve one tile at ``stride``.

    Every sample equals the (normalised) dense convolution of the whole image at that pixel;
    with stride 1 the tile equals the dense result up to float rounding. NaN marks nodata.
    """
    ts = tile_samples(tile, stride, height, width, kernel, mode)
    block, valid = read(ts.src_rows, ts.src_cols)
    h, w = tile.height, tile.width
    kh, kw = kernel.weights.shape
    out = np.empty((block.shape[0], h, w), dtype=block.dtype)
    nsamples = ts.rpos.size * ts.cpos.size
    evaluations = 0
    for b in range(block.shape[0]):
        band = block[b]
        vb = None if valid is None or valid[b].all() else valid[b]
        if vb is None:
            out[b] = _reconstruct(_band_samples(band, kernel, ts.rpos, ts.cpos, stride),
                                  ts.rpos, ts.cpos, h, w, method)
            evaluations += nsamples
            continue
        samples = _masked_samples(band, vb, kernel, ts.rpos, ts.cpos, stride, min_fraction)
        values = _reconstruct(samples, ts.rpos, ts.cpos, h, w, method)
        evaluations += nsamples
        centre = vb[kernel.ry:kernel.ry + h, kernel.rx:kernel.rx + w]
        if values is not samples:
            redo = centre & (_touches_invalid(vb, kh, kw, h, w) | np.isnan(values))
            rr, cc = np.nonzero(redo)
            values[rr, cc] = conv.correlate_masked_points(
                band, vb, kernel.positive, kernel.negative, rr, cc, min_fraction)
            evaluations += rr.size
        values[~centre] = np.nan
        out[b] = values
    return TileResult(out, evaluations)
