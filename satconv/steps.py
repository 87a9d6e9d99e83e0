"""Configured pipelines: several named steps (``steps:`` in the config) over one input, in one
pass of reading.

Each step is a kernel with its own policy (default: the top-level one) and output suffix: the
step ``smooth`` of ``scene.tif`` writes ``scene.smooth.satconv.tif``, ``scene.smooth.stride.tif``
and ``scene.smooth.satconv.json``, exactly what a single-kernel run with that step's settings
would write (the same pixels, tags and report figures). Each step is planned with its own
policy; then every tile is read once, with the union of the pixels all steps need (the largest
halo, every step's closing samples), and convolved by every step at that step's stride.
All outputs of all steps appear together, or none does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import fingerprint, raster_io
from .api import (
    KeptTiles,
    OutputPaths,
    ProgressFactory,
    _check_outputs,
    _executed,
    _json_num,
    _plan_block,
    _tags,
    error_report,
    input_policy,
    output_bytes,
    output_setup,
    scene_summary,
)
from .config import Settings, StepConfig
from .convolve import PreparedKernel, tile_samples
from .errors import UsageError
from .parallel import map_tiles
from .pipeline import ExecuteOptions, Tally, TileDone, run_tile
from .planning import Plan, make_plans, needs_scan
from .report import RunReport, peak_memory_mb, reset_peak_memory
from .tile_cache import TileCache
from .tiling import Tile, TileGrid


@dataclass(frozen=True)
class Step:
    """One step of a run: its config entry, its single-kernel settings and its outputs."""

    config: StepConfig
    settings: Settings
    paths: OutputPaths


def step_paths(src: Path, suffix: str, output: Path | None = None,
               out_dir: Path | None = None) -> OutputPaths:
    """``scene<suffix>.satconv.tif`` / ``.stride.tif`` / ``.satconv.json`` beside the input
    (or in ``out_dir``); with ``-o out.tif``, ``out<suffix>.tif`` and so on."""
    if output is not None:
        stem = output.name[: -len(output.suffix)] if output.suffix else output.name
        return OutputPaths.for_input(src, output.with_name(f"{stem}{suffix}{output.suffix}"))
    stem = src.name[: -len(src.suffix)] if src.suffix else src.name
    return OutputPaths.for_input(src.with_name(f"{stem}{suffix}.tif"), None,
                                 out_dir if out_dir is not None else src.parent)


def plan_steps(src: str | Path, settings: Settings, output: Path | None = None,
               out_dir: Path | None = None) -> list[Step]:
    """The steps of ``settings`` for the input ``src``."""
    return [Step(st, ss, step_paths(Path(src), st.output_suffix(), output, out_dir))
            for st, ss in settings.step_settings()]


def _no_progress(phase: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def _union_reader(block: np.ndarray, valid: np.ndarray | None, urows: np.ndarray,
                  ucols: np.ndarray, dtype: str) -> Callable[[np.ndarray, np.ndarray], tuple]:
    """A ``convolve.Reader`` serving any rows x cols within the union already read, in the
    step's compute type (the union is read in float64, which holds every input type exactly,
    so each step computes on exactly what its own single run would read)."""

    def read(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        ir = np.searchsorted(urows, rows)
        ic = np.searchsorted(ucols, cols)
        data = np.ascontiguousarray(block[:, ir][:, :, ic], dtype=dtype)
        if valid is None:
            return data, None
        v = valid[:, ir][:, :, ic]
        return data, (None if v.all() else v)

    return read


def _process(ds: Any, tile: Tile, plans: list[Plan], info: Any,
             kernels: list[PreparedKernel], opts: list[ExecuteOptions],
             cache: TileCache | None) -> list[TileDone]:
    """Every step's tile, from a single read of the pixels they all need (from ``cache``,
    the plan pass's decoded tiles, when given): what a single-kernel run of each step
    computes for it (``pipeline.run_tile``)."""
    strides = [int(p.start[tile.ty, tile.tx]) for p in plans]
    samples = [tile_samples(tile, s, info.height, info.width, kernels[k], opts[k].boundary)
               for k, s in enumerate(strides) if s > 0]
    block = valid = urows = ucols = None
    if samples:
        urows = np.unique(np.concatenate([t.src_rows for t in samples]))
        ucols = np.unique(np.concatenate([t.src_cols for t in samples]))
        block, valid = raster_io.read_indexed(
            ds, info, urows, ucols, cval=opts[0].cval,
            windows=None if cache is None else cache.read_window_valid)
    out = []
    for k, s in enumerate(strides):
        read = _union_reader(block, valid, urows, ucols, opts[k].compute_dtype)
        out.append(run_tile(read, tile, s, info, kernels[k], opts[k], plans[k]))
    return out


def run_steps(
    src: str | Path,
    settings: Settings,
    output: Path | None = None,
    out_dir: Path | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: ProgressFactory = _no_progress,
) -> list[RunReport]:
    """Run every step of ``settings`` over ``src`` with one read of each tile; commit the
    three outputs of every step together. One report per step."""
    if not settings.steps:
        raise UsageError("run_steps: the config has no steps")
    t0 = time.perf_counter()
    reset_peak_memory()
    name = str(src)
    src = Path(src)
    steps = plan_steps(src, settings, output, out_dir)
    with raster_io.gdal_env(), KeptTiles() as kept:
        with raster_io.open_input(name, input_policy(settings)) as ds:
            info = raster_io.describe(ds)
        for st in steps:
            _check_outputs(src, st.paths, overwrite, settings=st.settings)
        grid = TileGrid(info.height, info.width, settings.tile_size)
        ntiles = grid.shape[0] * grid.shape[1]
        t_start = time.perf_counter()
        if any(needs_scan(st.settings) for st in steps):
            kept.open(info, grid, steps[0].paths.raster.parent,
                      sum(output_bytes(info, st.settings) for st in steps))
        plans = make_plans(info, [st.settings for st in steps], workers,
                           progress("plan", ntiles), kept.cache)
        kept.settle(*plans)
        for st, p in zip(steps, plans, strict=True):
            if unused := st.config.kernel.unused(f"steps[{st.config.name}].kernel"):
                p.details["config_warnings"] = unused
        cache = kept.cache
        t_plan = time.perf_counter()
        profs, opts = map(list, zip(*(output_setup(info, st.settings, p)
                                      for st, p in zip(steps, plans, strict=True)),
                                     strict=True))
        kernels = [PreparedKernel.from_kernel(o.kernel) for o in opts]
        finals = [p for st in steps for p in st.paths.all()]
        tallies = [Tally(p, info) for p in plans]
        with raster_io.StagedOutputs(finals) as staged, contextlib.ExitStack() as stack:
            bodies = []
            for st in steps:
                tmp = staged.temp(st.paths.raster)
                bodies.append(tmp.with_name(tmp.name + ".body") if st.settings.output.cog
                              else tmp)
            try:
                dsts = []
                for st, body, prof, o in zip(steps, bodies, profs, opts, strict=True):
                    dst = stack.enter_context(raster_io.open_output(body, prof))
                    raster_io.describe_output(dst, info, _tags(st.settings, st.paths.report),
                                              float(o.kernel.sum()))
                    dsts.append(dst)
                tick = progress("execute", ntiles)

                def fn(ds: Any, tile: Tile) -> list[TileDone]:
                    return _process(ds, tile, plans, info, kernels, opts, cache)

                with map_tiles(info.path, grid.tiles(), fn, workers) as computed:
                    for tile, results in computed:
                        for k, done in enumerate(results):
                            raster_io.write_tile(dsts[k], done.data, tile.row0, tile.col0,
                                                 done.mask if opts[k].write_mask else None)
                            tallies[k].add(tile, done)
                        tick(1)
                kept.close()  # its disk space is the outputs' from here on
                stack.close()  # close (and check) every output before copying any to COG
                for st, body, o in zip(steps, bodies, opts, strict=True):
                    if st.settings.output.cog:
                        raster_io.to_cog(body, staged.temp(st.paths.raster),
                                         st.settings.output.compress, st.settings.tile_size,
                                         o.out_dtype)
            finally:
                for st, body in zip(steps, bodies, strict=True):
                    if body != staged.temp(st.paths.raster):
                        body.unlink(missing_ok=True)
            t_exec = time.perf_counter()
            reports = []
            for k, st in enumerate(steps):
                tags = _tags(st.settings, st.paths.report)
                stats = tallies[k].stats()
                raster_io.write_stride_map(staged.temp(st.paths.stride_map), stats.strides,
                                           info, st.settings.tile_size, tags)
                report = RunReport(
                    input=str(src),
                    outputs={"raster": str(st.paths.raster),
                             "stride_map": str(st.paths.stride_map),
                             "report": str(st.paths.report)},
                    config=st.settings.to_dict(),
                    scene=scene_summary(info),
                    plan=_plan_block(plans[k], stats.strides),
                    execute={"tiles": ntiles, "kernel_evaluations": stats.evaluations,
                             "evaluations_per_pixel": round(
                                 stats.evaluations / max(stats.pixels, 1), 6),
                             **_executed(stats),
                             "output_dtype": opts[k].out_dtype,
                             "output_nodata": _json_num(opts[k].out_nodata),
                             "step": st.config.name,
                             "steps": [s.config.name for s in steps]},
                    error=error_report(stats, plans[k].grid),
                    # the passes serve every step: a single run's keys, the same times
                    timings={"plan": round(t_plan - t_start, 3),
                             "execute": round(t_exec - t_plan, 3),
                             "plan_all_steps": round(t_plan - t_start, 3),
                             "execute_all_steps": round(t_exec - t_plan, 3),
                             "total": round(time.perf_counter() - t0, 3)},
                    peak_memory_mb=peak_memory_mb(),
                    fingerprint=fingerprint.of_run(info, st.settings),
                )
                report.write(staged.temp(st.paths.report))
                reports.append(report)
            staged.commit()
    return reports
