"""The library entry points the command line calls: ``run_scene`` and ``plan_scene``.

One call per input. Nothing here prints; progress goes through an optional callback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import __version__, fingerprint, raster_io, tile_cache
from .config import Settings
from .errors import OutputError, SatconvError, UsageError
from .pipeline import ExecuteOptions, ExecuteStats, compute_dtype, execute
from .planning import (
    READ_FULL,
    READ_KEPT,
    READ_PLAN_ONLY,
    Plan,
    compare,
    load_plan,
    make_plan,
    needs_scan,
    plan_from_stats,
    read_again,
    scan_scene,
    uniform_plan,
)
from .planning.inputs import plan_inputs
from .report import RunReport, peak_memory_mb, reset_peak_memory
from .tiling import TileGrid

#: progress(phase, total) returns a per-tile callback; phase is "plan" or "execute".
ProgressFactory = Callable[[str, int], Callable[[int], None]]


class Engine(Protocol):
    """Another way to plan and execute one scene (``satconv.parts``: resumable part files,
    Dask row bands). ``plan`` gets the run's fingerprint and the default way to plan."""

    def plan(self, info: raster_io.RasterInfo, fp: dict[str, str],
             make: Callable[[], Plan]) -> Plan: ...

    def execute(self, info: raster_io.RasterInfo, plan: Plan, opts: ExecuteOptions, dst: Any,
                workers: int | None, progress: Callable[[int], None]) -> ExecuteStats: ...

    def report(self) -> dict[str, Any]: ...


#: Names a run gives its side outputs: never a raster output's own name (``-o``).
SIDE_OUTPUTS = (".stride.tif", ".error.tif", ".satconv.json", ".quicklook.png")


@dataclass(frozen=True)
class OutputPaths:
    """The three files of a run (four with the error map)."""

    raster: Path
    stride_map: Path
    report: Path
    error_map: Path | None = None

    def with_error_map(self) -> OutputPaths:
        """The same outputs plus ``*.error.tif`` beside the stride map."""
        name = self.stride_map.name.removesuffix(".stride.tif") + ".error.tif"
        return OutputPaths(self.raster, self.stride_map, self.report,
                           self.stride_map.with_name(name))

    @classmethod
    def for_input(cls, src: Path, output: Path | None = None,
                  out_dir: Path | None = None) -> OutputPaths:
        """``scene.satconv.tif`` / ``scene.stride.tif`` / ``scene.satconv.json`` beside the
        input (or in ``out_dir``); with an explicit ``output``, ``out.tif`` / ``out.stride.tif``
        / ``out.satconv.json`` (:class:`UsageError` when ``output`` itself has the name of a
        side output: it would replace another run's)."""
        if output is not None:
            side = next((x for x in SIDE_OUTPUTS if output.name.endswith(x)), None)
            if side is not None:
                raise UsageError(f"{output}: names ending in {side} are satconv's own side "
                                 "outputs (a run's stride map, error map, report or "
                                 "quicklook); choose another output name")
            stem = output.name[: -len(output.suffix)] if output.suffix else output.name
            return cls(output, output.with_name(f"{stem}.stride.tif"),
                       output.with_name(f"{stem}.satconv.json"))
        folder = out_dir if out_dir is not None else src.parent
        stem = src.name[: -len(src.suffix)] if src.suffix else src.name
        return cls(folder / f"{stem}.satconv.tif", folder / f"{stem}.stride.tif",
                   folder / f"{stem}.satconv.json")

    def all(self) -> list[Path]:
        extra = [self.error_map] if self.error_map is not None else []
        return [self.report, self.raster, self.stride_map, *extra]


def _no_progress(phase: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def input_policy(settings: Settings) -> raster_io.InputPolicy:
    """What may be opened as an input, from the config's ``input:``, ``limits:``, tile size."""
    return raster_io.InputPolicy(
        drivers=tuple(settings.input.drivers), allow_urls=settings.input.allow_urls,
        max_pixels=settings.limits.max_pixels, max_bands=settings.limits.max_bands,
        max_block_bytes=settings.limits.max_block_bytes, max_tiles=settings.limits.max_tiles,
        tile_size=settings.tile_size,
    )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def interrupted_commit(paths: OutputPaths, settings: Settings) -> bool:
    """Whether the outputs at ``paths`` are what a run of ``settings`` left when it was killed
    while renaming its finished outputs into place, or what is left of such a run's outputs
    when the report was damaged since: the report (renamed last) is missing or not JSON
    (truncated, emptied), and every other output present is a complete GeoTIFF that satconv
    wrote with this config for this report (not another run's finished raster that happens
    to have this name, as with ``-o out/scene.satconv.tif`` beside an ``--out-dir out``
    run's). Such a set is redone like a killed run's staged files, without ``--overwrite``."""
    present = [p for p in paths.all() if p.exists() and p != paths.report]
    if not present or (paths.report.exists() and not _damaged_json(paths.report)):
        return False
    config = settings.to_json()
    for p in present:
        try:
            raster_io.verify_output(p)
            tags = raster_io.tags(p)
            if tags.get("SATCONV_CONFIG") != config or \
                    tags.get("SATCONV_REPORT", paths.report.name) != paths.report.name:
                return False
        except (SatconvError, OSError):
            return False
    return True


def _damaged_json(path: Path) -> bool:
    """A file that should hold JSON and does not parse (truncated, emptied)."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # (UnicodeDecodeError included)
        return True
    except OSError:
        return False
    return False


def _check_outputs(src: Path, paths: OutputPaths, overwrite: bool,
                   plan_path: Path | None = None, settings: Settings | None = None) -> None:
    leftover = None
    for p in paths.all():
        for other, what in ((src, "the input"), (plan_path, "the plan it executes")):
            if other is not None and _same_file(p, other):
                raise OutputError(f"{src}: output {p} would overwrite {what}")
        raster_io.check_output_dir(p)
        if p.is_dir():
            raise OutputError(f"{p}: is a folder, where an output file must go")
        if p.exists() and not overwrite:
            if leftover is None:
                leftover = settings is not None and interrupted_commit(paths, settings)
            if not leftover:
                raise OutputError(f"{p}: already exists (use --overwrite to replace it)")


def plan_scene(
    src: str | Path,
    settings: Settings,
    workers: int | None = None,
    progress: ProgressFactory = _no_progress,
) -> tuple[raster_io.RasterInfo, Plan]:
    """Plan one scene: a stride per tile, without convolving."""
    info, ntiles = _describe(src, settings)
    with raster_io.gdal_env():
        plan = make_plan(info, settings, workers, progress("plan", ntiles))
    plan.details["read"] = READ_PLAN_ONLY
    return info, plan


def _describe(src: str | Path, settings: Settings) -> tuple[raster_io.RasterInfo, int]:
    """Open ``src`` under the configured input policy: its summary and its number of tiles."""
    with raster_io.gdal_env(), raster_io.open_input(src, input_policy(settings)) as ds:
        info = raster_io.describe(ds)
    ny, nx = TileGrid(info.height, info.width, settings.tile_size).shape
    return info, ny * nx


@dataclass(frozen=True)
class PlanComparison:
    """``satconv plan``: the configured plan, every policy's and every uniform stride's
    predicted compute and error, and the cheapest uniform stride as good as the plan."""

    info: raster_io.RasterInfo
    plan: Plan
    policies: list[compare.Prediction]
    uniform: list[compare.Prediction]
    predicted: compare.Prediction
    best_uniform: compare.Prediction | None


def compare_scene(
    src: str | Path,
    settings: Settings,
    workers: int | None = None,
    progress: ProgressFactory = _no_progress,
) -> PlanComparison:
    """Plan one scene and predict every policy on it (one pass over the scene)."""
    info, ntiles = _describe(src, settings)
    with raster_io.gdal_env():
        stats = scan_scene(info, settings, workers, progress("plan", ntiles))
        inp = plan_inputs(info, settings, stats)
        plan = plan_from_stats(info, settings, stats, inp)
        plan.details["read"] = READ_PLAN_ONLY
        if unused := settings.warnings():
            plan.details["config_warnings"] = unused
        policies, uniform = compare.compare(info, settings, stats, inp)
    peak = inp.output_range()
    predicted = compare.predict("configured", inp, plan.strides,
                                plan.details["predicted_evaluations_fraction"], peak)
    return PlanComparison(info, plan, policies, uniform, predicted,
                          compare.best_uniform(uniform, predicted.psnr_db))


def write_plan(path: Path, info: raster_io.RasterInfo, plan: Plan, settings: Settings,
               overwrite: bool = False) -> None:
    """Write a stride map on its own (``satconv plan -o``), atomically."""
    if _same_file(path, Path(info.path)):
        raise OutputError(f"{path}: would overwrite the input")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (use --overwrite to replace it)")
    raster_io.check_output_dir(path)
    with raster_io.StagedOutputs([path]) as staged:
        # (no report: a run must not take this map for its own interrupted output)
        raster_io.write_stride_map(staged.temp(path), plan.strides, info, settings.tile_size,
                                   {**_tags(settings), "SATCONV_REPORT": "none (satconv plan)"},
                                   cog=settings.output.cog)
        staged.commit()


def write_default_config(path: Path, overwrite: bool = False) -> None:
    """Write the built-in defaults as YAML to ``path`` (``satconv config init``), atomically:
    the file appears whole or not at all. Raises :class:`OutputError` (one line) when it
    exists and ``overwrite`` is false, or when it cannot be written."""
    from .config import default_yaml

    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (use --overwrite to replace it)")
    raster_io.check_output_dir(path)
    with raster_io.StagedOutputs([path]) as staged:
        staged.temp(path).write_text(default_yaml(), encoding="utf-8")
        staged.commit()


def _tags(settings: Settings, report: Path | None = None) -> dict[str, str]:
    """The tags of every raster a run writes: satconv's version, the config, and the name of
    the run's report (``interrupted_commit`` tells a run's own outputs by them)."""
    tags = {"SATCONV_VERSION": __version__, "SATCONV_CONFIG": settings.to_json()}
    if report is not None:
        tags["SATCONV_REPORT"] = report.name
    return tags


def output_setup(info: raster_io.RasterInfo, settings: Settings,
                 plan: Plan | None = None) -> tuple[dict, ExecuteOptions]:
    """The output's creation profile and the execution options of ``settings`` on ``info``.

    Where ``plan`` skips tiles of an input without any invalid pixel, an integer output
    marks them in an internal mask: a nodata value would have to be one the valid pixels
    could take (every value of the type can be a filtered value), and they would move off it.
    """
    out_dtype = _out_dtype(info, settings)
    skips = plan is not None and bool((plan.strides == 0).any())
    masks_skips = skips and info.mask == "none" and np.dtype(out_dtype).kind in "iu"
    profile = raster_io.output_profile(info, out_dtype, settings.output.compress,
                                       settings.tile_size, skips and not masks_skips)
    write_mask = info.mask in ("dataset", "alpha") or masks_skips
    if write_mask:
        # GDAL's threaded compression reports a spurious "ExtraSamples" error when an
        # internal mask is written alongside (GDAL issue 7921): compress in one thread.
        profile.pop("num_threads", None)
    return profile, ExecuteOptions(
        kernel=settings.kernel.array(),
        boundary=settings.boundary,
        cval=settings.cval,
        reconstruction=settings.reconstruction,
        out_dtype=out_dtype,
        out_nodata=profile["nodata"],
        min_valid_fraction=settings.min_valid_fraction,
        write_mask=write_mask,
        compute_dtype=compute_dtype(info.dtype, out_dtype, settings.cval),
    )


def scene_summary(info: raster_io.RasterInfo) -> dict[str, object]:
    """The input's description for the run report."""
    return {"width": info.width, "height": info.height, "bands": info.count,
            "data_bands": list(info.bands), "validity": info.mask, "dtype": info.dtype,
            "nodata": _json_num(info.nodata),
            "crs": info.crs.to_string() if info.crs else None}


def run_scene(
    src: str | Path,
    settings: Settings,
    output: Path | None = None,
    out_dir: Path | None = None,
    plan_path: Path | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: ProgressFactory = _no_progress,
    engine: Engine | None = None,
    error_map: bool = False,
) -> RunReport:
    """Plan (or load a plan for) one scene, execute it, and commit its three outputs (four
    with ``error_map``: the estimated RMS error per tile, beside the stride map).

    Either all outputs appear at their final names, or none does: they are written under
    temporary names and renamed only when every one is complete. ``engine`` replaces planning
    and execution (``satconv.parts``).
    """
    t0 = time.perf_counter()
    reset_peak_memory()
    name = str(src)  # as given: Path() would fold "s3://b/k" into "s3:/b/k"
    src = Path(src)
    paths = OutputPaths.for_input(src, output, out_dir)
    if error_map:
        paths = paths.with_error_map()
    with raster_io.gdal_env(), KeptTiles() as kept:
        with raster_io.open_input(name, input_policy(settings)) as ds:
            info = raster_io.describe(ds)
        _check_outputs(src, paths, overwrite, plan_path, settings)
        fp = fingerprint.of_run(info, settings, plan_path)
        grid = TileGrid(info.height, info.width, settings.tile_size)
        ntiles = grid.shape[0] * grid.shape[1]

        def make() -> Plan:
            if plan_path is not None:
                return load_plan(str(plan_path), info, settings)
            if not needs_scan(settings):
                return uniform_plan(grid, settings)
            kept.open(info, grid, paths.raster.parent, output_bytes(info, settings),
                      None if engine is None else ENGINE_READS)
            made = make_plan(info, settings, workers, progress("plan", ntiles), kept.cache)
            kept.settle(made)  # (said before an engine saves the plan with its parts)
            return made

        plan = make() if engine is None else engine.plan(info, fp, make)
        if unused := settings.warnings():
            plan.details["config_warnings"] = unused
        t_plan = time.perf_counter()

        profile, opts = output_setup(info, settings, plan)
        out_dtype = opts.out_dtype
        tags = _tags(settings, paths.report)
        with raster_io.StagedOutputs(paths.all()) as staged:
            raster_tmp = staged.temp(paths.raster)
            body = raster_tmp.with_name(raster_tmp.name + ".body") if settings.output.cog \
                else raster_tmp
            try:
                with raster_io.open_output(body, profile) as dst:
                    raster_io.describe_output(dst, info, tags, float(opts.kernel.sum()))
                    if engine is None:
                        stats = execute(info, plan, opts, dst, workers,
                                        progress("execute", ntiles), kept.cache)
                        kept.close()  # its disk space is the outputs' from here on
                    else:
                        stats = engine.execute(info, plan, opts, dst, workers,
                                               progress("execute", ntiles))
                if settings.output.cog:
                    raster_io.to_cog(body, raster_tmp, settings.output.compress,
                                     settings.tile_size, out_dtype)
            finally:
                if body != raster_tmp:
                    body.unlink(missing_ok=True)
            executed = stats.strides if stats.strides is not None else plan.strides
            raster_io.write_stride_map(staged.temp(paths.stride_map), executed, info,
                                       settings.tile_size, tags, cog=settings.output.cog)
            if paths.error_map is not None and stats.errors is not None:
                raster_io.write_error_map(staged.temp(paths.error_map), stats.errors, info,
                                          settings.tile_size, tags)
            t_exec = time.perf_counter()
            outputs = {"raster": str(paths.raster), "stride_map": str(paths.stride_map),
                       "report": str(paths.report)}
            if paths.error_map is not None:
                outputs["error_map"] = str(paths.error_map)
            report = RunReport(
                input=str(src),
                outputs=outputs,
                config=settings.to_dict(),
                scene=scene_summary(info),
                plan=_plan_block(plan, executed),
                execute={"tiles": stats.tiles, "kernel_evaluations": stats.evaluations,
                         "evaluations_per_pixel": round(
                             stats.evaluations / max(stats.pixels, 1), 6),
                         **_executed(stats),
                         "output_dtype": out_dtype, "output_nodata": _json_num(opts.out_nodata)},
                error=error_report(stats, plan.grid),
                timings={"plan": round(t_plan - t0, 3), "execute": round(t_exec - t_plan, 3),
                         "total": round(time.perf_counter() - t0, 3)},
                peak_memory_mb=peak_memory_mb(),
                fingerprint=fp,
            )
            if engine is not None:
                report.execute.update(engine.report())
            report.write(staged.temp(paths.report))
            staged.commit()
            return report


#: Why a run with an engine (``--resume``, Dask row bands) keeps no decoded tiles.
ENGINE_READS = "a resumable or distributed run's parts read the input themselves"


class KeptTiles:
    """The plan pass's decoded tiles for the execute pass (``satconv.tile_cache``), when they
    are worth keeping; closed (and gone) on leaving the ``with`` block."""

    def __init__(self) -> None:
        self.cache: tile_cache.TileCache | None = None
        self.why = ""

    def open(self, info: raster_io.RasterInfo, grid: TileGrid, folder: Path, outputs: int,
             refused: str | None = None) -> None:
        """Keep the tiles in ``folder`` if :func:`tile_cache.decide` says so, where the run
        writes about ``outputs`` bytes, unless ``refused`` (why this run cannot use them)."""
        decision = tile_cache.decide(info, folder, outputs)
        self.why = decision.reason
        if decision.keep and refused is not None:
            self.why = refused
        elif decision.keep:
            try:
                self.cache = tile_cache.TileCache(grid, info, folder)
            except OSError as err:
                self.why = f"no temporary file in {folder} ({raster_io.first_line(err)})"

    def settle(self, *plans: Plan) -> None:
        """After the plan pass: keep the cache only if it holds every tile (else close it),
        and say in the plans' reports how the execute pass reads the input."""
        if self.cache is not None and not self.cache.complete:
            self.why = f"keeping the decoded tiles failed ({self.cache.failure})"
            self.close()
        for plan in plans:
            if plan.details.get("read") == READ_FULL and self.why:
                plan.details["read"] = READ_KEPT if self.cache is not None else \
                    read_again(self.why)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def __enter__(self) -> KeptTiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def output_bytes(info: raster_io.RasterInfo, settings: Settings) -> int:
    """At most what the output raster of ``settings`` takes on disk, uncompressed (twice over
    for a COG, whose body is copied): its stride and error maps are small beside it."""
    item = np.dtype(_out_dtype(info, settings)).itemsize
    size = info.height * info.width * info.data_count * item
    return 2 * size if settings.output.cog else size


def _out_dtype(info: raster_io.RasterInfo, settings: Settings) -> str:
    return info.dtype if settings.output.dtype == "same" else settings.output.dtype


def _plan_block(plan: Plan, executed: np.ndarray) -> dict[str, Any]:
    """The report's ``plan``: its ``tiles_per_stride`` and ``compute_fraction`` are those of
    the stride map written (the plan that ran). Where execution changed the plan (refine's
    strides, tiles found without a valid pixel) the planned ones follow as
    ``planned_tiles_per_stride`` and ``planned_compute_fraction``."""
    planned = plan.summary()
    if np.array_equal(executed, plan.strides):
        return planned
    ran = replace(plan, strides=executed).summary()
    return {**planned, "tiles_per_stride": ran["tiles_per_stride"],
            "compute_fraction": ran["compute_fraction"],
            "planned_tiles_per_stride": planned["tiles_per_stride"],
            "planned_compute_fraction": planned["compute_fraction"]}


def _executed(stats: ExecuteStats) -> dict[str, object]:
    """Per-stride tile counts and the compute share of the strides actually executed."""
    if stats.strides is None:
        return {}
    values, counts = np.unique(stats.strides, return_counts=True)
    return {"tiles_per_stride": {str(int(v)): int(c) for v, c in
                                 zip(values, counts, strict=True)}}


def _psnr(peak: float, rmse: float) -> float | None:
    if not np.isfinite(rmse) or not np.isfinite(peak) or peak <= 0:
        return None
    return round(float(10 * np.log10(peak * peak / rmse / rmse)), 3) if rmse > 0 else None


def _rms(errors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pixel-weighted RMS over tiles, per band (NaN where no pixel)."""
    e = np.where(np.isfinite(errors), errors, 0.0)
    w = weights.astype(np.float64)
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.sqrt((w * e * e).sum(axis=0) / total), np.nan)


def error_report(stats: ExecuteStats, grid: TileGrid) -> dict[str, object]:
    """The run's estimated error: per band and stride the RMS over valid pixels and the PSNR
    (peak = the band's output value range in this run; PSNR null where the estimate is 0),
    and the worst tile. Estimates come from the executed samples (``ErrorEstimator``)."""
    if stats.errors is None or stats.valid is None or stats.strides is None:
        return {}
    peak = stats.vmax - stats.vmin
    errs = stats.errors.reshape(-1, stats.errors.shape[-1])
    valid = stats.valid.reshape(errs.shape)
    strides = stats.strides.reshape(-1)

    def block(sel: np.ndarray) -> dict[str, object]:
        rmse = _rms(errs[sel], valid[sel])
        psnr = [_psnr(p, r) for p, r in zip(peak, rmse, strict=True)]
        finite = [p for p in psnr if p is not None]
        return {"tiles": int(sel.sum()),
                "rmse_per_band": [None if not np.isfinite(r) else round(float(r), 6)
                                  for r in rmse],
                "psnr_db_per_band": psnr,
                "psnr_db": min(finite) if finite else None}

    out: dict[str, object] = {
        "method": "estimated per tile from the executed samples' hierarchical surpluses and "
                  "the error model, meant to be at or above the error (refined tiles: the "
                  "estimate refinement stopped on; other tiles: a wider margin), plus, for "
                  "an integer output, what rounding to it changed (measured per tile)",
        "peak_per_band": [None if not np.isfinite(p) else round(float(p), 6) for p in peak],
        "overall": block(strides > 0),
        "per_stride": {str(int(s)): block(strides == s) for s in np.unique(strides) if s > 0},
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(peak > 0, errs / peak, np.nan)
    rel = np.where(valid > 0, rel, np.nan)
    if np.isfinite(rel).any():
        i, b = np.unravel_index(int(np.nanargmax(rel)), rel.shape)
        ty, tx = divmod(int(i), grid.shape[1])
        out["worst_tile"] = {"tile": [ty, tx], "band": int(b) + 1,
                             "stride": int(strides[i]),
                             "rmse": round(float(errs[i, b]), 6),
                             "psnr_db": _psnr(float(peak[b]), float(errs[i, b]))}
    return out


def _json_num(v: float | None) -> float | str | None:
    if v is None:
        return None
    return "nan" if np.isnan(v) else float(v)
