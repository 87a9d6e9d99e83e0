"""All raster I/O: opening inputs, reading padded blocks, output profiles, atomic writing,
and the stride-map raster. Nothing else in satconv opens a raster.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.windows import Window

from . import palette, profiles
from .errors import InputError, OutputError, PlanError
from .tiling import contiguous_runs

#: GDAL block cache for a run: bounded, so memory does not grow with the scene. GDAL reads the
#: environment when its cache is first used, which also covers worker threads.
GDAL_CACHE_MB = 128
os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))

SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")


@dataclass(frozen=True)
class RasterInfo:
    """What the rest of satconv needs to know about an input raster (plain, picklable data)."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    crs: Any
    transform: Affine
    descriptions: tuple[str | None, ...]
    colorinterp: tuple[ColorInterp, ...]
    tags: dict[str, str] = field(default_factory=dict)
    bands: tuple[int, ...] = ()
    mask: str = "none"
    scales: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()

    @property
    def data_count(self) -> int:
        """Bands convolved as data (an alpha band is a mask, not data)."""
        return len(self.bands)


def gdal_env() -> rasterio.Env:
    """The GDAL environment every satconv run uses: a bounded block cache."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_PAM_ENABLED="NO")


@contextlib.contextmanager
def open_input(path: str | os.PathLike[str]) -> Iterator[rasterio.io.DatasetReader]:
    """Open an input raster for reading, or raise :class:`InputError` naming it."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: not a regular file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied")
    try:
        ds = rasterio.open(p)
    except RasterioIOError as err:
        raise InputError(f"{p}: not a readable raster ({_first_line(err)})") from None
    except RasterioError as err:
        raise InputError(f"{p}: cannot open ({_first_line(err)})") from None
    try:
        yield ds
    finally:
        ds.close()


def mask_source(ds: rasterio.io.DatasetReader) -> tuple[str, tuple[int, ...]]:
    """Where validity comes from, in GDAL's order, and the bands that hold data.

    ``dataset`` (a per-dataset mask or ``.msk`` sidecar), ``alpha`` (an alpha band, which is
    then not data), ``nodata`` (each band's nodata value), ``nan`` (float bands: NaN is
    invalid) or ``none`` (every pixel is valid).
    """
    flags = ds.mask_flag_enums
    alpha = [i for i, ci in enumerate(ds.colorinterp, start=1) if ci == ColorInterp.alpha]
    bands = tuple(i for i in range(1, ds.count + 1) if i not in alpha)
    if any(MaskFlags.alpha in f for f in flags) and alpha:
        return "alpha", bands
    if any(MaskFlags.per_dataset in f for f in flags):
        return "dataset", bands
    if any(MaskFlags.nodata in f for f in flags) or ds.nodata is not None:
        return "nodata", bands
    return ("nan" if np.dtype(ds.dtypes[0]).kind == "f" else "none"), bands


def describe(ds: rasterio.io.DatasetReader) -> RasterInfo:
    """Check an opened input is usable and summarise it."""
    name = ds.name
    if ds.count < 1:
        raise InputError(f"{name}: has no bands")
    if any(np.dtype(t).kind == "c" for t in ds.dtypes):
        raise InputError(f"{name}: complex bands are not supported")
    if len(set(ds.dtypes)) != 1:
        raise InputError(f"{name}: bands have different data types {sorted(set(ds.dtypes))}")
    dtype = ds.dtypes[0]
    if dtype not in SUPPORTED_DTYPES:
        raise InputError(f"{name}: data type {dtype} is not supported")
    mask, bands = mask_source(ds)
    if not bands:
        raise InputError(f"{name}: has no data bands (only alpha)")
    return RasterInfo(
        path=name,
        width=ds.width,
        height=ds.height,
        count=ds.count,
        dtype=dtype,
        nodata=ds.nodata,
        crs=ds.crs,
        transform=ds.transform,
        descriptions=tuple(ds.descriptions),
        colorinterp=tuple(ds.colorinterp),
        tags=dict(ds.tags()),
        bands=bands,
        mask=mask,
        scales=tuple(float(ds.scales[i - 1]) for i in bands),
        offsets=tuple(float(ds.offsets[i - 1]) for i in bands),
    )


def _first_line(err: BaseException) -> str:
    """GDAL's own message for an error, first line only (rasterio keeps it as the cause)."""
    cause = err.__cause__ or err.__context__
    if cause is not None and "previous exception" in str(err):
        err = cause
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def read_indexed(
    ds: rasterio.io.DatasetReader, info: RasterInfo, rows: np.ndarray, cols: np.ndarray,
    cval: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the data bands at ``rows`` x ``cols`` (source indices, -1 = outside) as float64.

    Returns ``(data, valid)``, both ``(bands, len(rows), len(cols))``; ``valid`` is None when
    every pixel read is valid. Outside positions hold ``cval`` and count as valid. The distinct
    indices are read as a few contiguous windows, never the whole raster.
    """
    nb = info.data_count
    out = np.full((nb, rows.size, cols.size), cval, dtype=np.float64)
    valid = np.ones((nb, rows.size, cols.size), dtype=bool)
    rin = np.flatnonzero(rows >= 0)
    cin = np.flatnonzero(cols >= 0)
    if rin.size == 0 or cin.size == 0:
        return out, None
    for r0, r1 in contiguous_runs(rows):
        rsel = rin[(rows[rin] >= r0) & (rows[rin] < r1)]
        for c0, c1 in contiguous_runs(cols):
            csel = cin[(cols[cin] >= c0) & (cols[cin] < c1)]
            block, ok = read_window_valid(ds, info, r0, r1, c0, c1)
            sel = np.ix_(np.arange(nb), rsel, csel)
            src = (slice(None), rows[rsel][:, None] - r0, cols[csel][None, :] - c0)
            out[sel] = block[src]
            if ok is not None:
                valid[sel] = ok[src]
    return out, (None if valid.all() else valid)


def read_window_valid(
    ds: rasterio.io.DatasetReader, info: RasterInfo, row0: int, row1: int, col0: int,
    col1: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a window of the data bands in their own type, with its validity mask.

    Validity follows ``info.mask``; NaN is never valid. ``valid`` is None when all is valid.
    """
    data = read_window(ds, row0, row1, col0, col1, info.bands)
    if info.mask in ("dataset", "alpha"):
        window = Window(col0, row0, col1 - col0, row1 - row0)
        try:
            m = ds.read_masks(info.bands[0], window=window) > 0
        except RasterioError as err:
            raise InputError(
                f"{ds.name}: mask read failed at rows {row0}-{row1}, columns {col0}-{col1} "
                f"({_first_line(err)})"
            ) from None
        valid = np.broadcast_to(m, data.shape).copy()
        if data.dtype.kind == "f":
            valid &= ~np.isnan(data)
    elif info.mask in ("nodata", "nan"):
        valid = valid_mask(data, info.nodata)
    else:
        return data, None
    return data, (None if valid.all() else valid)


def read_window(
    ds: rasterio.io.DatasetReader, row0: int, row1: int, col0: int, col1: int,
    bands: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Read a window of ``bands`` (default: all) in the input's own data type."""
    try:
        return ds.read(list(bands) if bands else None,
                       window=Window(col0, row0, col1 - col0, row1 - row0))
    except RasterioError as err:
        raise InputError(
            f"{ds.name}: read failed at rows {row0}-{row1}, columns {col0}-{col1} "
            f"({_first_line(err)})"
        ) from None


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Which pixels hold data: not the nodata value, and not NaN."""
    if data.dtype.kind == "f":
        valid = ~np.isnan(data)
    else:
        valid = np.ones(data.shape, dtype=bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= data != nodata
    return valid


# ---------------------------------------------------------------- outputs


def output_nodata(info: RasterInfo, out_dtype: str) -> float:
    """The nodata value declared on every output: the input's when the output type can hold
    it, else NaN for float outputs, else the type's minimum (valid values are kept off it)."""
    kind = np.dtype(out_dtype).kind
    nd = None if info.nodata is None else float(info.nodata)
    if kind == "f":
        if nd is None or np.isnan(nd):
            return float("nan")
        with np.errstate(over="ignore"):
            return nd if np.isfinite(np.asarray(nd, dtype=out_dtype)) else float("nan")
    lim = np.iinfo(out_dtype)
    if nd is not None and np.isfinite(nd) and lim.min <= nd <= lim.max and nd == int(nd):
        return nd
    return float(lim.min)


def staging_path(final: Path) -> Path:
    """Where an output is written before it is complete: a hidden name beside the final one."""
    return final.with_name(f".{final.name}.{os.getpid()}.partial")


class StagedOutputs:
    """Outputs written under temporary names, renamed to their final names only on commit.

    ``discard`` (also run on an exception inside ``with``) removes every temporary file, so a
    failed run leaves nothing behind, and no file at a final name ever holds partial data.
    """

    def __init__(self, finals: list[Path]):
        self.finals = [Path(p) for p in finals]
        self.temps = [staging_path(p) for p in self.finals]
        self._committed = False

    def temp(self, final: Path) -> Path:
        return self.temps[self.finals.index(Path(final))]

    def commit(self) -> None:
        """Rename every temporary file to its final name, the first listed last."""
        for tmp, final in reversed(list(zip(self.temps, self.finals, strict=True))):
            os.replace(tmp, final)
        self._committed = True

    def discard(self) -> None:
        for tmp in self.temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._committed:
            self.discard()


def check_output_dir(path: Path) -> None:
    """Fail early, with one line, when an output cannot be created at ``path``."""
    parent = path.parent
    if not parent.exists():
        raise OutputError(f"{path}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{path}: output folder {parent} is not writable")


def output_profile(info: RasterInfo, out_dtype: str, compress: str, tile_size: int) -> dict:
    """Profile of the filtered raster: the input's grid and georeferencing, tiled, compressed."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": info.width,
        "height": info.height,
        "count": info.data_count,
        "dtype": out_dtype,
        "crs": info.crs,
        "transform": info.transform,
        "nodata": output_nodata(info, out_dtype),
    }
    profile.update(profiles.creation_options(out_dtype, compress, tile_size))
    return profile


def open_output(path: Path, profile: dict) -> rasterio.io.DatasetWriter:
    """Create an output raster, or raise :class:`OutputError` naming it."""
    try:
        return rasterio.open(path, "w", **profile)
    except RasterioError as err:
        raise OutputError(f"{path}: cannot create ({_first_line(err)})") from None


def write_tile(
    dst: rasterio.io.DatasetWriter, data: np.ndarray, row0: int, col0: int,
    mask: np.ndarray | None = None,
) -> None:
    """Write ``data`` (bands, h, w) at (row0, col0), and the dataset mask when given."""
    _, h, w = data.shape
    window = Window(col0, row0, w, h)
    try:
        dst.write(data, window=window)
        if mask is not None:
            dst.write_mask(np.where(mask, 255, 0).astype(np.uint8), window=window)
    except RasterioError as err:
        raise OutputError(f"{dst.name}: write failed ({_first_line(err)})") from None


def describe_output(dst: rasterio.io.DatasetWriter, info: RasterInfo, tags: dict[str, str],
                    kernel_sum: float) -> None:
    """Carry the data bands' descriptions, colour interpretation, scales and offsets over
    (offsets scale with the kernel's sum, as the filter is linear), and stamp satconv's tags.
    Called before any pixel is written, so GDAL's compression threads see final metadata."""
    for out_band, band in enumerate(info.bands, start=1):
        desc = info.descriptions[band - 1]
        if desc:
            dst.set_band_description(out_band, desc)
    interp = tuple(info.colorinterp[b - 1] for b in info.bands)
    with contextlib.suppress(RasterioError, ValueError):
        dst.colorinterp = interp
    if any(s != 1.0 for s in info.scales) or any(o != 0.0 for o in info.offsets):
        dst.scales = info.scales
        dst.offsets = tuple(o * kernel_sum for o in info.offsets)
    dst.update_tags(**tags)


def to_cog(src: Path, dst: Path, compress: str, tile_size: int, dtype: str) -> None:
    """Copy a finished GeoTIFF into a Cloud-Optimized GeoTIFF (GDAL's COG driver streams it)."""
    opts = {
        "driver": "COG",
        "blocksize": profiles.block_size(tile_size),
        "overview_resampling": "average",
        "num_threads": "ALL_CPUS",
        "bigtiff": "IF_SAFER",
    }
    if compress != "none":
        opts["compress"] = compress.upper()
        opts["predictor"] = "FLOATING_POINT" if np.dtype(dtype).kind == "f" else "YES"
    try:
        rasterio.shutil.copy(str(src), str(dst), **opts)
    except RasterioError as err:
        raise OutputError(f"{dst}: COG conversion failed ({_first_line(err)})") from None


# ---------------------------------------------------------------- context and error maps


#: Regions of interest read from a mask raster are passed on as runs of at most this many
#: pixels along a row, so a run's reprojected footprint stays close to its bounding box.
MASK_RUN = 32


def mask_footprints(path: str | os.PathLike[str], info: RasterInfo,
                    block_rows: int = 256) -> Iterator[np.ndarray]:
    """The footprints of a mask raster's regions of interest (valid, non-zero pixels) in the
    scene's pixel coordinates, as arrays ``(4, n)`` of ``row0, col0, row1, col1``.

    The mask may have any grid and CRS: each run of pixels' corners are reprojected into the
    scene's CRS and pixel grid and the run's bounding box is given (slightly larger than the
    run where the grids are rotated against each other, never smaller). A mask without a CRS
    must have the scene's own pixel grid (same width and height).
    """
    from rasterio.warp import transform as warp_transform

    p = Path(path)
    with open_input(p) as ds:
        same_grid = ds.crs is None or info.crs is None
        if same_grid and (ds.crs is not None or info.crs is not None
                          or (ds.height, ds.width) != (info.height, info.width)):
            raise InputError(f"{p}: a mask without a CRS must have the scene's size "
                             f"{info.width}x{info.height} (or both need a CRS)")
        inverse = ~info.transform
        for r0 in range(0, ds.height, block_rows):
            r1 = min(r0 + block_rows, ds.height)
            window = Window(0, r0, ds.width, r1 - r0)
            try:
                data = ds.read(1, window=window)
                ok = ds.read_masks(1, window=window) > 0
            except RasterioError as err:
                raise InputError(f"{p}: read failed ({_first_line(err)})") from None
            roi = ok & (data != 0)
            if data.dtype.kind == "f":
                roi &= ~np.isnan(data)
            rows, c0, c1 = _row_runs(roi, MASK_RUN)
            if rows.size == 0:
                continue
            rows = rows + r0
            if same_grid:
                yield np.stack([rows, c0, rows + 1, c1]).astype(np.float64)
                continue
            # the runs' four corners: mask pixel -> mask CRS -> scene CRS -> scene pixel
            cc = np.concatenate([c0, c1, c0, c1]).astype(np.float64)
            rr = np.concatenate([rows, rows, rows + 1, rows + 1]).astype(np.float64)
            xs, ys = ds.transform @ (cc, rr)
            xs, ys = warp_transform(ds.crs, info.crs, np.asarray(xs), np.asarray(ys))
            pc, pr = inverse @ (np.asarray(xs), np.asarray(ys))
            pc = np.asarray(pc).reshape(4, -1)
            pr = np.asarray(pr).reshape(4, -1)
            yield np.stack([pr.min(axis=0), pc.min(axis=0), pr.max(axis=0), pc.max(axis=0)])


def _row_runs(roi: np.ndarray, longest: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True along each row, split to at most ``longest``: (row, col0, col1)."""
    padded = np.zeros((roi.shape[0], roi.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = roi
    d = np.diff(padded, axis=1)
    rs, starts = np.nonzero(d == 1)
    _, stops = np.nonzero(d == -1)
    if rs.size == 0:
        return rs, starts, stops
    pieces = -(-(stops - starts) // longest)
    row = np.repeat(rs, pieces)
    first = np.repeat(starts, pieces)
    offset = np.arange(row.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    c0 = first + offset * longest
    c1 = np.minimum(c0 + longest, np.repeat(stops, pieces))
    return row, c0, c1


def write_error_map(path: Path, errors: np.ndarray, info: RasterInfo, tile_size: int,
                    tags: dict[str, str]) -> None:
    """Write the estimated RMS error per tile ``(ny, nx, bands)`` as a float32 GeoTIFF on the
    stride map's grid, one band per data band (NaN = skipped tile)."""
    ny, nx, nb = errors.shape
    profile = {
        "driver": "GTiff",
        "width": nx,
        "height": ny,
        "count": nb,
        "dtype": "float32",
        "crs": info.crs,
        "transform": stride_map_transform(info.transform, tile_size),
        "nodata": float("nan"),
        **profiles.stride_map_options(),
    }
    try:
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.moveaxis(errors, -1, 0).astype(np.float32))
            for i, band in enumerate(info.bands, start=1):
                name = info.descriptions[band - 1] or f"band {band}"
                dst.set_band_description(i, f"estimated RMS error, {name}")
            dst.update_tags(**tags, UNITS="output units (RMS per tile)")
    except RasterioError as err:
        raise OutputError(f"{path}: cannot write error map ({_first_line(err)})") from None


# ---------------------------------------------------------------- stride map


def stride_map_transform(transform: Affine, tile_size: int) -> Affine:
    """One stride-map pixel per tile: the input transform scaled by the tile size."""
    return transform @ Affine.scale(tile_size)


def write_stride_map(path: Path, strides: np.ndarray, info: RasterInfo, tile_size: int,
                     tags: dict[str, str]) -> None:
    """Write the plan as a uint8 GeoTIFF with the stride colour table."""
    profile = {
        "driver": "GTiff",
        "width": strides.shape[1],
        "height": strides.shape[0],
        "count": 1,
        "dtype": "uint8",
        "crs": info.crs,
        "transform": stride_map_transform(info.transform, tile_size),
        **profiles.stride_map_options(),
    }
    try:
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(strides.astype(np.uint8), 1)
            dst.write_colormap(1, palette.colour_table())
            dst.set_band_description(1, "stride (0 = skipped)")
            dst.update_tags(**tags)
    except RasterioError as err:
        raise OutputError(f"{path}: cannot write stride map ({_first_line(err)})") from None


def read_stride_map(path: str | os.PathLike[str], shape: tuple[int, int]) -> np.ndarray:
    """Read a saved plan; raise :class:`PlanError` unless it is one band of ``shape``."""
    p = Path(path)
    try:
        with open_input(p) as ds:
            if ds.count != 1:
                raise PlanError(f"{p}: a stride map has 1 band, this has {ds.count}")
            if (ds.height, ds.width) != shape:
                raise PlanError(
                    f"{p}: stride map is {ds.height}x{ds.width} tiles, the scene needs "
                    f"{shape[0]}x{shape[1]}"
                )
            data = ds.read(1)
    except InputError as err:
        raise PlanError(str(err)) from None
    if not np.all(np.isfinite(data)) or np.any(data < 0) or np.any(data != np.round(data)):
        raise PlanError(f"{p}: stride map values must be whole numbers >= 0")
    return data.astype(np.int64)
