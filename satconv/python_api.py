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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, overload

import numpy as np

from . import api, config, previews
from .config import Settings
from .errors import OutputError, UsageError
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
        progress: api.ProgressFactory | None = ...) -> RunReport: ...


@overload
def run(inputs: Sequence[PathLike], config: ConfigLike = ..., *,
        output: PathLike | None = ..., out_dir: PathLike | None = ...,
        plan: PathLike | None = ..., overwrite: bool = ..., threads: int | None = ...,
        quicklook: bool = ..., progress: api.ProgressFactory | None = ...,
        ) -> list[RunReport]: ...


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
) -> RunReport | list[RunReport]:
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
        them for a list of inputs. The first input that fails raises; the inputs before it
        are done.
    """
    single = isinstance(inputs, str | os.PathLike)
    names = [inputs] if single else list(inputs)  # type: ignore[list-item]
    settings = load_config(config)
    if not names:
        raise UsageError("run: no input given")
    if output is not None and len(names) > 1:
        raise UsageError("output takes one input; use out_dir for several")
    if out_dir is not None and not Path(out_dir).is_dir():
        what = "is not a folder" if Path(out_dir).exists() else "does not exist"
        raise OutputError(f"{out_dir}: output folder {what}")
    workers = _threads(threads)
    reports = []
    for name in names:
        kwargs: dict[str, Any] = dict(output=_path(output), out_dir=_path(out_dir),
                                      plan_path=_path(plan), overwrite=overwrite,
                                      workers=workers)
        if quicklook:
            target = previews.quicklook_path(
                api.OutputPaths.for_input(Path(name), kwargs["output"], kwargs["out_dir"]).raster)
            previews.check_target(target, overwrite)
        if progress is not None:
            kwargs["progress"] = progress
        report = api.run_scene(os.fspath(name), settings, **kwargs)
        if quicklook:
            previews.quicklook_for_run(report, overwrite=overwrite)
        reports.append(report)
    return reports[0] if single else reports


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
         progress: api.ProgressFactory | None = None) -> PlanResult:
    """Plan one scene without convolving it, as ``satconv plan``.

    ``config``, ``threads`` and ``progress`` as for :func:`run`; with ``output``, the stride
    map is also written there (``overwrite`` to replace it).
    """
    settings = load_config(config)
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
