"""Executing a plan: every tile read with its halo, convolved at its stride, reconstructed and
written. Worker threads read and compute; the calling thread is the single writer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from . import raster_io
from .convolve import PreparedKernel, convolve_tile
from .parallel import map_tiles
from .planning import Plan
from .raster_io import RasterInfo
from .tiling import Tile


@dataclass(frozen=True)
class ExecuteOptions:
    """What the executor needs besides the plan: plain values, no config objects."""

    kernel: np.ndarray
    boundary: str
    cval: float
    reconstruction: str
    out_dtype: str
    out_nodata: float | None
    min_valid_fraction: float = 0.5
    write_mask: bool = False
    compute_dtype: str = "float64"


@dataclass(frozen=True)
class ExecuteStats:
    """What the execute pass did: tiles, kernel evaluations, and pixel-bands in the scene."""

    tiles: int
    evaluations: int
    pixels: int


def compute_dtype(in_dtype: str, out_dtype: str) -> str:
    """The type tiles are computed in: float32 when the output is float32 and the input fits
    float32 exactly (8- and 16-bit integers, float32); float64 otherwise, so that rounding to
    an integer output or a float64 output loses nothing."""
    exact32 = in_dtype in ("uint8", "int8", "uint16", "int16", "float32")
    return "float32" if out_dtype == "float32" and exact32 else "float64"


def to_output(values: np.ndarray, dtype: str, nodata: float | None) -> np.ndarray:
    """Cast results (NaN = nodata) to the output type: integers rounded and clipped,
    nodata written where NaN, and no valid value left equal to the nodata value.

    A valid value that lands on the nodata value moves towards the type's interior: one unit
    for integers; for floats, by 2**-20 of its magnitude (at least the smallest normal number),
    which is beyond the few units in the last place within which GDAL reads a float as nodata.
    """
    invalid = np.isnan(values)
    kind = np.dtype(dtype).kind
    if kind in "iu":
        lim = np.iinfo(dtype)
        out = np.clip(np.rint(np.where(invalid, 0, values)), lim.min, lim.max).astype(dtype)
    else:
        out = values.astype(dtype)
    if nodata is None or np.isnan(nodata):
        if nodata is not None:
            out[invalid] = nodata
        return out
    clash = ~invalid & (out == nodata)
    if kind not in "iu":
        fin = np.finfo(dtype)
        step = max(abs(nodata) * 2.0**-20, float(fin.tiny))
        near = np.abs(out - out.dtype.type(nodata)) < step
        if near.any():
            clash |= ~invalid & near
        if clash.any():
            out[clash] = nodata + step if nodata <= 0 else nodata - step
    elif clash.any():
        lim = np.iinfo(dtype)
        out[clash] = nodata + 1 if nodata < lim.max else nodata - 1
    out[invalid] = nodata
    return out


def _process(ds: object, tile_stride: tuple[Tile, int], info: RasterInfo,
             pk: PreparedKernel, opts: ExecuteOptions) -> tuple[np.ndarray, np.ndarray, int]:
    tile, stride = tile_stride
    if stride == 0:
        shape = (info.data_count, tile.height, tile.width)
        fill = 0 if opts.out_nodata is None else opts.out_nodata
        return (np.full(shape, fill, dtype=opts.out_dtype),
                np.zeros(shape[1:], dtype=bool), 0)
    read = partial(raster_io.read_indexed, ds, info, cval=opts.cval, dtype=opts.compute_dtype)
    result = convolve_tile(read, tile, stride, info.height, info.width, pk, opts.boundary,
                           opts.reconstruction, opts.min_valid_fraction)
    mask = ~np.isnan(result.values).all(axis=0)
    return to_output(result.values, opts.out_dtype, opts.out_nodata), mask, result.evaluations


def execute(
    info: RasterInfo,
    plan: Plan,
    opts: ExecuteOptions,
    dst: object,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExecuteStats:
    """Convolve every tile of ``plan`` and write it to the open output ``dst``."""
    pk = PreparedKernel.from_kernel(opts.kernel)
    grid = plan.grid
    items = [(t, int(plan.strides[t.ty, t.tx])) for t in grid.tiles()]
    fn = partial(_process, info=info, pk=pk, opts=opts)
    evaluations = 0
    for (tile, _), (data, mask, n) in map_tiles(info.path, items, fn, workers):
        raster_io.write_tile(dst, data, tile.row0, tile.col0,
                             mask if opts.write_mask else None)
        evaluations += n
        if progress:
            progress(1)
    return ExecuteStats(len(items), evaluations, info.height * info.width * info.data_count)


def compute_tiles(
    info: RasterInfo,
    plan: Plan,
    opts: ExecuteOptions,
    tiles: list[Tile],
    workers: int | None = None,
) -> Iterator[tuple[Tile, np.ndarray, np.ndarray, int]]:
    """Convolve ``tiles`` (any subset of the plan's grid) and yield ``(tile, data, mask,
    kernel evaluations)`` in completion order, for a caller that writes them itself (part
    files of a resumable or distributed run: ``satconv.parts``)."""
    pk = PreparedKernel.from_kernel(opts.kernel)
    items = [(t, int(plan.strides[t.ty, t.tx])) for t in tiles]
    fn = partial(_process, info=info, pk=pk, opts=opts)
    for (tile, _), (data, mask, n) in map_tiles(info.path, items, fn, workers):
        yield tile, data, mask, n
