"""The library entry points the command line calls: ``run_scene`` and ``plan_scene``.

One call per input. Nothing here prints; progress goes through an optional callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import __version__, fingerprint, raster_io
from .config import Settings
from .errors import OutputError
from .pipeline import ExecuteOptions, ExecuteStats, compute_dtype, execute
from .planning import Plan, load_plan, make_plan, uniform_plan
from .report import RunReport, peak_memory_mb
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


@dataclass(frozen=True)
class OutputPaths:
    """The three files of a run."""

    raster: Path
    stride_map: Path
    report: Path

    @classmethod
    def for_input(cls, src: Path, output: Path | None = None,
                  out_dir: Path | None = None) -> OutputPaths:
        """``scene.satconv.tif`` / ``scene.stride.tif`` / ``scene.satconv.json`` beside the
        input (or in ``out_dir``); with an explicit ``output``, ``out.tif`` / ``out.stride.tif``
        / ``out.satconv.json``."""
        if output is not None:
            stem = output.name[: -len(output.suffix)] if output.suffix else output.name
            return cls(output, output.with_name(f"{stem}.stride.tif"),
                       output.with_name(f"{stem}.satconv.json"))
        folder = out_dir if out_dir is not None else src.parent
        stem = src.name[: -len(src.suffix)] if src.suffix else src.name
        return cls(folder / f"{stem}.satconv.tif", folder / f"{stem}.stride.tif",
                   folder / f"{stem}.satconv.json")

    def all(self) -> list[Path]:
        return [self.report, self.raster, self.stride_map]


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


def _check_outputs(src: Path, paths: OutputPaths, overwrite: bool,
                   plan_path: Path | None = None) -> None:
    for p in (paths.raster, paths.stride_map, paths.report):
        for other, what in ((src, "the input"), (plan_path, "the plan it executes")):
            if other is not None and _same_file(p, other):
                raise OutputError(f"{src}: output {p} would overwrite {what}")
        raster_io.check_output_dir(p)
        if p.exists() and not overwrite:
            raise OutputError(f"{p}: already exists (use --overwrite to replace it)")


def plan_scene(
    src: str | Path,
    settings: Settings,
    workers: int | None = None,
    progress: ProgressFactory = _no_progress,
) -> tuple[raster_io.RasterInfo, Plan]:
    """Plan one scene: a stride per tile, without convolving."""
    with raster_io.gdal_env(), raster_io.open_input(src, input_policy(settings)) as ds:
        info = raster_io.describe(ds)
    grid = TileGrid(info.height, info.width, settings.tile_size)
    ny, nx = grid.shape
    with raster_io.gdal_env():
        plan = make_plan(info, settings, workers, progress("plan", ny * nx))
    return info, plan


def write_plan(path: Path, info: raster_io.RasterInfo, plan: Plan, settings: Settings,
               overwrite: bool = False) -> None:
    """Write a stride map on its own (``satconv plan -o``), atomically."""
    if _same_file(path, Path(info.path)):
        raise OutputError(f"{path}: would overwrite the input")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (use --overwrite to replace it)")
    raster_io.check_output_dir(path)
    with raster_io.StagedOutputs([path]) as staged:
        raster_io.write_stride_map(staged.temp(path), plan.strides, info, settings.tile_size,
                                   _tags(settings), cog=settings.output.cog)
        staged.commit()


def _tags(settings: Settings) -> dict[str, str]:
    return {"SATCONV_VERSION": __version__, "SATCONV_CONFIG": settings.to_json()}


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
) -> RunReport:
    """Plan (or load a plan for) one scene, execute it, and commit its three outputs.

    Either all three outputs appear at their final names, or none does: they are written under
    temporary names and renamed only when every one is complete. ``engine`` replaces planning
    and execution (``satconv.parts``).
    """
    t0 = time.perf_counter()
    name = str(src)  # as given: Path() would fold "s3://b/k" into "s3:/b/k"
    src = Path(src)
    paths = OutputPaths.for_input(src, output, out_dir)
    with raster_io.gdal_env():
        with raster_io.open_input(name, input_policy(settings)) as ds:
            info = raster_io.describe(ds)
        _check_outputs(src, paths, overwrite, plan_path)
        fp = fingerprint.of_run(info, settings, plan_path)
        grid = TileGrid(info.height, info.width, settings.tile_size)
        ntiles = grid.shape[0] * grid.shape[1]

        def make() -> Plan:
            if plan_path is not None:
                return load_plan(str(plan_path), info, settings)
            if len(settings.strides) == 1 and settings.context is None:
                return uniform_plan(grid, settings.strides[0])
            return make_plan(info, settings, workers, progress("plan", ntiles))

        plan = make() if engine is None else engine.plan(info, fp, make)
        t_plan = time.perf_counter()

        out_dtype = info.dtype if settings.output.dtype == "same" else settings.output.dtype
        profile = raster_io.output_profile(info, out_dtype, settings.output.compress,
                                           settings.tile_size)
        if info.mask in ("dataset", "alpha"):
            # GDAL's threaded compression reports a spurious "ExtraSamples" error when an
            # internal mask is written alongside (GDAL issue 7921): compress in one thread.
            profile.pop("num_threads", None)
        opts = ExecuteOptions(
            kernel=settings.kernel.array(),
            boundary=settings.boundary,
            cval=settings.cval,
            reconstruction=settings.reconstruction,
            out_dtype=out_dtype,
            out_nodata=profile["nodata"],
            min_valid_fraction=settings.min_valid_fraction,
            write_mask=info.mask in ("dataset", "alpha"),
            compute_dtype=compute_dtype(info.dtype, out_dtype),
        )
        tags = _tags(settings)
        with raster_io.StagedOutputs(paths.all()) as staged:
            raster_tmp = staged.temp(paths.raster)
            body = raster_tmp.with_name(raster_tmp.name + ".body") if settings.output.cog \
                else raster_tmp
            try:
                with raster_io.open_output(body, profile) as dst:
                    raster_io.describe_output(dst, info, tags, float(opts.kernel.sum()))
                    run = execute if engine is None else engine.execute
                    stats = run(info, plan, opts, dst, workers, progress("execute", ntiles))
                if settings.output.cog:
                    raster_io.to_cog(body, raster_tmp, settings.output.compress,
                                     settings.tile_size, out_dtype)
            finally:
                if body != raster_tmp:
                    body.unlink(missing_ok=True)
            raster_io.write_stride_map(staged.temp(paths.stride_map), plan.strides, info,
                                       settings.tile_size, tags, cog=settings.output.cog)
            t_exec = time.perf_counter()
            report = RunReport(
                input=str(src),
                outputs={"raster": str(paths.raster), "stride_map": str(paths.stride_map),
                         "report": str(paths.report)},
                config=settings.to_dict(),
                scene={"width": info.width, "height": info.height, "bands": info.count,
                       "data_bands": list(info.bands), "validity": info.mask,
                       "dtype": info.dtype, "nodata": _json_num(info.nodata),
                       "crs": info.crs.to_string() if info.crs else None},
                plan=plan.summary(),
                execute={"tiles": stats.tiles, "kernel_evaluations": stats.evaluations,
                         "evaluations_per_pixel": round(
                             stats.evaluations / max(stats.pixels, 1), 6),
                         "output_dtype": out_dtype, "output_nodata": _json_num(opts.out_nodata)},
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


def _json_num(v: float | None) -> float | str | None:
    if v is None:
        return None
    return "nan" if np.isnan(v) else float(v)
