"""All raster I/O: opening inputs, reading padded blocks, output profiles, atomic writing,
and the stride-map raster. Nothing else in satconv opens a raster.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import math
import os
import re
import resource
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.enums import ColorInterp, Interleaving, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from . import palette, profiles, tiff_layout
from .errors import ConfigError, InputError, LimitError, OutputError, PlanError
from .tiling import contiguous_runs

#: GDAL block cache for a run: bounded, so memory does not grow with the scene. GDAL reads the
#: environment when its cache is first used, which also covers worker threads.
GDAL_CACHE_MB = 128
os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))

#: ``(row0, row1, col0, col1) -> (data, valid)``: a window of the data bands in their own type
#: and its validity (None when all is valid), as :func:`read_window_valid` reads it.
WindowReader = Callable[[int, int, int, int], "tuple[np.ndarray, np.ndarray | None]"]


def _quiet_libtiff() -> None:
    """Stop libtiff printing to stderr behind GDAL's back.

    GDAL routes libtiff's errors through its own per-file handlers (they reach rasterio and
    satconv's one-line messages), but a few I/O errors (``_tiffWriteProc: No space left on
    device.``) go to libtiff's global handlers, whose defaults print straight to stderr. Turn
    those off when they are libtiff's own defaults (a handler installed by anyone else is put
    back). Best effort: nothing happens when libtiff cannot be found.
    """
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return
    ranges, lib = [], None
    for line in maps.splitlines():
        parts = line.split()
        if len(parts) >= 6 and re.search(r"/libtiff[^/]*\.so", parts[5]):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            ranges.append((lo, hi))
            lib = parts[5]
    if lib is None:
        return
    try:
        tiff = ctypes.CDLL(lib)
    except OSError:
        return
    for name in ("TIFFSetErrorHandler", "TIFFSetWarningHandler"):
        setter = getattr(tiff, name, None)
        if setter is None:
            continue
        setter.restype = ctypes.c_void_p
        setter.argtypes = [ctypes.c_void_p]
        previous = setter(None)
        if previous and not any(lo <= previous < hi for lo, hi in ranges):
            setter(previous)


_quiet_libtiff()

SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")


#: satconv handles missing georeferencing itself (an output without a CRS or transform is what
#: the input had); rasterio's warning would be a second, multi-line message on stderr.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)


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
    driver: str = "GTiff"
    gcps: tuple[GroundControlPoint, ...] = ()
    gcp_crs: Any = None
    #: The input's compression as GDAL names it (None: stored raw)
    compression: str | None = None

    @property
    def data_count(self) -> int:
        """Bands convolved as data (an alpha band is a mask, not data)."""
        return len(self.bands)


def gdal_env() -> rasterio.Env:
    """The GDAL environment every satconv run uses: a bounded block cache, and no ``.aux.xml``
    side files written (PAM) beside outputs or stride maps. Inputs are opened with PAM
    (``_open_raster``): their ``.aux.xml`` is read, as every GDAL tool reads it."""
    # rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64, which counts bytes
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024, GDAL_PAM_ENABLED="NO")


# ---------------------------------------------------------------- opening inputs safely


@dataclass(frozen=True)
class InputPolicy:
    """What satconv may open as an input and how large it may be: the config's ``input:`` and
    ``limits:`` blocks (and ``tile_size``, for the work a scene implies). Plain data.

    The defaults here are the config's defaults.
    """

    drivers: tuple[str, ...] = ("GTiff",)
    allow_urls: bool = False
    max_pixels: int = 4_000_000_000
    max_bands: int = 256
    max_block_bytes: int = 64 * 1024 * 1024
    max_tiles: int = 1_000_000
    tile_size: int = 256


DEFAULT_POLICY = InputPolicy()

#: Strings GDAL or rasterio would not take as a local file name: URLs (``https://``, ``s3://``,
#: ``zip+file://``, and rasterio's ``http:name``), GDAL connection strings (``GTIFF_DIR:1:x``,
#: ``NETCDF:x:var``) and virtual file systems (``/vsicurl/``, ``/vsizip/``).
_REMOTE = re.compile(r"^(?:[A-Za-z][\w+.-]*:|/vsi|\\vsi)")

#: Side files GDAL opens as datasets of their own (mask, overviews, ERDAS aux), with any driver:
#: a VRT under one of these names could read any file on the machine.
_DATASET_SIDECARS = (".msk", ".ovr", ".aux")

#: Inputs already vetted by :func:`open_input` in this process, by the name their dataset
#: reports, with the driver that opened them (worker threads reopen them with that driver only)
#: and the name the user gave (for messages).
_VETTED: dict[str, tuple[str, str]] = {}


def shown_name(ds: rasterio.io.DatasetReader) -> str:
    """An open input's name as the user gave it (its dataset knows its resolved path)."""
    return _VETTED.get(ds.name, ("", ds.name))[1]


def _sniff(head: bytes) -> str:
    """What a file that is not an allowed raster looks like, for the error message."""
    text = head.lstrip()
    if not head:
        return "an empty file"
    if b"<VRTDataset" in head:
        return "a GDAL VRT (an XML file that can read other files)"
    for magic, kind in ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                        (b"GIF8", "a GIF image"), (b"PK\x03\x04", "a ZIP archive"),
                        (b"EHFA_HEADER_TAG", "an ERDAS Imagine (HFA) file"),
                        (b"\x89HDF", "an HDF5 file"), (b"CDF\x01", "a netCDF file"),
                        (b"CDF\x02", "a netCDF file"), (b"\x00\x00\x00\x0cjP", "a JPEG 2000 image"),
                        (b"BM", "a BMP image")):
        if head.startswith(magic):
            return kind
    if tiff_layout.is_tiff(head):
        return "a TIFF"
    if text[:5].lower() in (b"ncols", b"nrows", b"xllco", b"yllco"):
        return "an ASCII grid (AAIGrid)"
    if text.startswith(b"<"):
        return "an XML or HTML file"
    return "an unrecognised format"


def _head(path: str, n: int = 512) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _stays_inside(path: str, folder: str, max_links: int = 40) -> bool:
    """Whether ``path``, inside the real folder ``folder``, resolves to a place inside it.

    Symbolic links are followed one component at a time, as the kernel does, and nothing
    outside ``folder`` is even looked at (``os.path.realpath`` would stat the target).
    """
    cur, links = folder, 0
    pending = list(Path(os.path.relpath(path, folder)).parts)
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        nxt = os.path.dirname(cur) if part == ".." else os.path.join(cur, part)
        if _inside(nxt, folder):
            if os.path.islink(nxt):
                links += 1
                if links > max_links:
                    return False
                target = list(Path(os.readlink(nxt)).parts)
                if target and target[0] == os.sep:
                    cur, target = os.sep, target[1:]
                pending = target + pending
                continue
            cur = nxt
        elif _inside(folder, nxt):  # an ancestor of the real folder: a real directory
            cur = nxt
        else:
            return False
    return _inside(cur, folder)


def input_path(path: str | os.PathLike[str], policy: InputPolicy = DEFAULT_POLICY,
               ) -> tuple[str, bool]:
    """Where GDAL will read ``path`` from: ``(local absolute path with symlinks resolved, True)``
    or, only with ``input.allow_urls``, ``(the string as given, False)``.

    A name is always taken as a local file when such a file exists (``http:scene.tif`` in the
    working folder is that file, not a URL); otherwise a URL, connection string or ``/vsi``
    path is refused unless allowed. Raises :class:`InputError` with one line.
    """
    text = os.fspath(path)
    try:
        exists = os.path.lexists(text)
    except ValueError:  # e.g. a NUL byte
        raise InputError(f"{text!r}: not a valid file name") from None
    if text.startswith("/vsi") or (_REMOTE.match(text) and not exists):
        if policy.allow_urls:
            return text, False
        raise InputError(f"{text}: looks like a URL, GDAL connection string or /vsi path; "
                         "satconv opens local files only (set input.allow_urls: true to allow)")
    if not exists:
        if set("*?[") & set(text):  # a quoted pattern of the command line
            raise InputError(f"{text}: no such file (as a pattern, it matched no file)")
        raise InputError(f"{text}: no such file")
    real = os.path.realpath(text)
    if not os.path.exists(real):
        raise InputError(f"{text}: broken symbolic link (to {real})")
    if not os.path.isfile(real):
        raise InputError(f"{text}: not a regular file")
    if not os.access(real, os.R_OK):
        raise InputError(f"{text}: permission denied")
    return real, True


def _check_sidecars(real: str, shown: str) -> None:
    """Refuse side files GDAL would follow out of the input's folder or open as another format.

    GDAL reads files named after the input (``scene.tif.msk``, ``scene.tif.ovr``, ``scene.tfw``,
    ``scene_rpc.txt``...) from its folder. Each must stay inside the folder (no symbolic link
    out of it), and those GDAL opens as datasets (masks, overviews, aux) must be sound TIFFs.
    """
    folder, name = os.path.split(real)
    low = name.casefold()
    stem = os.path.splitext(name)[0].casefold()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        n = entry.name.casefold()
        if n == low or not (n == stem or n.startswith((stem + ".", stem + "_"))):
            continue
        full = os.path.join(folder, entry.name)
        if entry.is_symlink() and not _stays_inside(full, folder):
            raise InputError(f"{shown}: side file {entry.name} links outside the input's "
                             f"folder (to {os.readlink(full)}); satconv reads nothing outside "
                             "it")
        if not n.endswith(_DATASET_SIDECARS) or not os.path.isfile(full):
            continue
        try:
            head = _head(full)
        except OSError as err:
            raise InputError(f"{shown}: side file {entry.name} cannot be read "
                             f"({err.strerror})") from None
        if not tiff_layout.is_tiff(head):
            raise InputError(f"{shown}: side file {entry.name} is {_sniff(head)}, not a TIFF; "
                             "GDAL would open it as a mask or overviews (remove or rename it)")
        try:
            tiff_layout.check(full)
        except tiff_layout.LayoutError as err:
            raise InputError(f"{shown}: side file {entry.name}: {err}") from None


def _open_raster(target: str, driver: str) -> rasterio.io.DatasetReader:
    """``rasterio.open`` for reading an input, its ``.aux.xml`` included: nodata, band
    descriptions, scales and georeferencing that a tool stored there (a read-only source
    edited in a GIS) are the input's. GDAL reads the side file when it opens the dataset and
    writes one back only for a dataset changed in place, which an input never is."""
    with rasterio.Env(GDAL_PAM_ENABLED="YES"):
        return rasterio.open(target, driver=driver)


def _open_allowed(target: str, drivers: tuple[str, ...], shown: str, local: bool,
                  ) -> rasterio.io.DatasetReader:
    """Open with the allowed drivers only, so GDAL never picks a format by content."""
    with rasterio.Env() as env:
        known = {d.casefold() for d in env.drivers()}
    unknown = [d for d in drivers if d.casefold() not in known]
    if unknown:
        raise ConfigError(f"input.drivers: GDAL has no driver {', '.join(unknown)}")
    errors = []
    for driver in drivers:
        try:
            return _open_raster(target, driver)
        except RasterioError as err:
            errors.append(first_line(err))
    failures = [m for m in errors if "not recognized as" not in m]
    if failures:  # a driver took the file but could not open it
        raise InputError(f"{shown}: not a readable raster ({failures[0]})")
    kind = _sniff(_head(target)) if local else "not in an allowed format"
    raise InputError(f"{shown}: is {kind}, not {'/'.join(drivers)} (allowed input formats: "
                     "input.drivers in the config)")


@contextlib.contextmanager
def open_input(path: str | os.PathLike[str], policy: InputPolicy | None = None,
               ) -> Iterator[rasterio.io.DatasetReader]:
    """Open an input raster for reading, or raise :class:`InputError` naming it.

    With a ``policy`` (default: :data:`DEFAULT_POLICY`): the path must be a local file (see
    :func:`input_path`); its side files are checked (:func:`_check_sidecars`); a TIFF's
    structure must be sound (every block inside the file); only the allowed drivers may open
    it; and its size, bands, block size and tile count must be within the limits. An input
    this process already vetted, reopened without a policy (worker threads do that), is opened
    with the driver that opened it first and nothing else.
    """
    shown = os.fspath(path)
    driver = _VETTED.get(shown, (None,))[0] if policy is None else None
    if driver is not None:
        try:
            ds = _open_raster(shown, driver)
        except RasterioError as err:
            raise InputError(f"{shown}: cannot open ({first_line(err)})") from None
    else:
        ds = _open_vetted(shown, policy or DEFAULT_POLICY)
    try:
        yield ds
    finally:
        ds.close()


def _open_vetted(shown: str, policy: InputPolicy) -> rasterio.io.DatasetReader:
    target, local = input_path(shown, policy)
    layout = None
    if local:
        _check_sidecars(target, shown)
        try:
            if tiff_layout.is_tiff(_head(target, 8)):
                layout = tiff_layout.check(target)
        except tiff_layout.LayoutError as err:
            raise InputError(f"{shown}: {err}") from None
        except OSError as err:
            raise InputError(f"{shown}: cannot read ({err.strerror})") from None
    ds = _open_allowed(target, policy.drivers, shown, local)
    try:
        check_limits(ds, policy, shown, layout if ds.driver == "GTiff" else None)
    except BaseException:
        ds.close()
        raise
    if len(_VETTED) > 10000:
        _VETTED.clear()
    _VETTED[ds.name] = (ds.driver, shown)
    return ds


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def check_limits(ds: rasterio.io.DatasetReader, policy: InputPolicy, shown: str,
                 layout: tiff_layout.Layout | None = None) -> None:
    """Refuse, with :class:`LimitError`, an input that declares more than ``limits:`` allow:
    bands, pixels, the uncompressed size of one block (what GDAL must decompress to read any
    pixel of it; for a TIFF, its ``layout`` as stored, as GDAL shows a single compressed strip
    as one-row blocks it must still decode from the start), and the tiles of the run."""
    if ds.count > policy.max_bands:
        raise LimitError(f"{shown}: {ds.count} bands, more than limits.max_bands "
                         f"({policy.max_bands})")
    pixels = ds.width * ds.height
    if pixels > policy.max_pixels:
        raise LimitError(f"{shown}: {ds.width}x{ds.height} = {pixels:,} pixels, more than "
                         f"limits.max_pixels ({policy.max_pixels:,})")
    stored = _stored_block(ds, layout)
    if stored is not None and stored[1] > policy.max_block_bytes:
        raise LimitError(
            f"{shown}: one {stored[0]} is {_size(stored[1])} uncompressed, more than "
            f"limits.max_block_bytes ({_size(policy.max_block_bytes)}); rewrite it tiled "
            "(gdal_translate -co TILED=YES) or raise the limit")
    ts = policy.tile_size
    tiles = -(-ds.height // ts) * -(-ds.width // ts)
    if tiles > policy.max_tiles:
        raise LimitError(f"{shown}: {tiles:,} tiles of {ts}x{ts}, more than limits.max_tiles "
                         f"({policy.max_tiles:,}); use a larger tile_size or raise the limit")


def _stored_block(ds: rasterio.io.DatasetReader, layout: tiff_layout.Layout | None,
                  ) -> tuple[str, int] | None:
    """``("256x256 block", uncompressed bytes)`` of one block as stored, or None."""
    if layout is not None:
        kind = "tile" if layout.tiled else "strip"
        return f"{layout.block_width}x{layout.block_height} {kind}", layout.block_bytes
    if ds.count < 1:
        return None
    bh, bw = ds.block_shapes[0]
    try:
        item = max(np.dtype(t).itemsize for t in set(ds.dtypes))
    except TypeError:  # complex integer types numpy has no name for
        item = 8
    planes = ds.count if ds.interleaving == Interleaving.pixel else 1
    return f"{bw}x{bh} block", bw * bh * item * planes


def mask_source(ds: rasterio.io.DatasetReader) -> tuple[str, tuple[int, ...]]:
    """Where validity comes from, in GDAL's order, and the bands that hold data.

    ``dataset`` (a per-dataset mask or ``.msk`` sidecar), ``alpha`` (the alpha band GDAL takes
    as the mask, which is then not data; a band tagged alpha that GDAL does not take stays
    data, as in GDAL), ``nodata`` (each band's nodata value), ``nan`` (float bands: NaN is
    invalid) or ``none`` (every pixel is valid).
    """
    flags = ds.mask_flag_enums
    alpha = [i for i, ci in enumerate(ds.colorinterp, start=1) if ci == ColorInterp.alpha]
    if any(MaskFlags.alpha in f for f in flags) and alpha:
        return "alpha", tuple(i for i in range(1, ds.count + 1) if i not in alpha)
    # a band tagged alpha that GDAL does not take as the mask (not the last band) is data
    bands = tuple(range(1, ds.count + 1))
    if any(MaskFlags.per_dataset in f for f in flags):
        return "dataset", bands
    if any(MaskFlags.nodata in f for f in flags) or ds.nodata is not None:
        return "nodata", bands
    return ("nan" if np.dtype(ds.dtypes[0]).kind == "f" else "none"), bands


def describe(ds: rasterio.io.DatasetReader) -> RasterInfo:
    """Check an opened input is usable and summarise it."""
    name = shown_name(ds)
    if ds.count < 1:
        raise InputError(f"{name}: has no bands")
    if any("complex" in t for t in ds.dtypes):
        raise InputError(f"{name}: complex bands are not supported")
    if len(set(ds.dtypes)) != 1:
        raise InputError(f"{name}: bands have different data types {sorted(set(ds.dtypes))}")
    dtype = ds.dtypes[0]
    if dtype not in SUPPORTED_DTYPES:
        raise InputError(f"{name}: data type {dtype} is not supported")
    mask, bands = mask_source(ds)
    if not bands:
        raise InputError(f"{name}: has no data bands (only alpha)")
    values = {"nan" if v is not None and np.isnan(v) else v
              for v in (ds.nodatavals[b - 1] for b in bands)}
    if len(values) > 1:  # a VRT can: a GeoTIFF holds one nodata value for all its bands
        raise InputError(f"{name}: bands have different nodata values "
                         f"{[ds.nodatavals[b - 1] for b in bands]}; not supported")
    gcps, gcp_crs = ds.gcps
    # Georeferenced by ground control points only: the outputs carry the GCPs (the stride map
    # with their pixel positions scaled to its grid) instead of an identity transform.
    only_gcps = bool(gcps) and ds.transform.is_identity
    return RasterInfo(
        path=ds.name,
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
        driver=ds.driver,
        gcps=tuple(gcps) if only_gcps else (),
        gcp_crs=gcp_crs if only_gcps else None,
        # (a codec rasterio has no name for, PixarLog for one, comes as GDAL's string)
        compression=getattr(ds.compression, "name", ds.compression) or None,
    )


def first_line(err: BaseException) -> str:
    """An error's message, first line only (of a rasterio error, GDAL's own, kept as its cause)."""
    cause = err.__cause__ or err.__context__
    if cause is not None and "previous exception" in str(err):
        err = cause
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def read_indexed(
    ds: rasterio.io.DatasetReader | None, info: RasterInfo, rows: np.ndarray, cols: np.ndarray,
    cval: float, dtype: str = "float64", windows: WindowReader | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the data bands at ``rows`` x ``cols`` (source indices, -1 = outside) as ``dtype``.

    Returns ``(data, valid)``, both ``(bands, len(rows), len(cols))``; ``valid`` is None when
    every pixel read is valid. Outside positions hold ``cval`` and count as valid. The distinct
    indices are read as a few contiguous windows, never the whole raster: from ``ds``, or by
    ``windows(row0, row1, col0, col1)`` (the same contract as :func:`read_window_valid`) when
    given (``satconv.tile_cache``).
    """
    if windows is None:
        def windows(r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray | None]:
            return read_window_valid(ds, info, r0, r1, c0, c1)
    nb = info.data_count
    inside_r = (rows >= 0).all() and rows.size > 0 and np.all(np.diff(rows) == 1)
    inside_c = (cols >= 0).all() and cols.size > 0 and np.all(np.diff(cols) == 1)
    if inside_r and inside_c:  # an interior block: one window, no gathering
        r0, c0 = int(rows[0]), int(cols[0])
        block, ok = windows(r0, r0 + rows.size, c0, c0 + cols.size)
        return block.astype(dtype, copy=False), ok
    out = np.full((nb, rows.size, cols.size), cval, dtype=dtype)
    valid = np.ones((nb, rows.size, cols.size), dtype=bool)
    rin = np.flatnonzero(rows >= 0)
    cin = np.flatnonzero(cols >= 0)
    if rin.size == 0 or cin.size == 0:
        return out, None
    for r0, r1 in contiguous_runs(rows):
        rsel = rin[(rows[rin] >= r0) & (rows[rin] < r1)]
        for c0, c1 in contiguous_runs(cols):
            csel = cin[(cols[cin] >= c0) & (cols[cin] < c1)]
            block, ok = windows(r0, r1, c0, c1)
            rr = rows[rsel] - r0
            cc = cols[csel] - c0
            # gather rows, then columns: two cheap takes instead of one 3-D fancy index
            part = block.take(rr, axis=1).take(cc, axis=2)
            out[:, rsel[:, None], csel[None, :]] = part
            if ok is not None:
                valid[:, rsel[:, None], csel[None, :]] = ok.take(rr, axis=1).take(cc, axis=2)
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
                f"{shown_name(ds)}: mask read failed at rows {row0}-{row1}, columns {col0}-{col1} "
                f"({first_line(err)})"
            ) from None
        valid = np.broadcast_to(m, data.shape).copy()
        if data.dtype.kind == "f":
            valid &= np.isfinite(data)
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
            f"{shown_name(ds)}: read failed at rows {row0}-{row1}, columns {col0}-{col1} "
            f"({first_line(err)})"
        ) from None


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Which pixels hold data: not the nodata value, and finite (NaN and infinities are not
    data: one infinite pixel would make every window around it, and the scene's value range,
    infinite)."""
    if data.dtype.kind == "f":
        valid = np.isfinite(data)
    else:
        valid = np.ones(data.shape, dtype=bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= data != nodata
    return valid


# ---------------------------------------------------------------- outputs


def output_nodata(info: RasterInfo, out_dtype: str, skips: bool = False) -> float | None:
    """The nodata value declared on the output: the input's when the output type can hold it,
    else NaN for float outputs, else the integer type's minimum (valid values are then kept off
    it). An integer output of an input with no invalid pixel at all declares none, so that no
    valid value has to move, unless the plan ``skips`` tiles: those are written as nodata."""
    kind = np.dtype(out_dtype).kind
    nd = None if info.nodata is None else float(info.nodata)
    if kind == "f":
        if nd is None or np.isnan(nd):
            return float("nan")
        with np.errstate(over="ignore"):  # the value itself, not a rounding of it
            return nd if float(np.asarray(nd, dtype=out_dtype)) == nd else float("nan")
    lim = np.iinfo(out_dtype)
    if nd is not None and np.isfinite(nd) and lim.min <= nd <= lim.max and nd == int(nd):
        return nd
    return None if info.mask == "none" and not skips else float(lim.min)


def staging_path(final: Path, pid: int | None = None) -> Path:
    """Where an output is written before it is complete: a hidden name beside the final one,
    ``.NAME.<pid>.partial``, ``pid`` being the writing process (default: this one)."""
    return final.with_name(f".{final.name}.{os.getpid() if pid is None else pid}.partial")


_STAGED = re.compile(r"^\.(?P<name>.+)\.\d+\.partial(?:\..*)?$")
#: A part file of a resumable run (``satconv.parts``), finished or being written.
_PART = re.compile(r"^\.(?P<name>.+)\.satconv-part-\d+\.tif(?:(?:\.[^.]+)+\.partial)?$")


def display_name(path: str | os.PathLike[str]) -> Path:
    """The final name of a staged file (``.a.tif.123.partial.body`` -> ``a.tif``) or of a
    resumable run's part file (``.a.tif.satconv-part-00003.tif.123.k2x9.partial`` ->
    ``a.tif``), for messages."""
    p = Path(path)
    m = _PART.match(p.name) or _STAGED.match(p.name)
    return p.with_name(m["name"]) if m else p


def remove_partials(finals: list[Path], pid: int | None = None) -> None:
    """Remove every staged file of ``finals`` written by process ``pid`` (default: this one),
    including the ones GDAL derives from them (``.partial.body``, ``.partial.ovr.tmp``...)."""
    for final in finals:
        tmp = staging_path(Path(final), pid)
        with contextlib.suppress(OSError):
            for p in tmp.parent.glob(glob.escape(tmp.name) + "*"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def sync_file(path: Path) -> None:
    """Have a written file's data on disk before it is renamed into place: after a power
    loss a renamed file could otherwise be empty or hold zeros. (About 0.1 s for a 130 MB
    output here.) A file system that cannot sync is left as it is; a failure to write
    (EIO, ENOSPC) is raised."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):
            raise
    finally:
        os.close(fd)


def sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (best effort: not every system syncs a
    folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class StagedOutputs:
    """Outputs written under temporary names, renamed to their final names only on commit.

    ``discard`` (also run on an exception inside ``with``) removes every temporary file, so a
    failed run leaves nothing behind, and no file at a final name ever holds partial data. An
    ``OSError`` inside ``with`` (a full disk, a file-size limit) becomes an :class:`OutputError`
    naming the final file.
    """

    def __init__(self, finals: list[Path]):
        self.finals = [Path(p) for p in finals]
        self.temps = [staging_path(p) for p in self.finals]
        self._committed = False

    def temp(self, final: Path) -> Path:
        return self.temps[self.finals.index(Path(final))]

    def commit(self) -> None:
        """Rename every temporary file to its final name, the first listed last, once each is
        on disk (:func:`sync_file`); then make the renames durable (:func:`sync_folder`)."""
        for tmp in self.temps:
            sync_file(tmp)
        for tmp, final in reversed(list(zip(self.temps, self.finals, strict=True))):
            os.replace(tmp, final)
        self._committed = True
        for folder in dict.fromkeys(f.parent for f in self.finals):
            sync_folder(folder)

    def discard(self) -> None:
        remove_partials(self.finals)

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if not self._committed:
            self.discard()
        if isinstance(exc, OSError):
            name = display_name(exc.filename) if exc.filename else self.finals[0]
            reason = (exc.strerror or str(exc)).lower()
            raise OutputError(f"{name}: write failed: {reason}") from None


def check_output_dir(path: Path) -> None:
    """Fail early, with one line, when an output cannot be created at ``path``."""
    parent = path.parent
    if not parent.exists():
        raise OutputError(f"{path}: output folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        reason = "is on a read-only file system" if _read_only(parent) else "is not writable"
        raise OutputError(f"{path}: output folder {parent} {reason}")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _write_failure(path: Path, problem: str) -> str:
    """Why a written file came out incomplete: a file-size limit, a full disk, or else what
    its structure shows."""
    try:
        size = path.stat().st_size
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY and size + (64 << 10) >= soft:
            return "file size limit reached (ulimit -f)"
        st = os.statvfs(path.parent)
        if st.f_bavail * st.f_frsize < (1 << 20):
            return "no space left on device"
    except OSError:
        pass
    return f"the file came out incomplete ({problem})"


def verify_output(path: Path) -> None:
    """Check a closed output GeoTIFF holds every block it lists (GDAL reports a failed write
    at close only as a log message): raise :class:`OutputError` naming it otherwise."""
    try:
        tiff_layout.check(path, allow_sparse=False)
    except (tiff_layout.LayoutError, OSError) as err:
        raise OutputError(f"{display_name(path)}: write failed: "
                          f"{_write_failure(Path(path), str(err))}") from None


def output_profile(info: RasterInfo, out_dtype: str, compress: str, tile_size: int,
                   skips: bool = False) -> dict:
    """Profile of the filtered raster: the input's grid and georeferencing, tiled, compressed
    (``skips``: the plan skips tiles, see :func:`output_nodata`)."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": info.width,
        "height": info.height,
        "count": info.data_count,
        "dtype": out_dtype,
        "crs": info.crs,
        "transform": info.transform,
        "nodata": output_nodata(info, out_dtype, skips),
    }
    if info.gcps:  # georeferenced by GCPs only: describe_output writes them instead
        del profile["transform"], profile["crs"]
    profile.update(profiles.creation_options(out_dtype, compress, tile_size))
    return profile


@contextlib.contextmanager
def open_output(path: Path, profile: dict) -> Iterator[rasterio.io.DatasetWriter]:
    """Create an output raster, or raise :class:`OutputError` naming it; on leaving ``with``
    normally, close it and check every block reached the file (:func:`verify_output`)."""
    try:
        dst = rasterio.open(path, "w", **profile)
    except RasterioError as err:
        raise OutputError(f"{display_name(path)}: cannot create ({first_line(err)})") from None
    try:
        yield dst
    except BaseException:
        with contextlib.suppress(Exception):
            dst.close()
        raise
    try:
        dst.close()
    except RasterioError as err:
        raise OutputError(f"{display_name(path)}: write failed ({first_line(err)})") from None
    verify_output(path)


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
        raise OutputError(f"{display_name(dst.name)}: write failed ({first_line(err)})") from None


def describe_output(dst: rasterio.io.DatasetWriter, info: RasterInfo, tags: dict[str, str],
                    kernel_sum: float) -> None:
    """Carry the data bands' descriptions, colour interpretation, scales and offsets over
    (offsets scale with the kernel's sum, as the filter is linear), and stamp satconv's tags.
    Called before any pixel is written, so GDAL's compression threads see final metadata."""
    for out_band, band in enumerate(info.bands, start=1):
        desc = info.descriptions[band - 1]
        if desc:
            dst.set_band_description(out_band, desc)
    # filtered palette indices are values, not indices: no colour table, so grey; a band
    # tagged alpha but convolved as data is no longer a transparency
    interp = tuple(ColorInterp.gray if info.colorinterp[b - 1] == ColorInterp.palette
                   else ColorInterp.undefined if info.colorinterp[b - 1] == ColorInterp.alpha
                   else info.colorinterp[b - 1] for b in info.bands)
    with contextlib.suppress(RasterioError, ValueError):
        dst.colorinterp = interp
    if any(s != 1.0 for s in info.scales) or any(o != 0.0 for o in info.offsets):
        dst.scales = info.scales
        # a normalised kernel sums to 1 within rounding: keep offsets as they were written
        ksum = round(kernel_sum) if abs(kernel_sum - round(kernel_sum)) < 1e-9 else kernel_sum
        dst.offsets = tuple(o * ksum for o in info.offsets)
    if info.gcps:
        dst.gcps = (list(info.gcps), info.gcp_crs)
    point = info.tags.get("AREA_OR_POINT")  # where a pixel's coordinates point: same grid
    dst.update_tags(**tags, **({"AREA_OR_POINT": point} if point else {}))


def to_cog(src: Path, dst: Path, compress: str, tile_size: int, dtype: str,
           resampling: str = "average") -> None:
    """Copy a finished GeoTIFF into a Cloud-Optimized GeoTIFF with GDAL's COG driver: internal
    tiles, overviews built with ``resampling`` (``average`` for continuous data, ``nearest``
    for classes such as strides), the ghost header, IFDs before the data. GDAL streams the
    copy block by block (through its bounded block cache): no array of the scene is held."""
    opts = {
        "driver": "COG",
        "blocksize": profiles.block_size(tile_size),
        "overviews": "AUTO",
        "overview_resampling": resampling,
        "num_threads": "ALL_CPUS",
        "bigtiff": "IF_SAFER",
    }
    if compress != "none":
        opts["compress"] = compress.upper()
        opts["predictor"] = "FLOATING_POINT" if np.dtype(dtype).kind == "f" else "YES"
        if compress == "deflate":
            opts["level"] = profiles.DEFLATE_LEVEL
        elif compress == "zstd":
            opts["level"] = profiles.ZSTD_LEVEL
    try:
        rasterio.shutil.copy(str(src), str(dst), **opts)
    except RasterioError as err:
        raise OutputError(f"{display_name(dst)}: COG conversion failed "
                          f"({first_line(err)})") from None
    verify_output(dst)


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
    (an ML segmentation mask, typically), or any mask of a scene without a CRS, is taken on
    the scene's own pixel grid, pixel for pixel: it must have the scene's width and height.
    """
    from rasterio.warp import transform as warp_transform

    p = Path(path)
    with open_input(p) as ds:
        same_grid = ds.crs is None or info.crs is None
        if same_grid and (ds.height, ds.width) != (info.height, info.width):
            which = "a mask without a CRS" if ds.crs is None else "the mask of a scene " \
                "without a CRS"
            raise InputError(f"{p}: {which} is matched pixel for pixel and must have the "
                             f"scene's size {info.width}x{info.height}, not "
                             f"{ds.width}x{ds.height} (or both need a CRS)")
        inverse = ~info.transform
        for r0 in range(0, ds.height, block_rows):
            r1 = min(r0 + block_rows, ds.height)
            window = Window(0, r0, ds.width, r1 - r0)
            try:
                data = ds.read(1, window=window)
                ok = ds.read_masks(1, window=window) > 0
            except RasterioError as err:
                raise InputError(f"{p}: read failed ({first_line(err)})") from None
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
        raise OutputError(f"{path}: cannot write error map ({first_line(err)})") from None


# ---------------------------------------------------------------- stride map

#: Block edge of a stride map written as a COG (one pixel per tile: small).
STRIDE_MAP_COG_BLOCK = 256


def write_scene(path: Path, data: np.ndarray, nodata: float | None = None) -> None:
    """Write ``data`` (bands, h, w) as a plain tiled GeoTIFF on a 30 m UTM grid: a generated
    input (``satconv.warmup``), never an output."""
    bands, h, w = data.shape
    with gdal_env(), rasterio.open(
            path, "w", driver="GTiff", width=w, height=h, count=bands, dtype=data.dtype,
            crs="EPSG:32633", transform=Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4500000.0),
            nodata=nodata, tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write(data)


def stride_map_transform(transform: Affine, tile_size: int) -> Affine:
    """One stride-map pixel per tile: the input transform scaled by the tile size."""
    return transform @ Affine.scale(tile_size)


def write_stride_map(path: Path, strides: np.ndarray, info: RasterInfo, tile_size: int,
                     tags: dict[str, str], cog: bool = False) -> None:
    """Write the plan as a uint8 GeoTIFF with the stride colour table; with ``cog``, as a
    Cloud-Optimized GeoTIFF (overviews, if any, by nearest neighbour: strides are classes)."""
    if cog:
        body = path.with_name(path.name + ".body")
        try:
            write_stride_map(body, strides, info, tile_size, tags)
            to_cog(body, path, "deflate", STRIDE_MAP_COG_BLOCK, "uint8", resampling="nearest")
        finally:
            body.unlink(missing_ok=True)
        return
    profile = {
        "driver": "GTiff",
        "width": strides.shape[1],
        "height": strides.shape[0],
        "count": 1,
        "dtype": "uint8",
        "crs": info.crs,
        "transform": stride_map_transform(info.transform, tile_size),
        "nodata": 0,
        **profiles.stride_map_options(),
    }
    if info.gcps:
        del profile["transform"], profile["crs"]
    try:
        with rasterio.open(path, "w", **profile) as dst:
            if info.gcps:
                dst.gcps = ([_scale_gcp(g, tile_size) for g in info.gcps], info.gcp_crs)
            dst.write(strides.astype(np.uint8), 1)
            dst.write_colormap(1, palette.colour_table())
            dst.set_band_description(1, "stride (0 = skipped)")
            dst.update_tags(**tags)
    except RasterioError as err:
        raise OutputError(f"{display_name(path)}: cannot write stride map "
                          f"({first_line(err)})") from None
    verify_output(path)


def _scale_gcp(g: GroundControlPoint, tile_size: int) -> GroundControlPoint:
    """A GCP of the input, placed on the stride map's grid (one pixel per tile)."""
    return GroundControlPoint(row=g.row / tile_size, col=g.col / tile_size, x=g.x, y=g.y, z=g.z,
                              id=g.id, info=g.info)


#: How far a stride map's grid may stray from the scene's tiles, relative to its pixel size.
GRID_TOLERANCE = 1e-6


def read_stride_map(path: str | os.PathLike[str], shape: tuple[int, int],
                    info: RasterInfo | None = None, tile_size: int = 0,
                    allowed: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a saved plan; raise :class:`PlanError` unless it is one band of ``shape``.

    With the scene's ``info`` and ``tile_size``: a georeferenced map must also lie on the
    scene's tiles (:func:`_check_stride_grid`); a map without any georeferencing is taken on
    its size alone. Cells equal to the map's declared nodata are skipped tiles (0). The values
    are checked as stored (before any cast): whole numbers >= 0, and with ``allowed``, one of
    those strides or 0; an error names the first tile at fault.
    """
    p = Path(path)
    try:
        with open_input(p) as ds:
            if ds.count != 1:
                raise PlanError(f"{p}: a stride map has 1 band, this has {ds.count}")
            if info is not None:
                _check_stride_grid(p, ds, shape, info, tile_size)
            if (ds.height, ds.width) != shape:
                raise PlanError(
                    f"{p}: stride map is {ds.height}x{ds.width} tiles, the scene needs "
                    f"{shape[0]}x{shape[1]}"
                )
            data = ds.read(1)
            nodata = ds.nodata
    except InputError as err:
        raise PlanError(str(err)) from None
    skipped = np.zeros(data.shape, dtype=bool)
    if nodata is not None:
        skipped = np.isnan(data) if np.isnan(nodata) else data == nodata
    with np.errstate(invalid="ignore"):
        wrong = ~skipped & (~np.isfinite(data) | (data < 0) | (data != np.round(data)))
    if wrong.any():
        at = _first_tile(wrong)
        raise PlanError(f"{p}: stride map values must be whole numbers >= 0; {at} holds "
                        f"{_value(data[wrong][0])}")
    if allowed is not None:
        wrong = ~skipped & ~np.isin(data, [*allowed, 0])
        if wrong.any():
            bad = [_value(v) for v in np.unique(data[wrong])]
            raise PlanError(f"{p}: stride map uses [{', '.join(bad)}] (first at "
                            f"{_first_tile(wrong)}), allowed strides are {list(allowed)} "
                            f"(and 0)")
    return np.where(skipped, 0, data).astype(np.int64)


def _first_tile(where: np.ndarray) -> str:
    """The first True cell of a stride map, row by row, as a message names it."""
    row, col = np.argwhere(where)[0]
    return f"tile row {row}, col {col}"


def _value(v: Any) -> str:
    """A stride map value as stored: whole numbers without a fraction."""
    v = v.item() if isinstance(v, np.generic) else v
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _check_stride_grid(p: Path, ds: rasterio.io.DatasetReader, shape: tuple[int, int],
                       info: RasterInfo, tile_size: int) -> None:
    """Raise :class:`PlanError` unless a stride map's georeferencing fits the scene's tiles:
    its CRS (when both have one) is the scene's, and its transform is the scene's transform
    scaled by ``tile_size`` (within :data:`GRID_TOLERANCE` of a map pixel), or its ground
    control points are the scene's scaled likewise. A map with neither transform nor GCPs is
    not checked beyond its CRS. When the map fits the scene at another tile size, the message
    names it."""
    gcps, gcp_crs = ds.gcps
    has_transform = not ds.transform.is_identity
    map_crs = ds.crs if has_transform or not gcps else gcp_crs
    scene_crs = info.gcp_crs if info.gcps else info.crs
    if map_crs is not None and scene_crs is not None and map_crs != scene_crs:
        raise PlanError(f"{p}: stride map is in {_crs_name(map_crs)}, the scene in "
                        f"{_crs_name(scene_crs)}")
    if has_transform:
        made_for = _transform_tile_size(ds.transform, info.transform)
    elif gcps:
        if not info.gcps:
            raise PlanError(f"{p}: stride map is placed by ground control points, the scene "
                            f"is not")
        made_for = _gcps_tile_size(gcps, info.gcps)
    else:
        return
    size = (ds.height, ds.width)
    counts = "" if size == shape else (f"stride map is {size[0]}x{size[1]} tiles, the scene "
                                       f"needs {shape[0]}x{shape[1]}: ")
    if made_for is not None and made_for != tile_size:
        raise PlanError(f"{p}: {counts or 'stride map '}"
                        f"{'it ' if counts else ''}was made for tile_size {made_for}, the "
                        f"config has {tile_size}")
    if made_for is None and size == shape:
        what = "transform does" if has_transform else "ground control points do"
        raise PlanError(f"{p}: stride map's {what} not match the scene's tiles of "
                        f"{tile_size} (made for another scene, or shifted?)")


def _crs_name(crs: Any) -> str:
    """A CRS as a message names it: ``EPSG:4326`` when it has a code, else its WKT name
    (``"WGS 84 / custom TM" (no EPSG code)``), else its PROJ parameters, cut at a word."""
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG:{epsg}"
    named = re.match(r'\s*[A-Z_]+\[\s*"([^"]+)"', crs.to_wkt() or "")
    if named and named.group(1).lower() not in ("unknown", "unnamed"):
        return f'"{named.group(1)}" (no EPSG code)'
    try:
        text = crs.to_proj4() or str(crs.to_string())
    except Exception:  # noqa: BLE001 - a CRS PROJ cannot express: its WKT
        text = str(crs.to_string())
    return text if len(text) <= 80 else text[:80].rsplit(" ", 1)[0] + " ..."


def _transform_tile_size(transform: Affine, scene: Affine) -> int | None:
    """The tile size ``n`` for which ``transform`` is the ``scene`` transform scaled by ``n``
    (within :data:`GRID_TOLERANCE` of a pixel), or None."""
    scene_pixel = math.hypot(scene.a, scene.d)
    if scene_pixel == 0:
        return None
    n = round(math.hypot(transform.a, transform.d) / scene_pixel)
    if n < 1:
        return None
    expected = scene @ Affine.scale(n)
    pixel = max(math.hypot(expected.a, expected.d), math.hypot(expected.b, expected.e))
    pairs = zip(transform[:6], expected[:6], strict=True)
    return n if all(abs(x - y) <= GRID_TOLERANCE * pixel for x, y in pairs) else None


def _gcps_tile_size(gcps: list[GroundControlPoint],
                    scene: tuple[GroundControlPoint, ...]) -> int | None:
    """The tile size ``n`` for which ``gcps`` are the ``scene``'s with their pixel positions
    divided by ``n`` (within :data:`GRID_TOLERANCE` of a pixel), or None."""
    if len(gcps) != len(scene):
        return None
    far = max(range(len(scene)), key=lambda i: max(abs(scene[i].row), abs(scene[i].col)))
    near = max(abs(gcps[far].row), abs(gcps[far].col))
    if near == 0:
        return None
    n = round(max(abs(scene[far].row), abs(scene[far].col)) / near)
    if n < 1:
        return None
    for g, s in zip(gcps, scene, strict=True):
        if (abs(g.row - s.row / n) > GRID_TOLERANCE or abs(g.col - s.col / n) > GRID_TOLERANCE
                or not math.isclose(g.x, s.x, rel_tol=1e-9, abs_tol=1e-9)
                or not math.isclose(g.y, s.y, rel_tol=1e-9, abs_tol=1e-9)):
            return None
    return n


# ---------------------------------------------------------------- quicklooks: decimated reads


def decimated_shape(height: int, width: int, max_size: int) -> tuple[int, int]:
    """``(h, w)`` of a picture of a ``height`` x ``width`` raster at most ``max_size`` pixels
    on its long side (never larger than the raster)."""
    scale = min(1.0, max_size / max(height, width, 1))
    return max(1, round(height * scale)), max(1, round(width * scale))


def display_bands(info: RasterInfo) -> tuple[int, ...]:
    """The bands of a picture: red, green and blue by colour interpretation when the data
    bands have all three, else the first three data bands, else the first (grey)."""
    if len(info.bands) < 3:
        return info.bands[:1]
    by_interp = {info.colorinterp[b - 1]: b for b in info.bands}
    rgb = [by_interp.get(c) for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)]
    if all(b is not None for b in rgb):
        return tuple(int(b) for b in rgb)  # type: ignore[arg-type]
    return info.bands[:3]


@dataclass(frozen=True)
class Decimated:
    """A raster read small for a picture: ``data`` ``(bands, h, w)`` float64 in the raster's
    units, ``valid`` ``(h, w)`` (every band read holds data there), the ``bands`` read, and
    what the raster is (``info``, at full size)."""

    data: np.ndarray
    valid: np.ndarray
    bands: tuple[int, ...]
    info: RasterInfo


def read_decimated(path: str | os.PathLike[str], max_size: int,
                   policy: InputPolicy | None = None, all_bands: bool = False) -> Decimated:
    """Read the bands of a picture (:func:`display_bands`; every data band with
    ``all_bands``) of a raster at most ``max_size`` pixels on the long side, nearest
    neighbour (each picture pixel is the raster pixel under its centre; nodata stays nodata).

    GDAL takes the pixels from the overviews when the raster has them and otherwise reads
    the blocks it needs through its bounded block cache: the full scene is never in memory.
    """
    with gdal_env(), open_input(path, policy) as ds:
        info = describe(ds)
        chosen = info.bands if all_bands else display_bands(info)
        h, w = decimated_shape(info.height, info.width, max_size)
        try:
            data = ds.read(list(chosen), out_shape=(len(chosen), h, w),
                           resampling=Resampling.nearest)
            if info.mask in ("dataset", "alpha"):
                valid = ds.read_masks(chosen[0], out_shape=(h, w),
                                      resampling=Resampling.nearest) > 0
            elif info.mask in ("nodata", "nan"):
                valid = valid_mask(data, info.nodata).all(axis=0)
            else:
                valid = np.ones((h, w), dtype=bool)
        except RasterioError as err:
            raise InputError(f"{shown_name(ds)}: read failed ({first_line(err)})") from None
    data = data.astype(np.float64)
    valid &= np.isfinite(data).all(axis=0)
    return Decimated(data, valid, chosen, info)


def tags(path: str | os.PathLike[str]) -> dict[str, str]:
    """A raster's dataset tags (metadata of the default domain)."""
    with gdal_env(), open_input(path) as ds:
        return dict(ds.tags())


def read_small(path: str | os.PathLike[str], max_pixels: int = 4_000_000,
               ) -> tuple[np.ndarray, RasterInfo]:
    """Read a small raster whole (a stride map, a per-tile error map) as float64
    ``(bands, h, w)``, NaN where it holds no data; :class:`InputError` if it is larger than
    ``max_pixels`` per band."""
    with gdal_env(), open_input(path) as ds:
        info = describe(ds)
        if info.width * info.height > max_pixels:
            raise InputError(f"{shown_name(ds)}: {info.width}x{info.height} is too large to "
                             "be a per-tile raster")
        try:
            data = ds.read(list(info.bands)).astype(np.float64)
            if info.mask in ("dataset", "alpha"):
                valid = np.broadcast_to(ds.read_masks(info.bands[0]) > 0, data.shape)
            else:
                valid = valid_mask(data, info.nodata)
        except RasterioError as err:
            raise InputError(f"{shown_name(ds)}: read failed ({first_line(err)})") from None
    return np.where(valid, data, np.nan), info
