"""Quicklooks of a run: find a scene's files, read them small, draw them, write the PNG.

``scene.quicklook.png`` sits beside the outputs (``out.quicklook.png`` for ``-o out.tif``).
It is drawn by :mod:`satconv.quicklook` from reads at most ``size`` pixels on the long side
(:func:`satconv.raster_io.read_decimated`), so a 20000-pixel scene costs a few MB, and it is
written under a temporary name and renamed when complete. Nothing here prints.
"""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, quicklook, raster_io
from .errors import ConfigError, InputError, OutputError, UsageError

QUICKLOOK_SUFFIX = ".quicklook.png"
#: Default long side of each panel, in pixels, and the range allowed.
DEFAULT_SIZE = 640
MIN_SIZE, MAX_SIZE = 16, 4096
#: Suffixes of the files one run writes (the error map under either name).
_OUTPUT_SUFFIXES = (".satconv.tif", ".stride.tif", ".error.tif", ".errors.tif",
                    ".satconv.json", QUICKLOOK_SUFFIX)
_MAX_REPORT_BYTES = 16 * 1024 * 1024


def _strip(name: str, suffixes: tuple[str, ...]) -> str | None:
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def quicklook_path(raster: Path) -> Path:
    """Where the quicklook of an output raster goes: ``scene.satconv.tif`` ->
    ``scene.quicklook.png``, ``out.tif`` -> ``out.quicklook.png``."""
    raster = Path(raster)
    base = _strip(raster.name, (".satconv.tif",)) or _stem(raster)
    return raster.with_name(base + QUICKLOOK_SUFFIX)


@dataclass(frozen=True)
class SceneFiles:
    """What a quicklook shows: the stride map, and whichever of the input, the output and
    the error map exist; the run report when one was found; where the PNG goes by default."""

    stride_map: Path
    quicklook: Path
    input: Path | None = None
    raster: Path | None = None
    error_map: Path | None = None
    report: dict[str, Any] | None = None
    tile_size: int | None = None


def _load_report(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > _MAX_REPORT_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("outputs"), dict):
        return None
    return data


def _recorded(value: object, folder: Path) -> Path | None:
    """A path a report recorded (as given on the command line): as it is when it exists,
    else the same name in the report's folder."""
    if not isinstance(value, str) or not value:
        return None
    p = Path(value)
    if p.exists():
        return p
    q = folder / p.name
    return q if q.exists() else None


def _same(a: Path | None, b: Path) -> bool:
    try:
        return a is not None and a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _from_report(path: Path, report: dict[str, Any]) -> SceneFiles | None:
    """The files a run report lists (None when its stride map is gone)."""
    outs = report["outputs"]
    folder = path.parent
    stride = _recorded(outs.get("stride_map"), folder)
    if stride is None:
        return None
    raster = _recorded(outs.get("raster"), folder)
    if raster is not None:
        target = quicklook_path(raster)
    elif isinstance(outs.get("raster"), str):  # the output is gone: the PNG goes in its place
        target = quicklook_path(folder / Path(outs["raster"]).name)
    else:
        target = folder / ((_strip(stride.name, (".stride.tif",)) or _stem(stride))
                           + QUICKLOOK_SUFFIX)
    cfg = report.get("config")
    tile = cfg.get("tile_size") if isinstance(cfg, dict) else None
    return SceneFiles(stride_map=stride, quicklook=target,
                      input=_recorded(report.get("input"), folder), raster=raster,
                      error_map=_recorded(outs.get("error_map"), folder) or _error_beside(stride),
                      report=report, tile_size=tile if isinstance(tile, int) else None)


def _error_beside(stride: Path) -> Path | None:
    base = _strip(stride.name, (".stride.tif",)) or _stem(stride)
    for suffix in (".error.tif", ".errors.tif"):
        p = stride.with_name(base + suffix)
        if p.exists():
            return p
    return None


def find_scene_files(path: str | os.PathLike[str]) -> SceneFiles:
    """The files of the run that ``path`` belongs to: ``path`` may be the input, the output
    raster, the stride map, the error map or the run report.

    The run report (``*.satconv.json``) beside the outputs, when there is one, says where
    everything is; without it the usual names beside ``path`` are tried. Raises
    :class:`InputError` when no stride map can be found.
    """
    from .api import OutputPaths

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    base = _strip(p.name, _OUTPUT_SUFFIXES)
    candidates = [p] if p.name.endswith(".satconv.json") else []
    if base is not None:
        candidates.append(p.with_name(base + ".satconv.json"))
    candidates += [p.with_name(_stem(p) + ".satconv.json"), OutputPaths.for_input(p).report]
    for cand in dict.fromkeys(candidates):
        report = _load_report(cand) if cand.is_file() else None
        if report is None:
            continue
        files = _from_report(cand, report)
        if files is None:
            continue
        if cand == p or any(_same(q, p) for q in (files.input, files.raster, files.stride_map,
                                                   files.error_map)):
            return files

    # no report: the usual names
    if base is not None:  # one of a run's outputs
        stride = p if p.name.endswith(".stride.tif") else p.with_name(base + ".stride.tif")
        raster = p.with_name(base + ".satconv.tif")
        src = next((q for q in (p.with_name(base + ".tif"), p.with_name(base + ".tiff"))
                    if q.is_file()), None)
    else:
        # scene.tif has scene.stride.tif beside it whether it is an input or an output
        # written with -o: satconv's outputs carry its version tag
        default = OutputPaths.for_input(p)
        output = not default.raster.exists() and "SATCONV_VERSION" in raster_io.tags(p)
        if output:
            stride, raster, src = p.with_name(_stem(p) + ".stride.tif"), p, None
        else:
            stride, raster, src = default.stride_map, default.raster, p
    if not stride.exists():
        steps = sorted(stride.parent.glob(glob.escape(_stem(p)) + ".*.stride.tif"))
        if base is None and steps:  # the input of a steps: run, one stride map per step
            names = ", ".join(q.name for q in steps)
            raise InputError(f"{p}: has one run per step; preview one of them: {names}")
        raise InputError(f"{p}: no stride map found for it (looked for {stride.name} and a run "
                         "report beside it); run satconv run first")
    return SceneFiles(stride_map=stride, quicklook=quicklook_path(raster), input=src,
                      raster=raster if raster.exists() else None,
                      error_map=_error_beside(stride))


# ---------------------------------------------------------------- figures


def tile_pixels(height: int, width: int, tile_size: int) -> np.ndarray:
    """Pixels in each tile of the grid (edge tiles are partial)."""
    ny, nx = -(-height // tile_size), -(-width // tile_size)
    h = np.minimum(tile_size, height - np.arange(ny) * tile_size)
    w = np.minimum(tile_size, width - np.arange(nx) * tile_size)
    return np.outer(h, w)


def legend_rows(strides: np.ndarray, height: int, width: int, tile_size: int,
                allowed: list[int] | None = None) -> tuple[list[quicklook.LegendRow], float]:
    """Per stride: tiles and their share of the run's compute (pixels / stride², summed over
    the tiles); and the run's compute as a share of full resolution. Strides in ``allowed``
    are listed even without a tile; skipped tiles come last."""
    px = tile_pixels(height, width, tile_size).astype(np.float64)
    s = strides.astype(np.int64)
    cost = np.where(s > 0, px / np.maximum(s, 1) ** 2, 0.0)
    total = float(cost.sum())
    present = {int(v) for v in np.unique(s)}
    listed = sorted((present | set(allowed or [])) - {0}) + ([0] if 0 in present else [])
    rows = [quicklook.LegendRow(v, int((s == v).sum()),
                                float(cost[s == v].sum() / total) if total > 0 else 0.0)
            for v in listed]
    return rows, total / float(px.sum())


# ---------------------------------------------------------------- drawing a scene


def _policy(report: dict[str, Any] | None) -> raster_io.InputPolicy | None:
    """The input policy the run used (its config's ``input:`` and ``limits:``)."""
    if not report or not isinstance(report.get("config"), dict):
        return None
    from . import api, config

    try:
        return api.input_policy(config.from_dict(report["config"]))
    except ConfigError:
        return None


def _tile_size(files: SceneFiles, stride_info: raster_io.RasterInfo, height: int, width: int,
               scene: raster_io.RasterInfo) -> int:
    """The run's tile size: from its report, else the stride map's config tag, else from the
    stride map's pixel size against the scene's."""
    if files.tile_size:
        return files.tile_size
    try:
        tile = json.loads(stride_info.tags.get("SATCONV_CONFIG", "")).get("tile_size")
        if isinstance(tile, int) and tile > 0:
            return tile
    except (ValueError, AttributeError):
        pass
    a, b = scene.transform, stride_info.transform
    if not a.is_identity and math.hypot(a.a, a.d) > 0:
        return max(1, round(math.hypot(b.a, b.d) / math.hypot(a.a, a.d)))
    ny, nx = stride_info.height, stride_info.width
    return max(-(-height // ny), -(-width // nx))


def _title(pic: raster_io.Decimated, what: str) -> str:
    if len(pic.bands) == 1:
        return f"{what} (band {pic.bands[0]}, grey)"
    return f"{what} (true colour: bands {', '.join(str(b) for b in pic.bands)})"


def _check_size(size: int) -> None:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UsageError(f"quicklook size {size}: panels are {MIN_SIZE} to {MAX_SIZE} pixels")


def render_scene(files: SceneFiles, size: int = DEFAULT_SIZE) -> quicklook.Quicklook:
    """Draw the quicklook of ``files`` with panels at most ``size`` pixels on the long side."""
    _check_size(size)
    policy = _policy(files.report)
    pic_in = raster_io.read_decimated(files.input, size, policy) if files.input else None
    pic_out = raster_io.read_decimated(files.raster, size) if files.raster else None
    if pic_in is None and pic_out is None:
        raise InputError(f"{files.stride_map}: neither the input nor the output of this run "
                         "was found")
    scene = (pic_in or pic_out).info  # type: ignore[union-attr]
    height, width = scene.height, scene.width
    if pic_in is not None and pic_out is not None and (
            (pic_out.info.height, pic_out.info.width) != (height, width)):
        raise InputError(f"{files.raster}: {pic_out.info.width}x{pic_out.info.height}, not the "
                         f"size of its input {files.input} ({width}x{height})")
    values, stride_info = raster_io.read_small(files.stride_map)
    strides = np.nan_to_num(values[0], nan=0.0).astype(np.int64)
    ts = _tile_size(files, stride_info, height, width, scene)
    ny, nx = strides.shape
    if (-(-height // ts), -(-width // ts)) != (ny, nx):
        raise InputError(f"{files.stride_map}: {nx}x{ny} tiles do not cover a {width}x{height} "
                         f"scene in tiles of {ts}")

    base = pic_in if pic_in is not None else pic_out
    assert base is not None
    h, w = base.valid.shape
    rows = quicklook.centre_index(h, height) // ts
    cols = quicklook.centre_index(w, width) // ts
    base_rgb = quicklook.stretch(base.data, base.valid)
    panels = []
    if pic_in is not None:
        panels.append(quicklook.Panel("input", _title(pic_in, "input"), base_rgb))
    panels.append(quicklook.Panel(
        "stride_map", "stride map over the " + ("input" if pic_in is not None else "output"),
        quicklook.stride_overlay(base_rgb, base.valid, rows, cols, strides)))
    if pic_out is not None:
        panels.append(quicklook.Panel("output", _title(pic_out, "output"),
                                      quicklook.stretch(pic_out.data, pic_out.valid)))
    bar = None
    if files.error_map is not None:
        errors = _error_values(files.error_map, (ny, nx), (height, width), size, rows, cols)
        finite = errors[np.isfinite(errors)]
        hi = float(finite.max()) if finite.size else 1.0
        bar = quicklook.ColourBar(0.0, hi if hi > 0 else 1.0,
                                  "estimated RMS error per tile, output units")
        panels.append(quicklook.Panel(
            "error", "estimated error (worst band)",
            quicklook.error_overlay(base_rgb, base.valid, errors, bar.lo, bar.hi)))

    allowed = None
    if files.report and isinstance(files.report.get("config"), dict):
        allowed = [s for s in files.report["config"].get("strides", []) if isinstance(s, int)]
    legend, compute = legend_rows(strides, height, width, ts, allowed)
    spent = "of full resolution"
    executed = files.report.get("execute", {}) if files.report else {}
    if isinstance(executed.get("evaluations_per_pixel"), (int, float)):
        # what the run spent (samples, refine's checks, exact pixels next to nodata), as the
        # run's own summary line says; the legend's shares are the stride map's pixels / s²
        compute = float(executed["evaluations_per_pixel"])
        spent = "of full resolution (kernel evaluations, as run)"
    name = (files.input or files.raster or files.stride_map).name
    header = (f"{name}: {width} x {height} px, {scene.data_count} x {scene.dtype}; "
              f"{ny * nx} tiles of {ts} px; compute {100 * compute:.1f} % {spent}")
    footer = (f"satconv {__version__}; stride map {files.stride_map.name}; each band stretched "
              "from its 2nd to 98th percentile; checkerboard = nodata")
    return quicklook.render(header, panels, legend, bar, footer)


def _error_values(path: Path, tiles: tuple[int, int], scene: tuple[int, int], size: int,
                  rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The error map under each panel pixel (worst band; NaN where it has none), from a
    per-tile map (one pixel per tile) or a full-resolution one."""
    pic = raster_io.read_decimated(path, size, all_bands=True)
    data = np.where(pic.valid[None], pic.data, np.nan)
    with np.errstate(all="ignore"):
        worst = np.full(data.shape[1:], np.nan)
        has = np.isfinite(data).any(axis=0)
        worst[has] = np.nanmax(data[:, has], axis=0)
    shape = (pic.info.height, pic.info.width)
    if shape == tiles:
        return worst[np.ix_(rows, cols)]
    if shape == scene and worst.shape == (rows.size, cols.size):
        return worst
    raise InputError(f"{path}: {shape[1]}x{shape[0]} is neither one pixel per tile "
                     f"({tiles[1]}x{tiles[0]}) nor the scene's size ({scene[1]}x{scene[0]})")


# ---------------------------------------------------------------- writing


def check_target(path: Path, overwrite: bool, protect: tuple[Path | None, ...] = (),
                 redraw_own: bool = False) -> None:
    """Raise :class:`OutputError` when a quicklook cannot be written at ``path``: it exists,
    and neither ``overwrite`` nor (``redraw_own``) satconv drew it; :class:`UsageError` when
    ``path`` is not named as a PNG (a bad option, exit 2)."""
    if path.suffix.lower() != ".png":
        raise UsageError(f"{path}: a quicklook is a PNG (name it *.png)")
    for other in protect:
        if _same(other, path):
            raise OutputError(f"{path}: would overwrite {other}")
    raster_io.check_output_dir(path)
    if path.exists() and not overwrite and not (redraw_own and drawn_by_satconv(path)):
        raise OutputError(f"{path}: already exists (use --overwrite to replace it)")


def drawn_by_satconv(path: Path) -> bool:
    """Whether the PNG at ``path`` is a quicklook satconv drew (its Software text)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return str(im.info.get("Software", "")).startswith("satconv ")
    except (OSError, ValueError):
        return False


def write_png(ql: quicklook.Quicklook, path: Path, source: str) -> None:
    """Write ``ql`` at ``path`` atomically (temporary name, then renamed)."""
    with raster_io.StagedOutputs([path]) as staged:
        ql.save(staged.temp(path), {"Software": f"satconv {__version__}",
                                    "Title": f"satconv quicklook of {source}"})
        staged.commit()


def make_quicklook(path: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
                   size: int = DEFAULT_SIZE, overwrite: bool = False,
                   error_map: str | os.PathLike[str] | None = None,
                   redraw_own: bool = False) -> Path:
    """``satconv preview``: the quicklook of the run ``path`` belongs to (its input or any
    of its outputs), at ``output`` (default ``scene.quicklook.png`` beside the outputs).
    ``error_map`` names an error raster the run did not record; ``redraw_own`` replaces a
    quicklook satconv drew there without ``overwrite``. Returns the PNG's path."""
    _check_size(size)
    files = find_scene_files(path)
    if error_map is not None:
        em = Path(error_map)
        if not em.exists():
            raise InputError(f"{em}: no such file")
        files = SceneFiles(**{**files.__dict__, "error_map": em})
    target = Path(output) if output is not None else files.quicklook
    check_target(target, overwrite, (files.input, files.raster, files.stride_map,
                                     files.error_map), redraw_own)
    write_png(render_scene(files, size), target, str(path))
    return target


def record_in_report(report_path: str | os.PathLike[str], png: Path) -> None:
    """List the quicklook of a run, drawn once the run had committed its outputs, in the
    run's report on disk (``outputs.quicklook``), replacing the report atomically."""
    from .parts import _write_json

    path = Path(report_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["outputs"]["quicklook"] = str(png)
    _write_json(path, data, indent=2)


def quicklook_for_run(report: Any, size: int = DEFAULT_SIZE, overwrite: bool = False) -> Path:
    """The quicklook of a finished run, from its :class:`~satconv.report.RunReport`, beside
    its outputs; its path is added to ``report.outputs["quicklook"]``, and to the report on
    disk."""
    _check_size(size)
    outs = report.outputs
    raster = Path(outs["raster"])
    tile = report.config.get("tile_size") if isinstance(report.config, dict) else None
    stride = Path(outs["stride_map"])
    files = SceneFiles(stride_map=stride, quicklook=quicklook_path(raster),
                       input=Path(report.input), raster=raster,
                       error_map=Path(outs["error_map"]) if outs.get("error_map") else None,
                       report=report.to_dict(), tile_size=tile)
    check_target(files.quicklook, overwrite, (files.input,))
    write_png(render_scene(files, size), files.quicklook, report.input)
    outs["quicklook"] = str(files.quicklook)
    record_in_report(outs["report"], files.quicklook)
    return files.quicklook
