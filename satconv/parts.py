"""Resumable and distributed execution: row bands of tiles written to part files.

A scene is cut into *parts*: bands of whole tile rows (about :data:`TILES_PER_PART` tiles
each, a layout that depends on the tile grid only). Each part is written to its own small
GeoTIFF beside the output, ``.NAME.satconv-part-00012.tif``, first under a temporary name and
renamed once it is complete and checked, so a part file that exists is a finished part. A
checkpoint beside it, ``.NAME.satconv.ckpt`` (JSON), holds the run's fingerprint (input
metadata and config hashes), the plan (so a resumed run executes exactly the same strides
without planning again) and the parts done. When every part exists they are copied, tile by
tile in row-major order, into the staged output, which is then committed as usual; the parts
and the checkpoint are removed after the commit.

Why part files rather than reopening the partial GeoTIFF in update mode: GDAL writes a tiled
GeoTIFF's block offsets (its directory) when the file is closed, and rewrites the directory at
the end of the file when it is updated, so a run killed at any moment can leave a partial file
whose directory lists no block or points to a half-written one; making that safe would mean
closing and re-validating the file after every checkpoint. A part file is either complete
(renamed after ``verify_output``) or absent, whatever moment the kill comes at. The same parts
are the unit of work of a Dask run of one huge scene (``satconv.distributed``): each band is a
task that writes its part on the shared file system, and the client assembles them. The cost
is one more pass over the output (decode the parts, encode the final file), measured in the
commit that introduced this module; parts are ZSTD level 1 so that pass is cheap.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from affine import Affine

from . import profiles, raster_io
from .errors import OutputError
from .events import Emit, Event, ignore
from .pipeline import ExecuteOptions, ExecuteStats, TileDone, compute_tiles
from .planning import Plan
from .raster_io import RasterInfo
from .tiling import Tile, TileGrid

#: About this many tiles per part: few enough files, small enough units of work and loss.
TILES_PER_PART = 64
CHECKPOINT_VERSION = 3


@dataclass(frozen=True)
class PartLayout:
    """Parts of a tile grid: part ``k`` holds tile rows ``[k * rows, (k + 1) * rows)``."""

    grid: TileGrid
    rows: int

    @classmethod
    def for_grid(cls, grid: TileGrid, tiles_per_part: int = TILES_PER_PART) -> PartLayout:
        return cls(grid, max(1, math.ceil(tiles_per_part / grid.shape[1])))

    @property
    def count(self) -> int:
        return -(-self.grid.shape[0] // self.rows)

    def tile_rows(self, k: int) -> tuple[int, int]:
        return k * self.rows, min((k + 1) * self.rows, self.grid.shape[0])

    def pixel_rows(self, k: int) -> tuple[int, int]:
        t0, t1 = self.tile_rows(k)
        return t0 * self.grid.size, min(t1 * self.grid.size, self.grid.height)

    def tiles(self, k: int) -> list[Tile]:
        t0, t1 = self.tile_rows(k)
        return [self.grid.tile(ty, tx) for ty in range(t0, t1)
                for tx in range(self.grid.shape[1])]

    def part_of(self, tile: Tile) -> int:
        return tile.ty // self.rows


def checkpoint_path(raster: Path) -> Path:
    return raster.with_name(f".{raster.name}.satconv.ckpt")


def part_path(raster: Path, k: int) -> Path:
    return raster.with_name(f".{raster.name}.satconv-part-{k:05d}.tif")


def remove_unfinished(raster: Path, pid: int) -> None:
    """Remove the part files process ``pid`` (a child that was killed) had not finished; its
    finished parts stay for ``--resume``."""
    for p in _part_files(raster):
        if p.name.endswith(".partial") and f".tif.{pid}." in p.name:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _part_files(raster: Path) -> list[Path]:
    """Part files (finished or not) and temporary checkpoints of ``raster``."""
    out = []
    for prefix in (f".{raster.name}.satconv-part-", f".{raster.name}.satconv.ckpt."):
        pattern = glob.escape(str(raster.with_name(prefix))) + "*"
        out += [Path(p) for p in glob.glob(pattern)]
    return out


def finished_parts(raster: Path) -> int:
    """How many finished part files of ``raster`` are there (what ``--resume`` would keep)."""
    return sum(p.name.endswith(".tif") and "-part-" in p.name for p in _part_files(raster))


def _sound(part: Path) -> bool:
    """Whether a finished part is there and whole; a damaged one is removed."""
    if not part.exists():
        return False
    try:
        raster_io.verify_output(part)
    except OutputError:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        return False
    return True


def leftovers(raster: Path) -> bool:
    """Whether an interrupted resumable run left a checkpoint or parts for ``raster``."""
    return checkpoint_path(raster).exists() or bool(_part_files(raster))


def discard(raster: Path) -> None:
    """Remove the checkpoint and every part file (finished or not) of ``raster``."""
    for p in [checkpoint_path(raster), *_part_files(raster)]:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _write_json(path: Path, data: dict[str, Any], indent: int | None = None) -> None:
    """Write ``path`` atomically (temporary file, then rename), with the permissions the
    umask gives a new file, as the rasters have (mkstemp alone would make it 0600)."""
    prefix = f"{path.name}." if path.name.startswith(".") else f".{path.name}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent)
            if indent is not None:
                f.write("\n")
        raster_io.sync_file(Path(tmp))
        os.replace(tmp, path)
        raster_io.sync_folder(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def part_profile(info: RasterInfo, opts: ExecuteOptions, layout: PartLayout, k: int) -> dict:
    """Creation options of part ``k``: the output's type, nodata and blocks, ZSTD level 1."""
    r0, r1 = layout.pixel_rows(k)
    profile: dict[str, Any] = {"driver": "GTiff", "width": info.width, "height": r1 - r0,
                               "count": info.data_count, "dtype": opts.out_dtype,
                               "nodata": opts.out_nodata}
    if not info.gcps:  # the output's georeferencing, shifted to the band (for GDAL's sake)
        profile.update(crs=info.crs, transform=info.transform @ Affine.translation(0, r0))
    profile.update(profiles.creation_options(opts.out_dtype, "zstd", layout.grid.size))
    if opts.write_mask:  # see api.run_scene: threaded compression and internal masks
        profile.pop("num_threads", None)
    return profile


def _summary(done: TileDone) -> TileDone:
    """What a part keeps of a tile once its pixels are written: everything but the pixels."""
    empty = np.empty((0, 0))
    return TileDone(empty, empty, done.evaluations, done.stride, done.error, done.valid,
                    done.vmin, done.vmax)


def part_record(tiles: list[TileDone]) -> dict[str, Any]:
    """A part's tiles, in layout order, as plain data for the checkpoint: strides executed,
    estimated RMS error and valid output pixels per tile and band; the value range per band."""
    lo = np.fmin.reduce([t.vmin for t in tiles]) if tiles else np.zeros(0)
    hi = np.fmax.reduce([t.vmax for t in tiles]) if tiles else np.zeros(0)
    return {"strides": [int(t.stride) for t in tiles],
            "errors": [[float(e) for e in t.error] for t in tiles],
            "valid": [[int(v) for v in t.valid] for t in tiles],
            "vmin": [float(v) for v in lo], "vmax": [float(v) for v in hi]}


def write_parts(info: RasterInfo, plan: Plan, opts: ExecuteOptions, layout: PartLayout,
                raster: Path, parts: Iterable[int], workers: int | None = None,
                on_part: Callable[[int, int, dict[str, Any]], None] | None = None,
                on_tile: Callable[[int], None] | None = None) -> int:
    """Compute ``parts`` and write each to its part file (temporary name, renamed when done).

    ``on_part(k, evaluations, record)`` is called after part ``k`` is renamed, with what its
    tiles did (:func:`part_record`: executed strides, error estimates, valid pixels, value
    range); ``on_tile(1)`` after each tile. Returns the kernel evaluations. On an exception,
    unfinished parts are removed.
    """
    parts = sorted(set(parts))
    expected = {k: len(layout.tiles(k)) for k in parts}
    tiles = [t for k in parts for t in layout.tiles(k)]
    open_parts: dict[int, tuple[Any, Any, Path, int, int]] = {}  # k: cm, dst, tmp, tiles, evals
    executed: dict[int, dict[tuple[int, int], TileDone]] = {k: {} for k in parts}
    total = 0
    unfinished: set[Path] = set()  # temporary part files not yet renamed
    try:
        with compute_tiles(info, plan, opts, tiles, workers) as computed:
            for tile, done in computed:
                data, mask, n = done.data, done.mask, done.evaluations
                k = layout.part_of(tile)
                if k not in open_parts:
                    final = part_path(raster, k)
                    # (the pid in the name: a parent that kills this process finds its files)
                    fd, name = tempfile.mkstemp(prefix=f"{final.name}.{os.getpid()}.",
                                                suffix=".partial", dir=final.parent)
                    os.close(fd)
                    tmp = Path(name)
                    unfinished.add(tmp)
                    cm = raster_io.open_output(tmp, part_profile(info, opts, layout, k))
                    open_parts[k] = (cm, cm.__enter__(), tmp, 0, 0)
                cm, dst, tmp, count, evals = open_parts[k]
                r0 = layout.pixel_rows(k)[0]
                raster_io.write_tile(dst, data, tile.row0 - r0, tile.col0,
                                     mask if opts.write_mask else None)
                count, evals = count + 1, evals + n
                executed[k][tile.ty, tile.tx] = _summary(done)
                total += n
                open_parts[k] = (cm, dst, tmp, count, evals)
                if count == expected[k]:
                    del open_parts[k]
                    cm.__exit__(None, None, None)
                    raster_io.sync_file(tmp)
                    os.replace(tmp, part_path(raster, k))
                    unfinished.discard(tmp)
                    raster_io.sync_folder(raster.parent)
                    if on_part is not None:
                        on_part(k, evals, part_record([executed[k][t.ty, t.tx]
                                                       for t in layout.tiles(k)]))
                if on_tile is not None:
                    on_tile(1)
    except BaseException as err:
        for cm, _, _, _, _ in open_parts.values():
            with contextlib.suppress(Exception):
                cm.__exit__(type(err), err, err.__traceback__)
        for tmp in unfinished:  # open, or failed while being created or closed
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    return total


def assemble(dst: Any, layout: PartLayout, raster: Path, write_mask: bool) -> None:
    """Copy every part of ``raster``, tile by tile in row-major order, into the open output
    ``dst`` (with its internal mask when ``write_mask``)."""
    from rasterio.windows import Window

    for k in range(layout.count):
        r0 = layout.pixel_rows(k)[0]
        with raster_io.open_input(part_path(raster, k)) as part:
            for tile in layout.tiles(k):
                data = raster_io.read_window(part, tile.row0 - r0, tile.row1 - r0, tile.col0,
                                             tile.col1)
                mask = None
                if write_mask:
                    window = Window(tile.col0, tile.row0 - r0, tile.width, tile.height)
                    mask = part.read_masks(1, window=window) > 0
                raster_io.write_tile(dst, data, tile.row0, tile.col0, mask)


class PartRunner(Protocol):
    """Computes the missing parts of a scene: locally (:class:`LocalRunner`) or on a Dask
    cluster (``satconv.distributed.DaskPartRunner``)."""

    def run(self, engine: PartsEngine, info: RasterInfo, plan: Plan, opts: ExecuteOptions,
            parts: list[int], workers: int | None, progress: Callable[[int], None]) -> None: ...


class LocalRunner:
    """All missing parts in this process, with ``workers`` threads."""

    def run(self, engine: PartsEngine, info: RasterInfo, plan: Plan, opts: ExecuteOptions,
            parts: list[int], workers: int | None, progress: Callable[[int], None]) -> None:
        write_parts(info, plan, opts, engine.layout, engine.raster, parts, workers,
                    on_part=engine.part_done, on_tile=progress)


def _plan_to_json(plan: Plan) -> dict[str, Any]:
    rmse = None if plan.predicted_rmse is None else plan.predicted_rmse.tolist()
    return {"strides": plan.strides.tolist(), "source": plan.source, "predicted_rmse": rmse,
            "details": plan.details}


def _plan_from_json(d: dict[str, Any], grid: TileGrid) -> Plan:
    rmse = d.get("predicted_rmse")
    strides = np.asarray(d["strides"], dtype=np.int64)
    if strides.shape != grid.shape:
        raise ValueError("plan shape")
    return Plan(strides, grid, d["source"],
                None if rmse is None else np.asarray(rmse, dtype=np.float64), d["details"])


class PartsEngine:
    """An ``api.Engine``: plan from (or into) the checkpoint, execute into part files, then
    assemble them into the output.

    ``resume``: continue the checkpoint of an interrupted run when its fingerprint matches
    (else it is discarded). Without ``resume`` any leftover is discarded first.
    """

    def __init__(self, raster: Path, tile_size: int, resume: bool = True,
                 runner: PartRunner | None = None, emit: Emit = ignore, src: str | None = None):
        self.raster = Path(raster)
        self.tile_size = tile_size
        self.resume = resume
        self.runner = runner or LocalRunner()
        self.emit = emit
        self.src = src
        self.layout: PartLayout | None = None
        self.state: dict[str, Any] = {}
        self.resumed_tiles = 0
        self.assemble_s = 0.0

    # ------------------------------------------------------------ checkpoint

    def _load(self) -> dict[str, Any] | None:
        try:
            d = json.loads(checkpoint_path(self.raster).read_text(encoding="utf-8"))
            return d if d.get("version") == CHECKPOINT_VERSION else None
        except (OSError, ValueError):
            return None

    def _save(self) -> None:
        _write_json(checkpoint_path(self.raster), self.state)

    def part_done(self, k: int, evaluations: int, record: dict[str, Any]) -> None:
        """Record part ``k`` as finished: its kernel evaluations and :func:`part_record`."""
        self.state["parts_done"][str(k)] = int(evaluations)
        self.state["part_tiles"][str(k)] = record
        self._save()

    # ------------------------------------------------------------ api.Engine

    def plan(self, info: RasterInfo, fp: dict[str, str], make: Callable[[], Plan]) -> Plan:
        grid = TileGrid(info.height, info.width, self.tile_size)
        self.layout = PartLayout.for_grid(grid)
        old = self._load() if leftovers(self.raster) else None
        plan, resumable = None, False
        if old is not None and self.resume:
            try:
                if old["fingerprint"] != fp or old["tile_size"] != self.tile_size \
                        or old["rows_per_part"] != self.layout.rows:
                    raise ValueError("a different input or config")
                saved = _plan_from_json(old["plan"], grid)
                done = {int(k): int(v) for k, v in old["parts_done"].items()}
            except (KeyError, TypeError, ValueError) as err:
                why = str(err) if "different" in str(err) else "an unreadable checkpoint"
                _event(self.emit, self.src, "checkpoint", action="discard",
                       reason=f"made for {why}")
            else:
                # The plan is made again, not read back: what the executor needs besides the
                # strides (refinement rules, the model's predictions, the error estimator)
                # lives in it. Same input and config give the same plan; checked.
                plan = make()
                resumable = np.array_equal(plan.strides, saved.strides)
                if not resumable:
                    _event(self.emit, self.src, "checkpoint", action="discard",
                           reason="made for another plan")
            if resumable:
                # A part listed and present is finished; one listed but missing or damaged
                # (truncated, emptied: its blocks do not all lie in the file) is redone.
                done = {k: v for k, v in done.items()
                        if 0 <= k < self.layout.count and _sound(part_path(self.raster, k))}
                for p in _part_files(self.raster):  # what the killed run left unfinished
                    if p.name.endswith((".partial", ".tmp")):
                        with contextlib.suppress(FileNotFoundError):
                            p.unlink()
                records = old["part_tiles"]
                self.state = {**old, "parts_done": {str(k): v for k, v in done.items()},
                              "part_tiles": {str(k): records[str(k)] for k in done}}
                self._save()
                self.resumed_tiles = sum(len(self.layout.tiles(k)) for k in done)
                ntiles = grid.shape[0] * grid.shape[1]
                _event(self.emit, self.src, "checkpoint", action="resume",
                       tiles_done=self.resumed_tiles, tiles_total=ntiles)
                return plan
        elif leftovers(self.raster):
            _event(self.emit, self.src, "checkpoint", action="discard",
                   reason="no usable checkpoint" if self.resume else "--resume not given")
        discard(self.raster)
        plan = plan if plan is not None else make()
        self.state = {"version": CHECKPOINT_VERSION, "fingerprint": fp,
                      "tile_size": self.tile_size, "rows_per_part": self.layout.rows,
                      "plan": _plan_to_json(plan), "parts_done": {}, "part_tiles": {}}
        self._save()
        return plan

    def execute(self, info: RasterInfo, plan: Plan, opts: ExecuteOptions, dst: Any,
                workers: int | None, progress: Callable[[int], None]) -> ExecuteStats:
        assert self.layout is not None, "plan() first"
        done = {int(k) for k in self.state["parts_done"]}
        missing = [k for k in range(self.layout.count) if k not in done]
        if self.resumed_tiles:
            progress(self.resumed_tiles)
        if missing:
            self.runner.run(self, info, plan, opts, missing, workers, progress)
        t0 = time.perf_counter()
        assemble(dst, self.layout, self.raster, opts.write_mask)
        self.assemble_s = time.perf_counter() - t0
        evaluations = sum(int(v) for v in self.state["parts_done"].values())
        ntiles = plan.grid.shape[0] * plan.grid.shape[1]
        return ExecuteStats(ntiles, evaluations, info.height * info.width * info.data_count,
                            **self._tiles(plan, info.data_count))

    def _tiles(self, plan: Plan, bands: int) -> dict[str, np.ndarray]:
        """The per-tile figures of every part (``ExecuteStats``' strides, errors, valid, and
        the value range per band), from the checkpoint."""
        assert self.layout is not None
        shape = plan.grid.shape
        out = {"strides": plan.strides.copy(), "errors": np.full(shape + (bands,), np.nan),
               "valid": np.zeros(shape + (bands,), dtype=np.int64),
               "vmin": np.full(bands, np.nan), "vmax": np.full(bands, np.nan)}
        for k, rec in self.state["part_tiles"].items():
            for i, tile in enumerate(self.layout.tiles(int(k))):
                at = (tile.ty, tile.tx)
                out["strides"][at] = rec["strides"][i]
                out["errors"][at] = rec["errors"][i]
                out["valid"][at] = rec["valid"][i]
            out["vmin"] = np.fmin(out["vmin"], np.asarray(rec["vmin"], dtype=np.float64))
            out["vmax"] = np.fmax(out["vmax"], np.asarray(rec["vmax"], dtype=np.float64))
        return out

    def report(self) -> dict[str, Any]:
        return {"parts": self.layout.count if self.layout else 0,
                "resumed_tiles": self.resumed_tiles,
                "assemble_s": round(self.assemble_s, 3)}

    def cleanup(self) -> None:
        """After the commit: remove the parts and the checkpoint."""
        discard(self.raster)


def _event(emit: Emit, src: str | None, kind: str, **fields: Any) -> None:
    emit(Event(kind, src, fields, time.time()))
