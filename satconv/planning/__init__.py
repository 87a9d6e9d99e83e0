"""Planning: choose a stride for every tile, behind one ``make_plan``.

The plan pass reads each tile once (no halo), summarises it, and then the policy maps the
summaries to strides. One module per policy; ``plan`` holds the result type.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import raster_io
from ..config import Settings
from ..errors import ConfigError, PlanError
from ..parallel import map_tiles
from ..raster_io import RasterInfo
from ..tiling import Tile, TileGrid
from . import variance
from .plan import Plan

__all__ = ["Plan", "make_plan", "load_plan", "uniform_plan"]


def uniform_plan(grid: TileGrid, stride: int) -> Plan:
    """Every tile at one stride: nothing to decide, so nothing is read to plan it. Tiles
    without valid pixels still come out as nodata (the executor sees that from its reads)."""
    return Plan(np.full(grid.shape, stride, dtype=np.int64), grid, "uniform", None,
                {"policy": "uniform", "stride": stride})


def _scene_stats(
    info: RasterInfo, settings: Settings, workers: int | None,
    progress: Callable[[int], None] | None,
) -> tuple[TileGrid, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    grid = TileGrid(info.height, info.width, settings.tile_size)
    ny, nx = grid.shape
    nb = info.data_count
    stat = np.full((ny, nx, nb), np.nan)
    vmin = np.full((ny, nx, nb), np.nan)
    vmax = np.full((ny, nx, nb), np.nan)
    nvalid = np.zeros((ny, nx), dtype=np.int64)
    pol = settings.policy

    def summarise(ds: object, tile: Tile) -> variance.TileStats:
        data, valid = raster_io.read_window_valid(ds, info, tile.row0, tile.row1, tile.col0,
                                                  tile.col1)
        if valid is None:
            valid = np.ones(data.shape, dtype=bool)
        return variance.tile_stats(data, valid, pol.window, pol.statistic)

    for tile, ts in map_tiles(info.path, grid.tiles(), summarise, workers):
        stat[tile.ty, tile.tx] = ts.statistic
        vmin[tile.ty, tile.tx] = ts.vmin
        vmax[tile.ty, tile.tx] = ts.vmax
        nvalid[tile.ty, tile.tx] = ts.valid
        if progress:
            progress(1)
    return grid, stat, vmin, vmax, nvalid


def make_plan(
    info: RasterInfo,
    settings: Settings,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Plan:
    """Read the scene tile by tile and choose a stride per tile with the configured policy.

    Tiles without a single valid pixel get stride 0: their output is all nodata.
    """
    if settings.policy.type != "variance":
        raise ConfigError(f"policy.type: {settings.policy.type} is not available yet")
    if settings.context is not None:
        raise ConfigError("context: regions of interest are not available yet")
    kernel = settings.kernel.array()
    grid, stat, vmin, vmax, nvalid = _scene_stats(info, settings, workers, progress)
    band_range = np.zeros(info.data_count)
    for b in range(info.data_count):
        hi, lo = vmax[..., b], vmin[..., b]
        if np.isfinite(hi).any():
            band_range[b] = np.nanmax(hi) - np.nanmin(lo)
    strides = settings.strides
    method = settings.reconstruction
    details: dict[str, object] = {"policy": "variance", "statistic": settings.policy.statistic,
                                  "window": settings.policy.window}
    weights = nvalid.astype(np.float64)
    if settings.policy.thresholds == "auto":
        vp = variance.plan_auto(stat, weights, kernel, strides, band_range,
                                settings.policy.target_error, method, settings.policy.window)
        details["thresholds"] = "auto"
        details["target_error"] = settings.policy.target_error
        details["tolerance_per_band"] = [round(float(t), 6) for t in vp.tolerance]
    else:
        vp = variance.plan_explicit(stat, settings.policy.thresholds, kernel, strides, method,
                                    settings.policy.window)
        details["thresholds"] = list(settings.policy.thresholds)
    details["thresholds_per_band"] = {
        str(s): [None if not np.isfinite(v) else round(float(v), 6) for v in vp.thresholds[s]]
        for s in strides
    }
    details["scene_range_per_band"] = [float(r) for r in band_range]
    chosen = vp.strides.copy()
    chosen[nvalid == 0] = 0
    rmse = np.where(nvalid == 0, np.nan, vp.predicted_rmse)
    details["predicted_psnr_db"] = variance.predicted_psnr(
        stat, weights, chosen, kernel, strides, band_range, method, settings.policy.window)
    return Plan(chosen, grid, "policy", rmse, details)


def load_plan(path: str, info: RasterInfo, settings: Settings) -> Plan:
    """A saved stride map, checked against the scene's tile grid and the allowed strides."""
    grid = TileGrid(info.height, info.width, settings.tile_size)
    strides = raster_io.read_stride_map(path, grid.shape)
    allowed = set(settings.strides) | {0}
    bad = sorted(set(np.unique(strides).tolist()) - allowed)
    if bad:
        raise PlanError(
            f"{path}: stride map uses {bad}, allowed strides are {settings.strides} (and 0)"
        )
    return Plan(strides, grid, str(path), None, {"policy": "file"})
