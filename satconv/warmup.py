"""Compiling the numba kernels before the work that needs them.

The first process after an install or an upgrade compiles satconv's kernels (about 50-60 s on a
2-core machine) and caches them beside the code; every later process loads them in about a
second. ``warm_up`` pays that once, up front: it runs tiny generated scenes through the code
paths a config uses (plain and nodata-masked tiles, float32 and float64 computation, the error
map), so that a batch's child processes, and the time limit each one gets (``--timeout``),
start with every kernel compiled, and several of them never compile the same kernel at once.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import config, pipeline, raster_io
from .errors import SatconvError
from .events import Emit, Event
from .planning import variance

#: The generated scenes' tiles are at most this large (a config's larger tiles would only make
#: the warm-up slower: the kernels compiled are the same).
MAX_TILE = 64


class _Damaged(Exception):
    """A kernel could not be loaded from numba's cache."""


def warm_up(settings: config.Settings | None = None) -> float:
    """Run ``settings`` on tiny generated scenes in a temporary folder and return the seconds
    it took; nothing is left behind. Without settings: the built-in defaults, and a
    non-separable kernel with integer output (the other kernels satconv compiles). A cache
    that numba cannot read back (``core.cache_dir.damaged``) is cleared, and the warm-up run
    once more, compiling anew.

    The scenes are a 2-band uint16 scene with a nodata collar and hole, a float32 scene with
    NaN and a float64 scene, each 2.5 tiles wide and high with smooth and textured parts; each
    is run with the config's policy, then with a plan that puts every allowed stride next to
    nodata and away from it. Then the kernels compiled per data type, for every type satconv
    reads. Context regions are left out (GDAL reads them; nothing is compiled), as are the
    input rules and limits (the scenes are satconv's own). Raises :class:`SatconvError` when
    a run fails: the config cannot run at all.
    """
    t0 = time.monotonic()
    try:
        _warm_up(settings)
    except _Damaged:
        clear_cache()
        _warm_up(settings)
    return time.monotonic() - t0


def load(settings: config.Settings) -> None:
    """The warm-up's runs without its repair: for a process that starts beside others (a
    batch's workers), which must not clear a cache the others may be loading from. Raises
    what the runs raise; a damaged cache is left to the batch's own warm-up."""
    try:
        _warm_up(settings)
    except _Damaged as err:
        raise SatconvError(str(err)) from None


def warm_up_counting(settings: config.Settings | None = None) -> tuple[float, int]:
    """``warm_up``, and how many kernel versions it compiled (0: all were in numba's cache,
    however long loading them took on a busy machine)."""
    from .core import compiled_count

    before = compiled_count()
    seconds = warm_up(settings)
    return seconds, compiled_count() - before


def _warm_up(settings: config.Settings | None) -> None:
    from . import batch  # (batch imports the whole pipeline; warm-up is its first user)
    from .core import cache_dir

    variants = [settings] if settings is not None else [
        config.Settings(),
        config.from_dict({"kernel": {"type": "sobel_x"}, "output": {"dtype": "same"}})]
    with tempfile.TemporaryDirectory(prefix="satconv-warmup-") as tmp:
        folder = Path(tmp)
        for run in map(_small, variants):
            opts = batch.RunOptions(out_dir=folder, overwrite=True, threads=1,
                                    error_map=not run.steps)
            for name, data, nodata in _scenes(run.tile_size):
                src = folder / f"{name}.tif"
                raster_io.write_scene(src, data, nodata)
                todo = [opts]
                if not run.steps:  # (a saved plan runs single-kernel configs only)
                    todo.append(replace(opts, plan_path=_every_stride(src, run, folder)))
                for o in todo:
                    outcome = batch.run_one(str(src), run, o)
                    if outcome.status == "failed":
                        if cache_dir.DAMAGED in outcome.message:
                            raise _Damaged(outcome.message)
                        raise SatconvError(f"warm-up: {outcome.message}")
    try:
        _per_type_kernels()
    except Exception as err:
        if cache_dir.damaged(err):
            raise _Damaged(str(err)) from err
        raise


def report(emit: Emit, work: Callable[[], dict[str, Any]]) -> None:
    """Run ``work`` (a warm-up returning its event's fields) and emit the ``warmup`` event:
    those fields, or the first line of the error. A warm-up is never the reason a batch
    fails: without it, each process compiles what it needs."""
    try:
        fields = work()
    except Exception as err:  # noqa: BLE001 - reported, and the batch goes on
        fields = {"error": raster_io.first_line(err)}
    emit(Event("warmup", None, fields))


def clear_cache() -> int:
    """Delete every numba cache file of satconv's kernels (``satconv.core``), those of older
    versions of the code included, wherever ``core.cache_dir`` put them; return how many.
    Kernels already loaded in running processes keep working; the next process compiles."""
    from .core import cache_dir, cache_folders

    removed = 0
    for folder in cache_folders():  # numba gives each source folder a cache folder of its own
        try:
            removed += cache_dir.remove_cached(folder)
        except OSError as err:
            raise SatconvError(f"{err.filename}: cannot remove the cached kernel "
                               f"({err.strerror or err})") from None
    return removed


def cache_note() -> str:
    """Where the compiled kernels are kept, in words (``core.cache_dir`` decided it)."""
    from .core import cache_dir

    assert cache_dir.chosen is not None  # settled when satconv.core was imported
    how, folder = cache_dir.chosen
    if folder is None:
        return "no writable folder to cache them in: set NUMBA_CACHE_DIR to one"
    if how == "temporary":
        return (f"cached in {folder} (nothing beside the code or in the user's cache folder "
                "is writable; set NUMBA_CACHE_DIR to keep them across reboots)")
    if how == "NUMBA_CACHE_DIR":
        return f"cached in {folder} (NUMBA_CACHE_DIR)"
    return f"cached in {folder} ({how})"


def _every_stride(src: Path, settings: config.Settings, folder: Path) -> Path:
    """A plan for ``src`` that runs every allowed stride, next to nodata and away from it
    (whatever the config's policy would choose)."""
    with raster_io.gdal_env(), raster_io.open_input(src) as ds:
        info = raster_io.describe(ds)
    ny, nx = -(-info.height // settings.tile_size), -(-info.width // settings.tile_size)
    strides = np.array(settings.strides, dtype=np.uint8)
    plan = strides[np.add.outer(np.arange(ny), np.arange(nx)) % strides.size]
    path = folder / f"{src.stem}.plan.tif"
    raster_io.write_stride_map(path, plan, info, settings.tile_size, {})
    return path


def _per_type_kernels() -> None:
    """The kernels compiled for each input or output type, for every type satconv reads: the
    planner's statistics see the input in its own type (with every pixel valid, and with too
    few valid pixels for any window), and the output is encoded to the input's type with
    ``output.dtype: same``, from float32 or float64 results, with or without nodata."""
    some = np.zeros((1, 16, 16), dtype=bool)
    some[0, 0, :3] = True
    for dtype in raster_io.SUPPORTED_DTYPES:
        x = np.arange(256).reshape(1, 16, 16).astype(dtype)
        for valid in (None, some):
            variance.tile_stats(x, valid, 8, "max")
        for computed in ("float32", "float64"):
            values = np.where(some, np.nan, np.linspace(0.0, 100.0, 256).reshape(1, 16, 16))
            for nodata in (None, 0.0):
                pipeline.to_output(values.astype(computed), dtype, nodata)


def _small(settings: config.Settings) -> config.Settings:
    """``settings`` without context, input rules and limits, with tiles of at most
    ``MAX_TILE`` (still a multiple of every stride) when that is a valid config."""
    base = settings.to_dict()
    for ours in ("context", "input", "limits"):  # (the generated scenes are satconv's own)
        base.pop(ours, None)
    tile = settings.tile_size
    if tile > MAX_TILE:
        tile = max(MAX_TILE, *settings.strides)
    try:
        return config.from_dict({**base, "tile_size": tile}, source="warm-up")
    except SatconvError:
        return config.from_dict(base, source="warm-up")


def _scenes(tile: int) -> list[tuple[str, np.ndarray, float | None]]:
    n = 2 * tile + tile // 2 + 3  # partial tiles on the far edges
    y, x = np.mgrid[0:n, 0:n] / n
    smooth = 0.5 + 0.3 * np.sin(3 * x) * np.cos(2 * y)
    texture = np.random.default_rng(0).normal(0.0, 0.15, (n, n))
    field = smooth + np.where((x > 0.5) & (y > 0.4), texture, 0.0)
    data = np.stack([field, 1.0 - 0.5 * field])
    scaled = np.clip(data * 20000 + 1000, 1, 65535).astype(np.uint16)
    scaled[:, :, : tile // 4] = 0  # a nodata collar
    scaled[:, n // 3: n // 3 + 9, n // 4: n // 4 + 11] = 0  # and a hole
    holed = data[:1].astype(np.float32)
    holed[:, n // 2: n // 2 + 7, : tile // 3] = np.nan
    return [("masked", scaled, 0.0), ("float32", holed, None),
            ("float64", data[:1].astype(np.float64), None)]
