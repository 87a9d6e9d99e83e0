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
from .core import conv, reconstruct, surplus
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
        if sep is None or min(k.shape) < 5:  # below 5x5 the direct passes are faster
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
    evaluations it cost (samples plus pixels computed exactly next to invalid data).

    When asked for, the tile also reports what its samples say about its error, per band (NaN
    where there was nothing to measure): ``coarse``, the RMS surplus of its samples over the
    grid of twice its stride, and ``centre``, the RMS surplus of check samples halfway between
    its samples (refinement only; ``full_checks``: at every such point, not only at a lattice
    of cell centres; ``rechecked``: on a denser lattice after a first one; ``checks``: the
    evaluations those check samples took, part of ``evaluations``). ``stride`` is the stride
    the tile was executed at.
    """

    values: np.ndarray
    evaluations: int
    stride: int = 0
    coarse: np.ndarray | None = None
    centre: np.ndarray | None = None
    full_checks: bool = False
    checks: int = 0
    rechecked: bool = False


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
    """Convolution of every band of a padded, all-valid ``block`` at ``rpos`` x ``cpos``.

    ``cpos`` is a regular grid of ``stride`` from 0, optionally closed by one extra position.
    Returns ``(bands, len(rpos), len(cpos))`` in the block's type.
    """
    return np.stack([_band_samples(block[b], kernel, rpos, cpos)
                     for b in range(block.shape[0])])


def _band_samples(band: np.ndarray, kernel: PreparedKernel, rpos: np.ndarray,
                  cpos: np.ndarray) -> np.ndarray:
    """Plain convolution of an all-valid band at ``rpos`` x ``cpos``, in the band's type.

    In float32 an offset-heavy block is first shifted by its centre pixel (added back times
    the kernel's sum; ``core.conv.shift_offset`` decides): the sums then carry only the local
    variation, so a scene of uint16 reflectance near 10000 keeps float32's seven digits for
    the detail that matters.
    """
    if kernel.column is None:  # one compiled call: shift, runs and taps all inside
        # (_index inline: every band of every tile comes here, and a call costs 0.05 µs)
        if rpos.dtype is not _INT64_TYPE:
            rpos = rpos.astype(np.int64)
        if cpos.dtype is not _INT64_TYPE:
            cpos = cpos.astype(np.int64)
        return conv.correlate_samples(band, kernel.weights, rpos, cpos,
                                      band.dtype is _FLOAT32_TYPE or band.dtype.num == _FLOAT32,
                                      True)
    offset = 0.0
    if band.dtype.num == _FLOAT32:
        offset = float(conv.shift_offset(band, _index(rpos)))
        if offset:
            band = band - np.float32(offset)
    out = _at_runs(band, kernel, rpos, cpos, conv.shift_stays_finite(band, offset))
    if offset:
        out += np.float32(offset * kernel.weights.sum())
    return out


def _index(a: np.ndarray) -> np.ndarray:
    return a if a.dtype.num == _INT64 else a.astype(np.int64)


# (every band of every tile goes through here: comparing type numbers saves the conversion
# from a scalar type that comparing dtypes with ``==`` makes, about 0.1 µs each time; the
# native types' dtypes are singletons, which ``is`` recognises in a third of that, and any
# other int64 dtype is only converted once more)
_FLOAT32 = np.dtype(np.float32).num
_INT64 = np.dtype(np.int64).num
_FLOAT32_TYPE = np.dtype(np.float32)
_INT64_TYPE = np.dtype(np.int64)


def _masked_samples(band: np.ndarray, valid: np.ndarray, kernel: PreparedKernel,
                    rpos: np.ndarray, cpos: np.ndarray, min_fraction: float) -> np.ndarray:
    """Normalised convolution over the valid pixels at ``rpos`` x ``cpos``, NaN where undefined.

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
        den = _at_runs(m, part, rpos, cpos)
        num = _at_runs(xm, part, rpos, cpos)
        psum = float(part.weights.sum())
        has = den > 0.0
        defined &= has
        value += sign * num * (psum / np.where(has, den, 1.0))
        weight += den
    defined &= weight >= min_fraction * total * (1.0 - 1e-9)
    return np.where(defined, value, np.nan).astype(band.dtype, copy=False)


def _at_runs(band: np.ndarray, kernel: PreparedKernel, rows: np.ndarray,
             cols: np.ndarray, finite: bool = True) -> np.ndarray:
    """Correlation at ``rows`` x ``cols`` (increasing); the compiled core splits the columns
    into runs of equal steps (a tile's sample grid is one run, plus at most its closing
    column). The band holds no NaN or infinity (such pixels are invalid and never get
    here), unless ``finite`` says a shift may have overflowed one."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if kernel.column is None:
        return conv.correlate_samples(band, kernel.weights, rows, _index(cols), False, finite)
    return conv.correlate_separable_samples(band, kernel.column, kernel.row, rows, cols,
                                            finite)


_RECONSTRUCT = {"bilinear": reconstruct.bilinear, "nearest": reconstruct.nearest,
                "cubic": reconstruct.cubic, "spline": reconstruct.spline}


def _reconstruct(samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, h: int, w: int,
                 method: str) -> np.ndarray:
    if rpos[-1] == rpos.size - 1 == h - 1 and cpos[-1] == cpos.size - 1 == w - 1:
        return samples
    return _RECONSTRUCT[method](samples, rpos, cpos, h, w)


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


def _finish_band(samples: np.ndarray, band: np.ndarray, vb: np.ndarray | None,
                 kernel: PreparedKernel, rpos: np.ndarray, cpos: np.ndarray, h: int, w: int,
                 method: str, min_fraction: float,
                 masks: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, int]:
    """Reconstruct one band of a tile from its samples; next to invalid data, compute exactly
    every valid pixel that interpolation would get wrong. Returns the values (NaN = nodata)
    and the kernel evaluations that took. ``masks`` is ``_interpolated``'s, when known."""
    values = _reconstruct(samples, rpos, cpos, h, w, method)
    if vb is None:
        return values, 0
    centre, served = masks if masks is not None else _interpolated(vb, kernel, h, w)
    n = 0
    if values is not samples:
        # a sample is already the exact value at its pixel, whatever interpolation made of it
        ri, ci = np.flatnonzero(rpos < h), np.flatnonzero(cpos < w)
        grid = np.ix_(rpos[ri], cpos[ci])
        values[grid] = samples[np.ix_(ri, ci)]
        on_grid = np.zeros((h, w), dtype=bool)
        on_grid[grid] = True
        # (contiguous: np.nonzero gives strided views, or contiguous ones for one point, and
        # numba compiles one version per layout)
        rr, cc = map(np.ascontiguousarray, np.nonzero(
            centre & (~served | np.isnan(values)) & ~on_grid))
        values[rr, cc] = conv.correlate_masked_points(
            band, vb, kernel.positive, kernel.negative, rr, cc, min_fraction)
        n = rr.size
    values[~centre] = np.nan
    return values, n


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
    surplus: bool = False,
) -> TileResult:
    """Convolve one tile at ``stride``.

    Every sample equals the (normalised) dense convolution of the whole image at that pixel;
    with stride 1 the tile equals the dense result up to float rounding. NaN marks nodata.
    With ``surplus``, also measure the coarse surplus of the samples (no extra evaluations).
    A band without a valid pixel in the tile costs nothing and is all nodata; a tile where no
    band has one comes back as skipped (stride 0), as a plan would have marked it.
    """
    ts = tile_samples(tile, stride, height, width, kernel, mode)
    block, valid = read(ts.src_rows, ts.src_cols)
    h, w = tile.height, tile.width
    bands = block.shape[0]
    out = np.empty((bands, h, w), dtype=block.dtype)
    coarse = np.full(bands, np.nan) if surplus else None
    nsamples = ts.rpos.size * ts.cpos.size
    evaluations = 0
    empty = [valid is not None
             and not valid[b, kernel.ry:kernel.ry + h, kernel.rx:kernel.rx + w].any()
             for b in range(bands)]
    if all(empty):
        out.fill(np.nan)
        return TileResult(out, 0, 0, coarse)
    for b in range(bands):
        band = block[b]
        if empty[b]:
            out[b] = np.nan
            continue
        vb = None if valid is None or valid[b].all() else valid[b]
        if vb is None:
            samples = _band_samples(band, kernel, ts.rpos, ts.cpos)
        else:
            samples = _masked_samples(band, vb, kernel, ts.rpos, ts.cpos, min_fraction)
        evaluations += nsamples
        masks = None
        if coarse is not None and stride > 1:
            masks = _interpolated(vb, kernel, h, w)
            coarse[b] = _coarse_surplus(samples, ts.rpos, ts.cpos, h, w, method, masks)
        out[b], n = _finish_band(samples, band, vb, kernel, ts.rpos, ts.cpos, h, w, method,
                                 min_fraction, masks)
        evaluations += n
    return TileResult(out, evaluations, stride, coarse)


# ---------------------------------------------------------------- surpluses and refinement
#
# Sample grids are nested: every position of the stride-2s grid of a tile is also on its
# stride-s grid (both are multiples from the tile's origin, closed by the same last sample).
# The difference between a sample and what interpolating the coarser grid predicts at its
# position is its *surplus*; their RMS measures the coarser grid's reconstruction error.

def _interpolated(vb: np.ndarray | None, kernel: PreparedKernel, h: int,
                  w: int) -> tuple[np.ndarray, np.ndarray] | None:
    """For a masked band: (valid output pixels, pixels that interpolation serves: valid and with
    a window free of invalid data; the others are computed exactly). None when all is valid."""
    if vb is None:
        return None
    kh, kw = kernel.weights.shape
    centre = vb[kernel.ry:kernel.ry + h, kernel.rx:kernel.rx + w]
    return centre, centre & ~_touches_invalid(vb, kh, kw, h, w)


def _surplus_sums(values: np.ndarray, predicted: np.ndarray, rows: np.ndarray,
                  cols: np.ndarray, masks: tuple[np.ndarray, np.ndarray] | None,
                  points: np.ndarray | None = None) -> tuple[float, int]:
    """Sum of squares of the interpolation error ``values - predicted`` over the valid output
    pixels at ``rows`` x ``cols`` (restricted to ``points`` when given), zero where the
    executor computes the pixel exactly (next to invalid data), and how many pixels."""
    ok = np.isfinite(values)
    if points is not None:
        ok &= points
    if masks is not None:
        sel = np.ix_(rows, cols)
        ok &= masks[0][sel]
        used = ok & masks[1][sel] & np.isfinite(predicted)
    else:
        used = ok & np.isfinite(predicted)
    diff = values[used] - predicted[used]
    return float(np.sum(diff * diff)), int(ok.sum())


def _interpolate_at(samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray,
                    rows: np.ndarray, cols: np.ndarray, method: str) -> np.ndarray:
    return reconstruct.interpolate(samples, rpos, cpos, rows, cols,
                                   reconstruct.METHOD_CODES[method])


_NO_MASK = np.zeros((0, 0), dtype=bool)


def _coarse_surplus(samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, h: int, w: int,
                    method: str, masks: tuple[np.ndarray, np.ndarray] | None) -> float:
    """RMS surplus of a band's samples over the grid of every other sample (twice the stride):
    the reconstruction error the tile would have at twice its stride, measured for free."""
    nr, nc = int(np.count_nonzero(rpos < h)), int(np.count_nonzero(cpos < w))  # in the tile
    centre, served = masks if masks is not None else (_NO_MASK, _NO_MASK)
    # (contiguous arguments: one compiled version, not one per memory layout)
    sq, n = surplus.coarse_sums(np.ascontiguousarray(samples), rpos, cpos, nr, nc,
                                reconstruct.METHOD_CODES[method], np.ascontiguousarray(centre),
                                np.ascontiguousarray(served))
    return float(np.sqrt(sq / n)) if n else float("nan")


def _samples_at(band: np.ndarray, vb: np.ndarray | None, kernel: PreparedKernel,
                rows: np.ndarray, cols: np.ndarray, min_fraction: float) -> np.ndarray:
    """(Normalised) convolution of one band at ``rows`` x ``cols`` (tile-local positions),
    computed exactly as a tile's own samples are."""
    if vb is None:
        return _band_samples(band, kernel, rows, cols)
    return _masked_samples(band, vb, kernel, rows, cols, min_fraction)


def _check_places(rpos: np.ndarray, cpos: np.ndarray, half_r: np.ndarray,
                  half_c: np.ndarray, h: int, w: int,
                  checks: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
    """Where to check a tile's samples: blocks of (rows, cols) on the half-stride grid, inside
    the tile, and whether they are all of its points off the sample grid (cell centres and edge
    midpoints: when there are at most ``checks`` of them) rather than a sub-lattice of cell
    centres (at least ``checks`` of them where the tile has that many cells; evenly spread,
    the rows and columns next to the tile's edges included)."""
    odd_r, odd_c = _centres(rpos, cpos, half_r, half_c, h, w)
    in_c = half_c[half_c < w]
    even_r = rpos[rpos < h]
    if odd_r.size * in_c.size + even_r.size * odd_c.size <= checks:
        places = [(odd_r, in_c), (even_r, odd_c)]
        return [(r, c) for r, c in places if r.size and c.size], True
    if not (odd_r.size and odd_c.size):
        return [], False
    m = 1
    while (odd_r.size // (2 * m)) * (odd_c.size // (2 * m)) >= checks:
        m *= 2
    return [(_spread(odd_r, m), _spread(odd_c, m))], False


def _centres(rpos: np.ndarray, cpos: np.ndarray, half_r: np.ndarray, half_c: np.ndarray,
             h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the cell centres inside the tile: the half-stride positions off
    the sample grid."""
    return (half_r[~np.isin(half_r, rpos) & (half_r < h)],
            half_c[~np.isin(half_c, cpos) & (half_c < w)])


def _recheck_places(rpos: np.ndarray, cpos: np.ndarray, half_r: np.ndarray,
                    half_c: np.ndarray, h: int, w: int,
                    checked: list[tuple[np.ndarray, np.ndarray]],
                    budget: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Where to check a tile once more: a lattice of cell centres (evenly spread, the rows
    and columns next to the tile's edges included) of at most ``budget`` points and 16 times
    the ``checked`` ones, less those; nothing unless that at least doubles the checks."""
    odd_r, odd_c = _centres(rpos, cpos, half_r, half_c, h, w)
    first = sum(r.size * c.size for r, c in checked)
    count = min(16 * first, budget)
    if not (odd_r.size and odd_c.size and first):
        return []
    f = min(1.0, float(np.sqrt(count / (odd_r.size * odd_c.size))))
    lattice = [(_evenly(odd_r, int(odd_r.size * f)), _evenly(odd_c, int(odd_c.size * f)))]
    more = _minus(lattice, checked)
    return more if sum(r.size * c.size for r, c in more) >= first else []


def _spread(idx: np.ndarray, m: int) -> np.ndarray:
    """Every ``m``-th of ``idx`` on average, always with its first and last: the rows and
    columns of cell centres next to the tile's edges are checked, where what lies just outside
    the tile (in the kernel's halo) shows first."""
    return _evenly(idx, idx.size // m)


def _evenly(idx: np.ndarray, k: int) -> np.ndarray:
    """``k`` of ``idx`` evenly spread, its first and last among them (the middle one for 1)."""
    k = max(k, 1)
    if k == 1:
        return idx[idx.size // 2: idx.size // 2 + 1]
    return idx[np.unique(np.round(np.linspace(0, idx.size - 1, k)).astype(np.int64))]


#: accept(stride, checks, coarse, full, rechecked) -> how far the tile's error estimate at
#: ``stride`` is over its tolerance (the largest ratio over bands: at most 1 lets the tile stop
#: there), given per band the RMS surplus at the check points and the RMS coarse surplus (NaN
#: where unmeasured); ``full``: the checks were every half-stride point of the tile, not a
#: lattice; ``rechecked``: they include a second, denser lattice (``RECHECK_WITHIN``).
Acceptor = Callable[[int, np.ndarray, np.ndarray, bool, bool], float]

#: A tile whose estimate is over its tolerance by at most this factor is checked again, once,
#: on a denser lattice of cell centres before it is refined: a few dozen check samples scatter
#: widely around the error they estimate (on world.byte.tif at stride 4, from a quarter to 1.5
#: times it), the cell centres all together hardly at all (0.92-1.01 times).
RECHECK_WITHIN = 2.0
#: The recheck's new samples cost at most this share of the evaluations refining would add.
RECHECK_SHARE = 0.25


def _minus(places: list[tuple[np.ndarray, np.ndarray]],
           done: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The points of the ``places`` blocks (rows x cols) that no ``done`` block holds, as
    disjoint blocks."""
    out = places
    for dr, dc in done:
        split = []
        for r, c in out:
            r_in = np.isin(r, dr)
            split.append((r[~r_in], c))
            split.append((r[r_in], c[~np.isin(c, dc)]))
        out = [(r, c) for r, c in split if r.size and c.size]
    return out


def _check(block: np.ndarray, vbs: list, kernel: PreparedKernel, grid: np.ndarray,
           rpos: np.ndarray, cpos: np.ndarray, places: list[tuple[np.ndarray, np.ndarray]],
           masks: list, method: str, min_fraction: float,
           ) -> tuple[list, np.ndarray, np.ndarray]:
    """Evaluate the check samples at ``places`` and what they show per band about what
    interpolating ``grid`` predicts there: the checks as (rows, cols, values) blocks, and per
    band the sum of squared surpluses and how many points count (``_rms`` of the two)."""
    bands = block.shape[0]
    found = []
    sums = np.zeros(bands)
    counts = np.zeros(bands, dtype=np.int64)
    for pr, pc in places:
        vals = np.stack([_samples_at(block[b], vbs[b], kernel, pr, pc, min_fraction)
                         for b in range(bands)])
        found.append((pr, pc, vals))
        for b in range(bands):
            pred = _interpolate_at(grid[b], rpos, cpos, pr, pc, method)
            sq, n = _surplus_sums(vals[b], pred, pr, pc, masks[b])
            sums[b] += sq
            counts[b] += n
    return found, sums, counts


def _rms(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.where(counts > 0, np.sqrt(sums / np.maximum(counts, 1)), np.nan)


def _finer_grid(block: np.ndarray, vbs: list, kernel: PreparedKernel,
                known_blocks: list, rf: np.ndarray, cf: np.ndarray,
                min_fraction: float) -> tuple[np.ndarray, int]:
    """The samples of every band at ``rf`` x ``cf``: those in ``known_blocks`` (rows, cols,
    values) are reused, only the others are evaluated. Returns the grid and the evaluations."""
    bands = block.shape[0]
    new = np.full((bands, rf.size, cf.size), np.nan)
    known = np.zeros((rf.size, cf.size), dtype=bool)
    for pr, pc, vals in known_blocks:
        # (the stride-1 grid has no closing sample: a coarser grid's is not carried over)
        kr, kc = np.isin(pr, rf), np.isin(pc, cf)
        if kr.any() and kc.any():
            sel = np.ix_(np.searchsorted(rf, pr[kr]), np.searchsorted(cf, pc[kc]))
            new[(slice(None), *sel)] = vals[:, kr][:, :, kc]
            known[sel] = True
    groups: dict[bytes, list[int]] = {}  # rows missing the same columns
    for i in range(rf.size):
        if not known[i].all():
            groups.setdefault(np.packbits(~known[i]).tobytes(), []).append(i)
    evaluations = 0
    for members in groups.values():
        rows = np.asarray(members, dtype=np.int64)
        cols = np.flatnonzero(~known[members[0]])
        for b in range(bands):
            new[b][np.ix_(rows, cols)] = _samples_at(block[b], vbs[b], kernel, rf[rows],
                                                     cf[cols], min_fraction)
        evaluations += rows.size * cols.size * bands
    return new, evaluations


def _predicted_exact(rpos: np.ndarray, cpos: np.ndarray, vb: np.ndarray,
                  masks: tuple[np.ndarray, np.ndarray], kernel: PreparedKernel, h: int, w: int,
                  method: str, min_fraction: float) -> int:
    """How many pixels ``_finish_band`` will compute exactly next to invalid data with samples
    at ``rpos`` x ``cpos``, predicted from the validity alone (no kernel evaluation): a sample
    is taken as undefined when the valid pixels fill less than ``min_fraction`` of the
    kernel's box (a proxy for its weight), and a pixel interpolated from an undefined sample is
    computed exactly, as is every valid pixel off the sample grid whose window touches invalid
    data."""
    kh, kw = kernel.weights.shape
    count = np.zeros((vb.shape[0] + 1, vb.shape[1] + 1), dtype=np.int64)
    count[1:, 1:] = np.cumsum(np.cumsum(vb, axis=0), axis=1)
    r, c = np.ix_(rpos, cpos)
    inside = count[r + kh, c + kw] - count[r, c + kw] - count[r + kh, c] + count[r, c]
    samples = np.where(inside < min_fraction * kh * kw, np.nan, 0.0)
    values = _reconstruct(samples, rpos, cpos, h, w, method)
    if values is samples:  # every pixel a sample
        return 0
    centre, served = masks
    on_grid = np.zeros((h, w), dtype=bool)
    on_grid[np.ix_(rpos[rpos < h], cpos[cpos < w])] = True
    return int(np.count_nonzero(centre & (~served | np.isnan(values)) & ~on_grid))


#: Without nodata, a stride costs at most the next finer one (its checks are points of the
#: finer grid), as much only when it checks every such point and the finer one checks none:
#: on a tile of at most this many times ``checks`` pixels, or one too thin for the finer
#: grid to have points between its samples (``_tiny``). Other all-valid tiles skip the
#: comparison (a few hundred microseconds of Python per tile).
TINY_TILE = 4


def _tiny(h: int, w: int, coarsest: int, checks: int) -> bool:
    """Whether an all-valid ``h`` x ``w`` tile needs ``_worth_trying``'s comparison."""
    return min(h, w) < 2 * coarsest or h * w <= TINY_TILE * checks


def _worth_trying(order: list[int], tile: Tile, height: int, width: int,
                  kernel: PreparedKernel, vbs: list, masks: list, method: str,
                  min_fraction: float, checks: int) -> list[int]:
    """The strides of ``order`` (descending) that are predicted to cost less than every finer
    one, counting the samples, the check samples a stride takes before the tile may stop there
    (none at the finest) and the pixels next to nodata that are computed exactly. Next to
    nodata a coarse stride can cost more than a finer one (interpolation reaches further, so
    more pixels next to undefined samples are computed exactly), and on a tile a few pixels
    across its samples and checks can outnumber the pixels: such a stride is no cheaper and
    less accurate, and the tile does not start there."""
    h, w = tile.height, tile.width
    kept: list[int] = []
    best = np.inf
    for s in reversed(order):
        rpos = sample_positions(tile.row0, tile.row1, height, s) - tile.row0
        cpos = sample_positions(tile.col0, tile.col1, width, s) - tile.col0
        cost = rpos.size * cpos.size * len(vbs) + sum(
            _predicted_exact(rpos, cpos, vb, m, kernel, h, w, method, min_fraction)
            for vb, m in zip(vbs, masks, strict=True) if vb is not None and m is not None)
        if kept:  # not the finest: the tile is checked before it may stop here
            half_r = sample_positions(tile.row0, tile.row1, height, s // 2) - tile.row0
            half_c = sample_positions(tile.col0, tile.col1, width, s // 2) - tile.col0
            places, _ = _check_places(rpos, cpos, half_r, half_c, h, w, checks)
            cost += sum(r.size * c.size for r, c in places) * len(vbs)
        if cost < best or not kept:
            kept.append(s)
            best = min(best, cost)
    return kept[::-1]


def refine_tile(
    read: Reader,
    tile: Tile,
    strides: list[int],
    height: int,
    width: int,
    kernel: PreparedKernel,
    mode: str,
    accept: Acceptor,
    method: str = "bilinear",
    min_fraction: float = 0.5,
    checks: int = 32,
) -> TileResult:
    """Convolve one tile at the coarsest of ``strides`` that ``accept`` allows.

    The tile starts at the coarsest stride that is predicted to cost less than every finer
    one (next to nodata, or on a tile a few pixels across, a coarser stride can cost more:
    ``_worth_trying``). At each stride,
    check samples on the half-stride grid (``_check_places``) are compared with what
    interpolating the samples predicts there; with the coarse surplus of the samples
    themselves, ``accept`` decides whether the tile stops. A tile just over its tolerance is
    checked once more on a denser lattice of cell centres (``RECHECK_WITHIN``, for at most
    ``RECHECK_SHARE`` of what refining would cost). If it still may not stop, the tile moves to
    the next finer stride: its grid contains the samples and the checks already computed, and
    only the missing positions are evaluated. The finest stride is accepted without checks.
    Nothing is computed twice: the evaluations are the final grid's samples plus the last
    level's checks (and the pixels next to invalid data that are always computed exactly).
    """
    order = sorted(strides, reverse=True)
    ts = tile_samples(tile, order[0], height, width, kernel, mode)
    block, valid = read(ts.src_rows, ts.src_cols)
    h, w = tile.height, tile.width
    bands = block.shape[0]
    vbs = [None if valid is None or valid[b].all() else valid[b] for b in range(bands)]
    masks = [_interpolated(vb, kernel, h, w) for vb in vbs]
    if any(vb is not None for vb in vbs) or _tiny(h, w, order[0], checks):
        # (the block read for the coarsest stride holds every finer grid's windows)
        order = _worth_trying(order, tile, height, width, kernel, vbs, masks, method,
                              min_fraction, checks)
    rpos = sample_positions(tile.row0, tile.row1, height, order[0]) - tile.row0
    cpos = sample_positions(tile.col0, tile.col1, width, order[0]) - tile.col0
    grid = np.stack([_samples_at(block[b], vbs[b], kernel, rpos, cpos, min_fraction)
                     for b in range(bands)])
    evaluations = grid[0].size * bands
    level = 0
    while True:
        stride = order[level]
        coarse = np.array([_coarse_surplus(grid[b], rpos, cpos, h, w, method, masks[b])
                           for b in range(bands)])
        if level == len(order) - 1:
            centre, full, checked, rechecked = np.full(bands, np.nan), False, 0, False
            break
        half_r = sample_positions(tile.row0, tile.row1, height, stride // 2) - tile.row0
        half_c = sample_positions(tile.col0, tile.col1, width, stride // 2) - tile.col0
        places, full = _check_places(rpos, cpos, half_r, half_c, h, w, checks)
        found, sums, counts = _check(block, vbs, kernel, grid, rpos, cpos, places, masks,
                                     method, min_fraction)
        checked = sum(v[0].size for _, _, v in found) * bands
        centre = _rms(sums, counts)
        rechecked = False
        excess = accept(stride, centre, coarse, full, rechecked)
        rf = sample_positions(tile.row0, tile.row1, height, order[level + 1]) - tile.row0
        cf = sample_positions(tile.col0, tile.col1, width, order[level + 1]) - tile.col0
        if 1.0 < excess <= RECHECK_WITHIN and not full:
            refining = (rf.size * cf.size - grid[0].size) * bands - checked
            more = _recheck_places(rpos, cpos, half_r, half_c, h, w, places,
                                   int(RECHECK_SHARE * refining) // bands)
            if more:
                extra, s2, c2 = _check(block, vbs, kernel, grid, rpos, cpos, more, masks,
                                       method, min_fraction)
                found += extra
                checked += sum(v[0].size for _, _, v in extra) * bands
                centre = _rms(sums + s2, counts + c2)
                rechecked = True
                excess = accept(stride, centre, coarse, full, rechecked)
        evaluations += checked
        if excess <= 1.0:
            break
        level += 1
        grid, n = _finer_grid(block, vbs, kernel, [(rpos, cpos, grid), *found], rf, cf,
                              min_fraction)
        evaluations += n
        rpos, cpos = rf, cf
    out = np.empty((bands, h, w), dtype=np.float64)
    for b in range(bands):
        out[b], n = _finish_band(grid[b], block[b], vbs[b], kernel, rpos, cpos, h, w, method,
                                 min_fraction, masks[b])
        evaluations += n
    return TileResult(out, evaluations, order[level], coarse, centre, full, checked, rechecked)
