"""Executing a plan: every tile read with its halo, convolved at its stride, reconstructed and
written. Worker threads read and compute; the calling thread is the single writer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from . import raster_io
from .convolve import PreparedKernel, Reader, TileResult, convolve_tile, refine_tile
from .core import encode
from .errors import OutputError
from .parallel import map_tiles
from .planning import Plan
from .raster_io import RasterInfo
from .tile_cache import TileCache
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
    """What the execute pass did: tiles, kernel evaluations, and pixel-bands in the scene;
    per tile the stride executed and the estimated RMS error per band (NaN where skipped) and
    the valid output pixels per band; per band the output's value range."""

    tiles: int
    evaluations: int
    pixels: int
    strides: np.ndarray | None = None
    errors: np.ndarray | None = None
    valid: np.ndarray | None = None
    vmin: np.ndarray | None = None
    vmax: np.ndarray | None = None


@dataclass(frozen=True)
class TileDone:
    """One executed tile: output pixels and mask, kernel evaluations, the stride it ran at,
    and per band its estimated RMS error, valid output pixels and value range."""

    data: np.ndarray
    mask: np.ndarray
    evaluations: int
    stride: int
    error: np.ndarray
    valid: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray


def compute_dtype(in_dtype: str, out_dtype: str, cval: float = 0.0) -> str:
    """The type tiles are computed in: float32 when the output is float32 and the input fits
    float32 exactly (8- and 16-bit integers, float32), and so does the padding value ``cval``
    (within float32's range); float64 otherwise, so that rounding to an integer output or a
    float64 output loses nothing."""
    exact32 = in_dtype in ("uint8", "int8", "uint16", "int16", "float32")
    fits = abs(cval) <= float(np.finfo(np.float32).max)
    return "float32" if out_dtype == "float32" and exact32 and fits else "float64"


def to_output(values: np.ndarray, dtype: str, nodata: float | None) -> np.ndarray:
    """Cast results (NaN = nodata) to the output type: integers rounded and clipped,
    nodata written where NaN, and no valid value left equal to the nodata value.

    A valid value that lands on the nodata value moves towards the type's interior: one unit
    for integers; for floats, a value within 2**-20 of the nodata value's magnitude (at least
    the smallest normal number) moves twice that far from it, well beyond the few units in the
    last place within which GDAL reads a float as nodata.
    A float result already in the output type with NaN (or no) nodata is returned as is.
    """
    kind = np.dtype(dtype).kind
    if kind in "iu":
        lim = np.iinfo(dtype)
        lo, hi = float(lim.min), float(lim.max)
        if int(hi) > lim.max:  # 64-bit: the float nearest the maximum is beyond it
            hi = float(np.nextafter(hi, 0.0))
        out = np.empty(values.shape, dtype=dtype)
        encode.encode_int(values, out, lo, hi, 0.0 if nodata is None else float(nodata),
                          nodata is not None)
        return out
    if nodata is None or np.isnan(nodata):
        return values.astype(dtype, copy=False)
    typed = float(np.dtype(dtype).type(nodata))
    if np.isinf(typed):  # an infinite nodata: no finite value is near it
        out = values.astype(dtype)
        out[np.isnan(out)] = typed
        return out
    step = max(abs(typed) * 2.0**-20, float(np.finfo(dtype).tiny))
    out = np.empty(values.shape, dtype=dtype)
    encode.encode_float(values, out, typed, step)
    return out


def extents(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per band: the count of non-NaN pixels and their minimum and maximum (NaN when none);
    per pixel, whether any band holds a value."""
    lo = values.min(axis=(1, 2))
    hi = values.max(axis=(1, 2))
    if not (np.isnan(lo).any() or np.isnan(hi).any()):  # NaN-free: numpy's SIMD reductions
        bands, h, w = values.shape
        return (np.full(bands, h * w, dtype=np.int64), lo.astype(np.float64),
                hi.astype(np.float64), np.ones((h, w), dtype=bool))
    return encode.extents(values)


def _check_range(info: RasterInfo, dtype: str, lo: np.ndarray, hi: np.ndarray) -> None:
    """Raise :class:`OutputError` naming the input when a float output type cannot hold a
    filtered value (float64 data beyond float32's range): it would be written as infinity."""
    if np.dtype(dtype).kind != "f":
        return
    top = float(np.finfo(dtype).max)
    with np.errstate(invalid="ignore"):
        big = np.fmax(np.abs(lo), np.abs(hi))
    worst = float(np.nanmax(big, initial=0.0))
    if np.isfinite(worst) and worst > top:
        raise OutputError(f"{raster_io.display_name(info.path)}: filtered values reach "
                          f"{worst:.3g}, beyond {dtype}'s range (+-{top:.3g}): set "
                          f"output.dtype: float64")


def _tile_error(plan: Plan, tile: Tile, result: TileResult) -> np.ndarray:
    """The estimated RMS error per band of an executed tile: for a refined tile the estimate
    its refinement stopped on (so never above its tolerance), else the one from the coarse
    surplus and the model (``ErrorEstimator`` without checks: the wider margin)."""
    bands = result.values.shape[0]
    if result.stride == 0:  # found without a valid pixel: skipped
        return np.full(bands, np.nan)
    if plan.estimator is None or result.stride <= 1:
        return np.zeros(bands)
    nan = np.full(bands, np.nan)
    return plan.estimator.estimate(
        result.stride, nan if result.centre is None else result.centre,
        nan if result.coarse is None else result.coarse,
        plan.predicted_at(tile.ty, tile.tx, result.stride), result.full_checks,
        result.rechecked)


def _acceptor(plan: Plan, tile: Tile):  # noqa: ANN202 - convolve.Acceptor
    rule, estimator = plan.refine, plan.estimator
    assert rule is not None and estimator is not None

    def accept(stride: int, centre: np.ndarray, coarse: np.ndarray, full: bool,
               rechecked: bool) -> float:
        est = estimator.estimate(stride, centre, coarse,
                                 plan.predicted_at(tile.ty, tile.tx, stride), full, rechecked)
        tol = rule.tolerance[rule.strides.index(stride)]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(est <= tol, 0.0, est / tol)
        return float(np.nan_to_num(ratio, nan=np.inf).max(initial=0.0))

    return accept


def _process(ds: object, tile_stride: tuple[Tile, int], info: RasterInfo,
             pk: PreparedKernel, opts: ExecuteOptions, plan: Plan,
             cache: TileCache | None = None) -> TileDone:
    tile, stride = tile_stride
    read = partial(raster_io.read_indexed, ds, info, cval=opts.cval, dtype=opts.compute_dtype,
                   windows=None if cache is None else cache.read_window_valid)
    return run_tile(read, tile, stride, info, pk, opts, plan)


def run_tile(read: Reader, tile: Tile, stride: int, info: RasterInfo, pk: PreparedKernel,
             opts: ExecuteOptions, plan: Plan) -> TileDone:
    """One tile of ``plan``, its pixels from ``read``: skipped (``stride`` 0, nothing read),
    refined (a ``refine`` plan's free tiles) or convolved at ``stride``; cast to the output
    type, with what the report needs of it."""
    nb = info.data_count
    if stride == 0:
        shape = (nb, tile.height, tile.width)
        fill = 0 if opts.out_nodata is None else opts.out_nodata
        return TileDone(np.full(shape, fill, dtype=opts.out_dtype),
                     np.zeros(shape[1:], dtype=bool), 0, 0, np.full(nb, np.nan),
                     np.zeros(nb, dtype=np.int64), np.full(nb, np.nan), np.full(nb, np.nan))
    rule = plan.refine
    if rule is not None and not rule.fixed[tile.ty, tile.tx]:
        result = refine_tile(read, tile, rule.strides_for(tile.ty, tile.tx), info.height,
                             info.width, pk, opts.boundary, _acceptor(plan, tile),
                             opts.reconstruction, opts.min_valid_fraction, rule.checks)
    else:
        result = convolve_tile(read, tile, stride, info.height, info.width, pk, opts.boundary,
                               opts.reconstruction, opts.min_valid_fraction,
                               surplus=plan.estimator is not None)
    count, lo, hi, anyv = extents(result.values)
    _check_range(info, opts.out_dtype, lo, hi)
    data = to_output(result.values, opts.out_dtype, opts.out_nodata)
    error = _tile_error(plan, tile, result)
    if data.dtype.kind in "iu":
        error = np.sqrt(error**2 + casting_mse(result.values, data))
    return TileDone(data, anyv, result.evaluations, result.stride, error, count, lo, hi)


def casting_mse(values: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Per band, the mean squared change that casting ``values`` (NaN = nodata) to ``data``
    made over the valid pixels: rounding, clipping, a value moved off the nodata value; NaN
    for a band without one. It adds to the reconstruction error (independent of it: the
    rounding error of a value is uniform within a unit whatever the value's own error)."""
    valid = ~np.isnan(values)
    d = np.where(valid, data - values, 0.0)
    n = valid.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (d * d).sum(axis=(1, 2)) / n, np.nan)


def execute(
    info: RasterInfo,
    plan: Plan,
    opts: ExecuteOptions,
    dst: object,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    cache: TileCache | None = None,
) -> ExecuteStats:
    """Convolve every tile of ``plan`` and write it to the open output ``dst``; the pixels
    come from ``cache`` (the plan pass's decoded tiles, complete) when given, else from the
    input.

    Tiles of a ``refine`` plan start at their starting stride and are refined as their
    samples demand; the strides returned are the ones executed.
    """
    pk = PreparedKernel.from_kernel(opts.kernel)
    grid = plan.grid
    items = [(t, int(plan.start[t.ty, t.tx])) for t in grid.tiles()]
    fn = partial(_process, info=info, pk=pk, opts=opts, plan=plan, cache=cache)
    tally = Tally(plan, info)
    with map_tiles(info.path, items, fn, workers) as results:
        for (tile, _), done in results:
            raster_io.write_tile(dst, done.data, tile.row0, tile.col0,
                                 done.mask if opts.write_mask else None)
            tally.add(tile, done)
            if progress:
                progress(1)
    return tally.stats()


class Tally:
    """What the executed tiles of a plan add up to (:class:`ExecuteStats`)."""

    def __init__(self, plan: Plan, info: RasterInfo):
        nb = info.data_count
        shape = plan.grid.shape
        self.tiles = shape[0] * shape[1]
        self.pixels = info.height * info.width * nb
        self.strides = np.zeros(shape, dtype=np.int64)
        self.errors = np.full(shape + (nb,), np.nan)
        self.valid = np.zeros(shape + (nb,), dtype=np.int64)
        self.vmin = np.full(nb, np.inf)
        self.vmax = np.full(nb, -np.inf)
        self.evaluations = 0

    def add(self, tile: Tile, done: TileDone) -> None:
        at = (tile.ty, tile.tx)
        self.evaluations += done.evaluations
        self.strides[at] = done.stride
        self.errors[at] = done.error
        self.valid[at] = done.valid
        self.vmin = np.fmin(self.vmin, done.vmin)
        self.vmax = np.fmax(self.vmax, done.vmax)

    def stats(self) -> ExecuteStats:
        vmin = np.where(np.isfinite(self.vmin), self.vmin, np.nan)
        vmax = np.where(np.isfinite(self.vmax), self.vmax, np.nan)
        return ExecuteStats(self.tiles, self.evaluations, self.pixels, self.strides,
                            self.errors, self.valid, vmin, vmax)


@contextlib.contextmanager
def compute_tiles(
    info: RasterInfo,
    plan: Plan,
    opts: ExecuteOptions,
    tiles: list[Tile],
    workers: int | None = None,
) -> Iterator[Iterator[tuple[Tile, TileDone]]]:
    """``with compute_tiles(...) as done:`` iterates ``tiles`` (any subset of the plan's
    grid) convolved, each with its :class:`TileDone`, in completion order, for a caller that
    writes them itself (part files of a resumable or distributed run: ``satconv.parts``). A
    ``refine`` plan's tiles are refined as in ``execute``. As with ``map_tiles``, no worker
    outlives the block."""
    pk = PreparedKernel.from_kernel(opts.kernel)
    items = [(t, int(plan.start[t.ty, t.tx])) for t in tiles]
    fn = partial(_process, info=info, pk=pk, opts=opts, plan=plan)
    with map_tiles(info.path, items, fn, workers) as results:
        yield ((tile, done) for (tile, _), done in results)
