"""Planning: choose a stride for every tile, behind one ``make_plan``.

The plan pass reads each tile once with its kernel halo and summarises it (``scan``); ``inputs``
turns the summaries into per-stride predicted errors and costs, applies the kernel's stride cap and
the context's forced and skipped tiles; then one policy chooses the strides of the free tiles:
``variance`` (thresholds on the window variance), ``budget`` (least error within a compute budget)
or ``refine`` (error-controlled, decided at execution). ``plan`` holds the result type.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import raster_io
from ..config import Settings
from ..core import reconstruct
from ..errors import PlanError
from ..raster_io import RasterInfo
from ..tile_cache import TileCache
from ..tiling import TileGrid
from . import budget, error_model, refine, variance
from .error_model import ErrorEstimator
from .inputs import PlanInputs, plan_inputs
from .plan import Plan
from .scan import ScanSpec, SceneStats, scene_stats_many

__all__ = ["Plan", "PlanInputs", "SceneStats", "make_plan", "make_plans", "load_plan",
           "needs_scan", "plan_from_stats", "plan_warnings", "read_again", "scan_scene",
           "scan_scenes", "uniform_plan"]


#: What the plan pass read, for the run report. Every tile's statistic enters one scene-wide
#: allocation (the error budget, or the compute budget, is shared), so a policy plan reads the
#: whole scene before execution; its statistics take a single vectorised pass per tile.
READ_FULL = "every tile once with its halo, before execution (decoded again by execution)"
#: The same, when the execute pass read the plan pass's decoded tiles (``satconv.tile_cache``).
READ_KEPT = ("every tile once with its halo, before execution, which read the tiles back as "
             "the plan pass decoded them: the input was decoded once")
READ_NONE = "nothing: one allowed stride"
#: What a plan made on its own (``satconv plan``) read: nothing is executed after it.
READ_PLAN_ONLY = "every tile once with its halo (a plan alone: nothing executed)"


def read_again(why: str) -> str:
    """What the plan pass read, when the execute pass reads the input again, and why."""
    return f"every tile once with its halo, before execution, and again by execution: {why}"


def uniform_plan(grid: TileGrid, settings: Settings) -> Plan:
    """Every tile at the one allowed stride: nothing to decide, so nothing is read to plan it.
    The executor skips the tiles its reads find without a valid pixel (stride 0), and above
    stride 1 estimates each tile's error from its samples, as for a saved plan."""
    stride = settings.strides[0]
    return Plan(np.full(grid.shape, stride, dtype=np.int64), grid, "uniform", None,
                {"policy": "uniform", "stride": stride, "read": READ_NONE},
                estimator=_estimator(settings) if stride > 1 else None)


def _spec(settings: Settings) -> ScanSpec:
    # a spline pixel reads the samples of its line, but a nodata sample splits the line and
    # spoils only the cells beside it: the samples a linear pixel reads
    method = "bilinear" if settings.reconstruction == "spline" else settings.reconstruction
    kernel = settings.kernel.array()
    # the output's range is estimated from window means: over squares at least as wide as
    # the kernel averages, so that they do not spread wider than the output
    wide = int(round(error_model.smoothing_width(kernel)))
    return ScanSpec(settings.policy.window, settings.policy.statistic, tuple(kernel.shape),
                    tuple(settings.strides), reconstruct.METHOD_CODES[method],
                    max(settings.policy.window, wide))


def scan_scene(info: RasterInfo, settings: Settings, workers: int | None = None,
               progress: Callable[[int], None] | None = None,
               keep: TileCache | None = None) -> SceneStats:
    """The plan pass: every tile read once and summarised (and kept in ``keep``)."""
    return scan_scenes(info, [settings], workers, progress, keep)[0]


def scan_scenes(info: RasterInfo, settings: list[Settings], workers: int | None = None,
                progress: Callable[[int], None] | None = None,
                keep: TileCache | None = None) -> list[SceneStats]:
    """One plan pass for several configs over the same scene (the steps of a ``steps:``
    config, which share the tile size): every tile read once, summarised for each, and its
    pixels written to ``keep`` when given."""
    sizes = {s.tile_size for s in settings}
    assert len(sizes) == 1, "one tile grid"
    for s in settings:  # found out before the scene is read, not after
        _threshold_scale(info, s, np.ones(info.data_count))
    return scene_stats_many(info, sizes.pop(), [_spec(s) for s in settings], workers,
                            progress, keep)


def needs_scan(settings: Settings) -> bool:
    """Whether a run must read the scene to plan it: not with one allowed stride and no
    context, where every tile runs at that stride (``uniform_plan``)."""
    return len(settings.strides) > 1 or settings.context is not None


def make_plans(info: RasterInfo, settings: list[Settings], workers: int | None = None,
               progress: Callable[[int], None] | None = None,
               keep: TileCache | None = None) -> list[Plan]:
    """``make_plan`` for several configs over the same scene with one plan pass; a config
    with a single allowed stride and no context needs none."""
    grid = TileGrid(info.height, info.width, settings[0].tile_size)
    scanned = [s for s in settings if needs_scan(s)]
    stats = dict(zip(map(id, scanned), scan_scenes(info, scanned, workers, progress, keep),
                     strict=True)) if scanned else {}
    plans = []
    for s in settings:
        if id(s) not in stats:
            plans.append(uniform_plan(grid, s))
            continue
        plan = plan_from_stats(info, s, stats[id(s)])
        plan.details["read"] = READ_FULL
        plans.append(plan)
    return plans


def make_plan(
    info: RasterInfo,
    settings: Settings,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    keep: TileCache | None = None,
) -> Plan:
    """Read the scene tile by tile and choose a stride per tile with the configured policy;
    the decoded tiles go to ``keep`` when given.

    Tiles without a single valid pixel get stride 0: their output is all nodata.
    """
    plan = plan_from_stats(info, settings, scan_scene(info, settings, workers, progress,
                                                      keep))
    plan.details["read"] = READ_FULL
    return plan


def plan_from_stats(info: RasterInfo, settings: Settings, stats: SceneStats,
                    inp: PlanInputs | None = None) -> Plan:
    """The configured policy's plan for a scene already scanned."""
    inp = inp if inp is not None else plan_inputs(info, settings, stats)
    pol = settings.policy
    rule = None
    if pol.type == "variance":
        scale = _threshold_scale(info, settings, inp.stats.band_range())
        chosen, details = variance.plan(inp, pol.thresholds, pol.target_error, pol.statistic,
                                        scale, pol.thresholds_relative_to)
    elif pol.type == "budget":
        assert pol.fraction is not None
        chosen, details = budget.plan(inp, pol.fraction)
    else:
        chosen, rule, details = refine.plan(inp, pol.tolerance, pol.tolerance_db)
    strides = inp.with_fixed(chosen)
    details["stride_cap"] = {"max_stride": inp.cap, "source": inp.cap_source,
                             "capped": [s for s in inp.strides if s > inp.cap]}
    if inp.context is not None:
        details["context"] = inp.context.details
    rmse = inp.rmse_of(strides)
    worst = np.where(strides == 0, np.nan, rmse.max(axis=-1) if rmse.shape[-1] else 0.0)
    details["predicted_evaluations_fraction"] = round(
        inp.cost_of(strides) + (refine.checks_fraction(inp, strides) if rule else 0.0), 6)
    # error estimates take the model's word on what lies around the tile too
    model = np.maximum(inp.predicted, inp.reach_predicted)
    return Plan(strides, inp.grid, "policy", worst, details, model, inp.strides,
                _estimator(settings), rule)


def plan_warnings(details: dict[str, object]) -> list[str]:
    """One line for each thing a plan could not do as configured: a config key its kernel
    does not use, a context source whose regions miss the scene, a budget below the least
    the scene can spend. The run still goes on; the command line prints these as
    warnings."""
    context = details.get("context")
    found = list(details.get("config_warnings", []))
    found += list(context.get("warnings", [])) if isinstance(context, dict) else []
    if details.get("note"):
        found.append(str(details["note"]))
    return found


def _threshold_scale(info: RasterInfo, settings: Settings, band_range: np.ndarray) -> np.ndarray:
    try:
        return variance.threshold_scale(settings.policy.thresholds_relative_to, info.dtype,
                                        band_range)
    except ValueError as err:
        raise PlanError(f"{info.path}: {err}") from None


def _estimator(settings: Settings) -> ErrorEstimator:
    return ErrorEstimator.for_kernel(settings.kernel.array(), settings.strides,
                                     settings.reconstruction, settings.policy.window)


def load_plan(path: str, info: RasterInfo, settings: Settings) -> Plan:
    """A saved stride map, checked against the scene's tile grid (its size, and its
    georeferencing when it has any) and the allowed strides; nodata cells are skipped tiles."""
    grid = TileGrid(info.height, info.width, settings.tile_size)
    strides = raster_io.read_stride_map(path, grid.shape, info, settings.tile_size,
                                        tuple(settings.strides))
    details: dict[str, object] = {"policy": "file"}
    if settings.context is not None:  # a saved plan runs as it is: say so, not silently
        details["note"] = (f"{path}: executed as saved; the config's context: block is not "
                           "applied to it")
    return Plan(strides, grid, str(path), None, details, estimator=_estimator(settings))
