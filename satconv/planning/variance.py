"""The variance policy: windowed variance per tile, mapped to a stride by thresholds.

Each tile is summarised per band by the variance of its valid pixels in square windows
(``window`` x ``window``), aggregated over the tile (``max``, ``mean`` or ``p90``). The most
demanding band decides. ``p90`` is the 90th percentile of the windows' variances, or their
mean where that is larger: where texture fills fewer than a tenth of a tile's windows (a
coastline through open water) the percentile alone is near 0 and would call the tile smooth,
while the error, which follows the mean (``error_model``), is not. So ``p90``, like ``max``,
never asks less of a tile than ``mean`` does.

Thresholds are a user's list, or ``auto``: derived from the error model (``error_model``) by
the allocation in ``allocate`` so that the predicted RMS error of the whole scene is
``target_error`` times each band's output value range, at the least compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core import stats
from . import allocate, error_model

if TYPE_CHECKING:
    from .inputs import PlanInputs


@dataclass(frozen=True)
class TileStats:
    """Per band: the aggregated window variance, the valid minimum and maximum, and the
    smallest and largest window mean."""

    statistic: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    valid: int
    mean_min: np.ndarray | None = None
    mean_max: np.ndarray | None = None


def tile_stats(data: np.ndarray, valid: np.ndarray | None, window: int,
               statistic: str, mean_window: int | None = None) -> TileStats:
    """Summarise one tile (bands, h, w) for the planner; ``valid`` None means every pixel is
    valid. NaN where a band has no valid pixel. The window means (``mean_min``, ``mean_max``)
    are over ``mean_window`` squares (default ``window``) at least three-quarters valid."""
    bands = data.shape[0]
    stat = np.full(bands, np.nan)
    vmin = np.full(bands, np.nan)
    vmax = np.full(bands, np.nan)
    mmin = np.full(bands, np.nan)
    mmax = np.full(bands, np.nan)
    min_count = max(2, (window * window) // 4)
    every = np.ones(data.shape[1:], dtype=bool) if valid is None else None
    for b in range(bands):
        x = data[b]
        if valid is None:
            ok = every
            lo, hi = float(x.min()), float(x.max())
        else:
            ok = valid[b]
            lo, hi = stats.valid_range(x, ok)
        if np.isnan(lo):
            continue
        vmin[b], vmax[b] = lo, hi
        means, var = stats.window_moments(x, ok, window, min_count)
        if mean_window is not None and mean_window != window:
            means = stats.window_moments(x, ok, mean_window, (3 * mean_window**2) // 4)[0]
        means = means[np.isfinite(means)]
        mmin[b], mmax[b] = (means.min(), means.max()) if means.size else (lo, hi)
        var = var[np.isfinite(var)]
        if var.size == 0:
            stat[b] = stats.valid_variance(x, ok)[1]
        elif statistic == "max":
            stat[b] = var.max()
        elif statistic == "mean":
            stat[b] = var.mean()
        else:  # never below the mean: see the module's docstring
            stat[b] = max(float(np.percentile(var, 90)), float(var.mean()))
    count = data.shape[1] * data.shape[2] if valid is None else int(valid.any(axis=0).sum())
    return TileStats(stat, vmin, vmax, count, mmin, mmax)


def normalised(stat: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per tile, the largest over bands of ``stat / scale`` (0 where no band has data)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(scale > 0, stat / scale, np.where(stat > 0, np.inf, 0.0))
    ratio = np.where(np.isnan(ratio), -np.inf, ratio)
    u = ratio.max(axis=-1) if ratio.shape[-1] else np.zeros(ratio.shape[:-1])
    return np.where(np.isfinite(u) | (u > 0), np.maximum(u, 0.0), 0.0)


@dataclass(frozen=True)
class VariancePlan:
    """Strides per tile, the thresholds used (per stride and band) and predicted RMS errors."""

    strides: np.ndarray
    thresholds: dict[int, np.ndarray]
    predicted_rmse: np.ndarray
    tolerance: np.ndarray | None


def plan_auto(stat: np.ndarray, weights: np.ndarray, kernel: np.ndarray, strides: list[int],
              output_range: np.ndarray, target_error: float, method: str,
              window: int) -> VariancePlan:
    """Thresholds from the error model: the cheapest plan whose predicted scene RMS error is at
    most ``target_error`` x each band's ``output_range`` (``PlanInputs.output_range``)."""
    tol = target_error * output_range
    gains = {s: error_model.stride_gain(kernel, s, method, window) for s in strides}
    u = normalised(stat, tol * tol)
    limits = allocate.for_error(u, weights, strides, gains, 1.0)
    chosen = allocate.choose(u, limits)
    with np.errstate(invalid="ignore"):
        per_band = {s: np.where(tol > 0, limits[s] * tol * tol, 0.0) for s in strides}
    return VariancePlan(chosen, per_band, _rmse(stat, chosen, gains), tol)


def plan_explicit(stat: np.ndarray, values: list[float], kernel: np.ndarray,
                  strides: list[int], method: str, window: int,
                  scale: np.ndarray | None = None) -> VariancePlan:
    """A user's list: ``strides[i+1]`` is used while the statistic is below ``values[i]``
    times the band's ``scale`` (default 1: the values are variances)."""
    scale = np.ones(stat.shape[-1]) if scale is None else np.asarray(scale, dtype=np.float64)
    limits = {strides[0]: np.inf, **dict(zip(strides[1:], values, strict=True))}
    chosen = allocate.choose(normalised(stat, scale), limits)
    gains = {s: error_model.stride_gain(kernel, s, method, window) for s in strides}
    with np.errstate(invalid="ignore"):  # inf x 0: a band without range has no threshold
        per_band = {s: np.where(scale > 0, float(limits[s]) * scale, 0.0) for s in strides}
    return VariancePlan(chosen, per_band, _rmse(stat, chosen, gains), None)


def threshold_scale(relative_to: str, dtype: str, band_range: np.ndarray) -> np.ndarray:
    """Per band, what a listed threshold is a share of: 1 (``absolute``), the square of the
    band's valid value range over the scene (``scene``) or of the data type's range
    (``dtype``). Raises ValueError for ``dtype`` with a floating-point type (no range)."""
    if relative_to == "absolute":
        return np.ones(band_range.shape)
    if relative_to == "scene":
        return np.asarray(band_range, dtype=np.float64) ** 2
    if np.dtype(dtype).kind not in "iu":
        raise ValueError(f"policy.thresholds_relative_to dtype needs an integer data type, "
                         f"the input is {dtype} (use scene)")
    lim = np.iinfo(dtype)
    return np.full(band_range.shape, (float(lim.max) - float(lim.min)) ** 2)


def _rmse(stat: np.ndarray, chosen: np.ndarray, gains: dict[int, float]) -> np.ndarray:
    """Predicted RMS error per tile, worst band, in output units."""
    g = np.zeros(chosen.shape)
    for s, gs in gains.items():
        g[chosen == s] = gs
    worst = np.where(np.isnan(stat), 0.0, stat).max(axis=-1) if stat.shape[-1] else g
    return np.sqrt(np.maximum(worst, 0.0) * g)


def plan(inp: PlanInputs, thresholds: str | list[float], target_error: float,
         statistic: str, scale: np.ndarray | None = None,
         relative_to: str = "absolute") -> tuple[np.ndarray, dict[str, object]]:
    """Strides for the free tiles of a scene, and what the plan reports about them. A list of
    ``thresholds`` is a share of ``scale`` per band (``threshold_scale``)."""
    stat = inp.stats.statistic
    band_range = inp.stats.band_range()
    details: dict[str, object] = {"policy": "variance", "statistic": statistic,
                                  "window": inp.window}
    if thresholds == "auto":
        vp = plan_auto(stat, inp.weights, inp.kernel, list(inp.allowed), inp.output_range(),
                       target_error, inp.method, inp.window)
        details["thresholds"] = "auto"
        details["target_error"] = target_error
        details["tolerance_per_band"] = [round(float(t), 6) for t in vp.tolerance]
    else:
        vp = plan_explicit(stat, list(thresholds), inp.kernel, list(inp.strides), inp.method,
                           inp.window, scale)
        details["thresholds"] = list(thresholds)
        details["thresholds_relative_to"] = relative_to
    details["thresholds_per_band"] = {
        str(s): [None if not np.isfinite(v) else round(float(v), 6) for v in vp.thresholds[s]]
        for s in vp.thresholds
    }
    details["scene_range_per_band"] = [float(r) for r in band_range]
    top = max(inp.allowed)
    chosen = np.where(inp.still, inp.strides[-1], np.minimum(vp.strides, top))
    return chosen, details
