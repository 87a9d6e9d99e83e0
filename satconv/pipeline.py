"""Executing a plan: every tile read with its halo, convolved at its stride, reconstructed and
written. Worker threads read and compute; the calling thread is the single writer.
"""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True)
class ExecuteStats:
    """What the execute pass did: tiles per stride and kernel evaluations (samples)."""

    tiles: int
    samples: int
    pixels: int


def to_output(values: np.ndarray, invalid: np.ndarray, dtype: str,
              nodata: float | None) -> np.ndarray:
    """Cast float64 results to the output type (rounded and clipped for integers) and put
    nodata where the input had none."""
    kind = np.dtype(dtype).kind
    if kind in "iu":
        lim = np.iinfo(dtype)
        out = np.clip(np.rint(values), lim.min, lim.max).astype(dtype)
    else:
        out = values.astype(dtype)
    if nodata is not None:
        out[invalid] = nodata
    return out


def _process(ds: object, tile_stride: tuple[Tile, int], info: RasterInfo,
             pk: PreparedKernel, opts: ExecuteOptions) -> tuple[np.ndarray, int]:
    tile, stride = tile_stride
    if stride == 0:
        fill = opts.out_nodata if opts.out_nodata is not None else 0
        return np.full((info.count, tile.height, tile.width), fill, dtype=opts.out_dtype), 0
    read = partial(raster_io.read_indexed, ds, cval=opts.cval)
    values, own = convolve_tile(
        read, tile, stride, info.height, info.width, pk, opts.boundary,
        opts.reconstruction,
    )
    invalid = ~raster_io.valid_mask(own, info.nodata)
    nsamples = -(-tile.height // stride) * -(-tile.width // stride)
    return to_output(values, invalid, opts.out_dtype, opts.out_nodata), nsamples


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
    samples = 0
    for (tile, _), (data, n) in map_tiles(info.path, items, fn, workers):
        raster_io.write_tile(dst, data, tile.row0, tile.col0)
        samples += n
        if progress:
            progress(1)
    return ExecuteStats(len(items), samples, info.height * info.width)
