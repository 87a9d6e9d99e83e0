"""satconv's Python API: ``satconv.run``, ``satconv.plan``, ``satconv.preview``.

The same work as the command line (both call :mod:`satconv.api` one scene at a time), with
Python values instead of options and exceptions instead of exit codes::

    import satconv

    report = satconv.run("scene.tif", config={"kernel": {"type": "gaussian", "size": 5}})
    print(report.plan["compute_fraction"], report.outputs["stride_map"])

Every failure raises a :class:`satconv.errors.SatconvError` subclass with a one-line message
(:class:`~satconv.errors.ConfigError`, :class:`~satconv.errors.InputError`,
:class:`~satconv.errors.OutputError`, ...). Nothing here prints.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, overload

import numpy as np

from . import api, config, previews, steps
from .config import Settings
from .errors import OutputError, SatconvWarning, UsageError
from .report import RunReport

__all__ = ["PlanResult", "RunReport", "Settings", "load_config", "plan", "preview", "run"]

PathLike: TypeAlias = str | os.PathLike[str]
#: A config: ``None`` (the built-in defaults), a YAML file, a mapping shaped like the YAML
#: (validated the same way, unknown keys refused), or :class:`Settings`.
ConfigLike: TypeAlias = Settings | Mapping[str, Any] | PathLike | None


def load_config(config_: ConfigLike = None) -> Settings:
    """Validated settings from any :data:`ConfigLike`; :class:`ConfigError` naming the key
    and the reason otherwise."""
    if config_ is None:
        return Settings()
    if isinstance(config_, Settings):
        return config_
    if isinstance(config_, Mapping):
        return config.from_dict(dict(config_), "config")
    if isinstance(config_, str | os.PathLike):
        return config.load(config_)
    raise UsageError(f"config: expected a path, a mapping or Settings, got "
                     f"{type(config_).__name__}")


def _threads(threads: int | None) -> int | None:
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads: expected a whole number >= 1, got {threads!r}")
    return threads


def _path(p: PathLike | None) -> Path | None:
    return None if p is None else Path(p)


@overload
def run(inputs: PathLike, config: ConfigLike = ..., *, output: PathLike | None = ...,
        out_dir: PathLike | None = ..., plan: PathLike | None = ..., overwrite: bool = ...,
        threads: int | None = ..., quicklook: bool = ...,
        progress: api.ProgressFactory | None = ...) -> RunReport | list[RunReport]: ...


@overload
def run(inputs: Sequence[PathLike], config: ConfigLike = ..., *,
        output: PathLike | None = ..., out_dir: PathLike | None = ...,
        plan: PathLike | None = ..., overwrite: bool = ..., threads: int | None = ...,
        quicklook: bool = ..., progress: api.ProgressFactory | None = ...,
        ) -> list[RunReport] | list[list[RunReport]]: ...


def run(
    inputs: PathLike | Sequence[PathLike],
    config: ConfigLike = None,
    *,
    output: PathLike | None = None,
    out_dir: PathLike | None = None,
    plan: PathLike | None = None,
    overwrite: bool = False,
    threads: int | None = None,
    quicklook: bool = False,
    progress: api.ProgressFactory | None = None,
) -> RunReport | list[RunReport] | list[list[RunReport]]:
    """Convolve one scene or several, as ``satconv run``.

    Parameters
    ----------
    inputs
        A GeoTIFF path, or a list of them (then a list of reports comes back, in order).
    config
        ``None`` for the built-in defaults, a YAML file, a mapping shaped like the YAML
        (``{"kernel": {"type": "box", "size": 3}, "strides": [1, 2, 4, 8]}``) or
        :class:`Settings`.
    output
        The output raster of a single input (``out.tif`` also gives ``out.stride.tif`` and
        ``out.satconv.json``). Default: ``scene.satconv.tif`` beside the input.
    out_dir
        An existing folder for the outputs of every input.
    plan
        A stride map to execute instead of planning (one pixel per tile, allowed strides).
    overwrite
        Replace existing outputs (otherwise :class:`OutputError`).
    threads
        Worker threads per scene (default: every CPU).
    quicklook
        Also draw ``scene.quicklook.png`` once the outputs are written.
    progress
        ``progress(phase, total)`` returning a per-tile callback ``step(n)``; ``phase`` is
        ``"plan"`` or ``"execute"``.

    Returns
    -------
    RunReport
        What the run did (``outputs``, ``plan`` with ``tiles_per_stride`` and
        ``compute_fraction``, ``timings``...), the data of ``scene.satconv.json``; a list of
        them for a list of inputs. A ``steps:`` config gives a list of reports per input,
        one per step in order. The first input that fails raises; the inputs before it are
        done. Two inputs that would write the same outputs are refused before any runs.
        What the command line prints as a warning line (``RunReport.warnings``) is issued as
        a :class:`~satconv.errors.SatconvWarning`.
    """
    single = isinstance(inputs, str | os.PathLike)
    names = _inputs(inputs)
    settings = load_config(config)
    _flags(overwrite=overwrite, quicklook=quicklook)
    if output is not None and len(names) > 1:
        raise UsageError("output takes one input; use out_dir for several")
    if out_dir is not None and not Path(out_dir).is_dir():
        what = "is not a folder" if Path(out_dir).exists() else "does not exist"
        raise OutputError(f"{out_dir}: output folder {what}")
    if settings.steps and plan is not None:
        raise UsageError("plan: a stride map runs one kernel; the config has steps")
    workers = _threads(threads)
    _no_shared_outputs(names, settings, output, out_dir)
    kwargs: dict[str, Any] = dict(output=_path(output), out_dir=_path(out_dir),
                                  overwrite=overwrite, workers=workers)
    if progress is not None:
        kwargs["progress"] = progress
    results: list[Any] = []
    for name in names:
        if quicklook:
            for _, paths in _units(name, settings, output, out_dir):
                previews.check_target(previews.quicklook_path(paths.raster), overwrite)
        if settings.steps:
            done = steps.run_steps(os.fspath(name), settings, **kwargs)
        else:
            done = [api.run_scene(os.fspath(name), settings, plan_path=_path(plan), **kwargs)]
        for report in done:
            for message in report.warnings:
                warnings.warn(f"{report.input}: {message}", SatconvWarning, stacklevel=2)
            if quicklook:
                previews.quicklook_for_run(report, overwrite=overwrite)
        results.append(done if settings.steps else done[0])
    return results[0] if single else results


def _inputs(inputs: object) -> list[PathLike]:
    """The input paths of :func:`run`: one path, or a sequence of them (not empty)."""
    if isinstance(inputs, str | os.PathLike):
        return [inputs]
    if isinstance(inputs, bytes | bytearray) or not isinstance(inputs, Sequence):
        raise UsageError(f"inputs: expected a path or a list of paths, got "
                         f"{type(inputs).__name__}")
    names = list(inputs)
    bad = [n for n in names if not isinstance(n, str | os.PathLike)]
    if bad:
        raise UsageError(f"inputs: expected paths, got {type(bad[0]).__name__} {bad[0]!r}")
    if not names:
        raise UsageError("run: no input given")
    return names


def _flags(**flags: object) -> None:
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise UsageError(f"{key}: expected True or False, got {value!r}")


def _units(name: PathLike, settings: Settings, output: PathLike | None,
           out_dir: PathLike | None) -> list[tuple[Settings, api.OutputPaths]]:
    """The outputs ``name`` will have, per step of a ``steps:`` config (``batch.units``)."""
    from . import batch

    opts = batch.RunOptions(output=_path(output), out_dir=_path(out_dir))
    return batch.units(os.fspath(name), settings, opts)


def _no_shared_outputs(names: list[PathLike], settings: Settings, output: PathLike | None,
                       out_dir: PathLike | None) -> None:
    """Refuse, before anything runs, two inputs whose outputs would be the same files (two
    scenes of one name into one ``out_dir``), as ``batch.same_output_conflicts`` does for
    the command line."""
    from . import batch

    opts = batch.RunOptions(output=_path(output), out_dir=_path(out_dir))
    conflicts = batch.same_output_conflicts([os.fspath(n) for n in names], settings, opts)
    if conflicts:
        raise OutputError(next(iter(conflicts.values())).message)


@dataclass(frozen=True)
class PlanResult:
    """A plan without a run (``satconv plan``): a stride per tile and what it predicts.

    ``strides`` has one value per tile (rows, columns; 0 = skipped); ``compute_fraction`` is
    the sum over tiles of pixels / stride², as a share of full resolution; ``summary`` holds
    every figure the planner gave (the report's ``plan`` block).
    """

    input: str
    width: int
    height: int
    bands: int
    dtype: str
    tile_size: int
    strides: np.ndarray
    compute_fraction: float
    predicted_psnr_db: float | None
    summary: dict[str, Any]
    settings: Settings = field(repr=False)
    _info: Any = field(repr=False, compare=False, default=None)
    _plan: Any = field(repr=False, compare=False, default=None)

    @property
    def tiles_per_stride(self) -> dict[int, int]:
        """Tiles per stride, 0 (skipped) included when present."""
        values, counts = np.unique(self.strides, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    def save(self, path: PathLike, overwrite: bool = False) -> Path:
        """Write the stride map (a GeoTIFF to edit or to execute with ``run(plan=...)``)."""
        p = Path(path)
        api.write_plan(p, self._info, self._plan, self.settings, overwrite)
        return p


def plan(input: PathLike, config: ConfigLike = None, *, output: PathLike | None = None,
         overwrite: bool = False, threads: int | None = None,
         progress: api.ProgressFactory | None = None) -> PlanResult | list[PlanResult]:
    """Plan one scene without convolving it, as ``satconv plan``.

    ``config``, ``threads`` and ``progress`` as for :func:`run`; with ``output``, the stride
    map is also written there (``overwrite`` to replace it). A ``steps:`` config gives a list
    of plans, one per step (without ``output``: one stride map would not do).
    """
    settings = load_config(config)
    if settings.steps:
        if output is not None:
            raise UsageError("output: a config with steps has a plan per step")
        return [plan(input, one, threads=threads, progress=progress)  # type: ignore[misc]
                for _, one in settings.step_settings()]
    kwargs: dict[str, Any] = {"workers": _threads(threads)}
    if progress is not None:
        kwargs["progress"] = progress
    cmp = api.compare_scene(os.fspath(input), settings, **kwargs)
    info, the_plan = cmp.info, cmp.plan
    summary = the_plan.summary()
    psnr = cmp.predicted.psnr_db if np.isfinite(cmp.predicted.psnr_db) else None
    result = PlanResult(
        input=os.fspath(input), width=info.width, height=info.height, bands=info.data_count,
        dtype=info.dtype, tile_size=settings.tile_size, strides=the_plan.strides.copy(),
        compute_fraction=float(the_plan.compute_fraction()),
        predicted_psnr_db=float(psnr) if psnr is not None else None, summary=summary,
        settings=settings, _info=info, _plan=the_plan)
    if output is not None:
        result.save(output, overwrite)
    return result


def preview(path: PathLike, output: PathLike | None = None, *,
            size: int = previews.DEFAULT_SIZE, overwrite: bool = False,
            error_map: PathLike | None = None) -> Path:
    """Draw the quicklook of a run, as ``satconv preview``.

    ``path`` is the run's input or any of its outputs; the PNG goes to ``output`` (default:
    ``scene.quicklook.png`` beside the outputs), each panel at most ``size`` pixels on its
    long side. ``error_map`` adds an error raster the run did not record. Returns the PNG's
    path.
    """
    if not isinstance(size, int):
        raise UsageError(f"size: expected a whole number, got {size!r}")
    return previews.make_quicklook(path, output, size=size, overwrite=overwrite,
                                   error_map=error_map)
