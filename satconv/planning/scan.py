"""The plan pass: read the scene tile by tile (no halo) and summarise every tile per band.

What every policy needs: the aggregated window variance (the error model's input), the value
range, the range of window means (for the output's value range), the valid pixels, and, per
stride, how many valid pixels the executor will compute exactly because invalid data is near:
within a kernel's reach, or under a sample that is nodata (interpolation cannot use it). Those
count in the compute a plan will spend.

Each tile is read with the kernel's halo. The policies' statistic is the tile's own (SPEC:
"windowed variance inside each tile"); the same statistic over tile and halo (``reach``) also
sees what lies within a kernel radius outside the tile, which shapes the tile's output too (a
coastline just past its border): error estimates use it. A tile whose valid data is one
constant over tile and halo (``still``) has a constant output: any stride is exact there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import raster_io, tiling
from ..core import reconstruct
from ..parallel import map_shares
from ..raster_io import RasterInfo
from ..tile_cache import TileCache
from ..tiling import Tile, TileGrid
from . import variance


@dataclass(frozen=True)
class SceneStats:
    """Per tile ``(ny, nx)`` and band ``(..., bands)`` summaries of a scene."""

    grid: TileGrid
    statistic: np.ndarray
    reach: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    mean_min: np.ndarray
    mean_max: np.ndarray
    nvalid: np.ndarray
    exact: np.ndarray
    still: np.ndarray

    @property
    def bands(self) -> int:
        return self.statistic.shape[-1]

    def band_range(self) -> np.ndarray:
        """Each band's valid value range over the scene (0 for a band without data)."""
        return _span(self.vmin, self.vmax)

    def mean_range(self) -> np.ndarray:
        """Each band's range of window means over the scene: a smoothing kernel's output range
        (an underestimate, as the windows are at least as wide as the kernel averages:
        ``ScanSpec.mean_window``). A band whose window means do not spread at all (a scene of
        one window) takes its value range instead."""
        means = _span(self.mean_min, self.mean_max)
        return np.where(means > 0, means, self.band_range())


def _span(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    out = np.zeros(lo.shape[-1])
    for b in range(lo.shape[-1]):
        if np.isfinite(hi[..., b]).any():
            out[b] = float(np.nanmax(hi[..., b]) - np.nanmin(lo[..., b]))
    return out


@functools.lru_cache(maxsize=256)
def _axis(n: int, after: int, stride: int, method: int) -> tuple[np.ndarray, np.ndarray]:
    """A tile's samples along an axis of ``n`` pixels with ``after`` more in the image
    (tile-local positions, as ``tiling.sample_positions`` places them), and the ``(n, 4)``
    samples each pixel reads when ``core.reconstruct`` interpolates with ``method``: those
    it gives a non-zero weight (a pixel on a sample reads that sample alone), the others -1."""
    pos = tiling.sample_positions(0, n, n + after, stride)
    idx, wts = reconstruct.axis_taps(pos, np.arange(n, dtype=np.float64), method)
    taps = np.where(wts != 0, idx, -1)
    pos.setflags(write=False)
    taps.setflags(write=False)
    return pos, taps


def _reading(bad: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Which pixels read a ``bad`` sample, given the taps (``_axis``) of their rows and
    columns: the columns first, then the rows, as the reconstruction is separable."""
    by_col = np.zeros((bad.shape[0], cols.shape[0]), dtype=bool)
    for t in range(cols.shape[1]):
        use = cols[:, t] >= 0
        by_col[:, use] |= bad[:, cols[use, t]]
    out = np.zeros((rows.shape[0], cols.shape[0]), dtype=bool)
    for t in range(rows.shape[1]):
        use = rows[:, t] >= 0
        out[use] |= by_col[rows[use, t]]
    return out


def _exact_pixels(valid: np.ndarray, tile: tuple[int, int, int, int], room: tuple[int, int],
                  kernel_shape: tuple[int, int], strides: tuple[int, ...],
                  method: int) -> np.ndarray:
    """Per stride, the valid pixels (all bands) of a tile that the executor computes exactly,
    off its sample grid: those whose kernel window holds an invalid pixel, and those whose
    interpolation (``method``, a ``core.reconstruct`` code) reads a sample at an invalid pixel.

    ``valid`` covers the tile and what was read around it; the tile is ``valid[:, y:y + h,
    x:x + w]`` for ``tile = (y, x, h, w)``, and ``room`` counts the image's rows and columns
    after it (which place a strided grid's closing sample, as ``tiling.sample_positions``
    does). Pixels outside ``valid`` count as valid. Stride 1 computes every pixel as a sample:
    nothing extra."""
    y, x, h, w = tile
    kh, kw = kernel_shape
    ry, rx = kh // 2, kw // 2
    out = np.zeros(len(strides), dtype=np.int64)
    if valid.all():
        return out
    if len(valid) > 1 and all(np.array_equal(valid[0], v) for v in valid[1:]):  # one mask
        return _exact_pixels(valid[:1], tile, room, kernel_shape, strides,
                             method) * valid.shape[0]
    # per stride: where its samples lie in ``valid``, the taps of each axis, and the tile's
    # pixels off its grid (a sample is exact already: never computed again). (Only a
    # stride's worth of room can place the closing sample: one cache entry for all inner
    # tiles.)
    grids = {}
    for s in strides:
        if s > 1:
            rows, row_taps = _axis(h, min(room[0], s), s, method)
            cols, col_taps = _axis(w, min(room[1], s), s, method)
            off_grid = np.ones((h, w), dtype=bool)
            off_grid[np.ix_(rows[rows < h], cols[cols < w])] = False
            at = np.ix_(np.minimum(y + rows, valid.shape[1] - 1),
                        np.minimum(x + cols, valid.shape[2] - 1))
            grids[s] = (at, row_taps, col_taps, off_grid)
    for ok in valid:
        if ok.all():
            continue
        acc = np.zeros((ok.shape[0] + 2 * ry + 1, ok.shape[1] + 2 * rx + 1), dtype=np.int64)
        acc[1:, 1:] = np.cumsum(np.cumsum(np.pad(~ok, ((ry, ry), (rx, rx))), axis=0), axis=1)
        near = (acc[y + kh:y + kh + h, x + kw:x + kw + w] - acc[y:y + h, x + kw:x + kw + w]
                - acc[y + kh:y + kh + h, x:x + w] + acc[y:y + h, x:x + w]) > 0
        own = ok[y:y + h, x:x + w]
        for k, s in enumerate(strides):
            if s == 1:
                continue
            at, row_taps, col_taps, off_grid = grids[s]
            bad = ~ok[at]
            spoiled = near | _reading(bad, row_taps, col_taps) if bad.any() else near
            out[k] += int((own & spoiled & off_grid).sum())
    return out


@dataclass(frozen=True)
class ScanSpec:
    """What one plan needs summarised: the window statistic, and the kernel's footprint,
    strides and reconstruction (for the halo statistic and the exact-pixel counts): a
    ``core.reconstruct`` method code, of the method whose samples a pixel reads."""

    window: int
    statistic: str
    kernel_shape: tuple[int, int]
    strides: tuple[int, ...]
    method: int
    #: the window of the means whose range estimates the output's (``SceneStats.mean_range``)
    mean_window: int | None = None

    @property
    def halo(self) -> int:
        return max(self.kernel_shape) // 2


def scene_stats_many(
    info: RasterInfo, tile_size: int, specs: list[ScanSpec], workers: int | None = None,
    progress: Callable[[int], None] | None = None, keep: TileCache | None = None,
) -> list[SceneStats]:
    """Summarise every tile for several plans at once (the steps of a ``steps:`` config):
    each tile is read once, with the widest halo, and each spec sees its own part of it.
    Each tile's own pixels go to ``keep`` as they were decoded, for the execute pass."""
    grid = TileGrid(info.height, info.width, tile_size)
    ny, nx = grid.shape
    nb = info.data_count
    # (at least one pixel past the tile at strides above 1: where its closing samples lie)
    halo = max(max(spec.halo, 1 if max(spec.strides) > 1 else 0) for spec in specs)

    def summarise(ds: object, tile: Tile) -> list[tuple[variance.TileStats,
                                                         variance.TileStats, np.ndarray]]:
        r0, c0 = max(tile.row0 - halo, 0), max(tile.col0 - halo, 0)
        r1, c1 = min(tile.row1 + halo, info.height), min(tile.col1 + halo, info.width)
        data, valid = raster_io.read_window_valid(ds, info, r0, r1, c0, c1)
        # (contiguous copies: numba compiles anew for strided views, in every process)
        inner = (slice(None), slice(tile.row0 - r0, tile.row1 - r0),
                 slice(tile.col0 - c0, tile.col1 - c0))
        own_data = np.ascontiguousarray(data[inner])
        own_valid = None if valid is None else np.ascontiguousarray(valid[inner])
        if keep is not None:
            keep.put(tile, own_data, own_valid)
        owns: dict[tuple[int, str], variance.TileStats] = {}
        out = []
        for spec in specs:
            key = (spec.window, spec.statistic, spec.mean_window)
            if key not in owns:
                owns[key] = variance.tile_stats(own_data, own_valid, *key)
            h = spec.halo
            box = (slice(None), slice(max(tile.row0 - h, 0) - r0, min(tile.row1 + h, r1) - r0),
                   slice(max(tile.col0 - h, 0) - c0, min(tile.col1 + h, c1) - c0))
            sub = data if h == halo else np.ascontiguousarray(data[box])
            sub_valid = valid if valid is None or h == halo else np.ascontiguousarray(valid[box])
            around = variance.tile_stats(sub, sub_valid, *key)
            if valid is None:
                near = np.zeros(len(spec.strides), dtype=np.int64)
            else:
                near = _exact_pixels(
                    valid, (tile.row0 - r0, tile.col0 - c0, tile.height, tile.width),
                    (info.height - tile.row1, info.width - tile.col1), spec.kernel_shape,
                    spec.strides, spec.method)
            out.append((owns[key], around, near))
        return out

    results = []
    for spec in specs:
        arrays = {k: np.full((ny, nx, nb), np.nan) for k in
                  ("statistic", "reach", "vmin", "vmax", "mean_min", "mean_max")}
        results.append((arrays, np.zeros((ny, nx), dtype=np.int64),
                        np.zeros((ny, nx, len(spec.strides)), dtype=np.int64),
                        np.zeros((ny, nx), dtype=bool)))
    tiles = list(grid.tiles())  # every tile costs about the same: contiguous shares
    with map_shares(info.path, tiles, summarise, workers) as summaries:
        for tile, per_spec in summaries:
            at = (tile.ty, tile.tx)
            for (arrays, nvalid, exact, still), (ts, around, near) in zip(results, per_spec,
                                                                            strict=True):
                arrays["statistic"][at] = ts.statistic
                arrays["reach"][at] = around.statistic
                lo, hi = around.vmin, around.vmax
                still[at] = bool(np.all(np.isnan(lo) | (lo == hi)))
                arrays["vmin"][at] = ts.vmin
                arrays["vmax"][at] = ts.vmax
                arrays["mean_min"][at] = ts.mean_min
                arrays["mean_max"][at] = ts.mean_max
                nvalid[at] = ts.valid
                exact[at] = near
            if progress:
                progress(1)
    return [SceneStats(grid, nvalid=nvalid, exact=exact, still=still, **arrays)
            for arrays, nvalid, exact, still in results]
