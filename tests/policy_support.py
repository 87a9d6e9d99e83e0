"""Helpers for the stride-policy tests (refine, budget, context, cubic, error report).

The reference is built only on numpy, scipy and rasterio reading the input: the normalised
dense convolution over valid pixels of the WHOLE image (SPEC section 1 and the nodata rule),
never satconv's own output.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from . import oracle

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "sample_scene.tif"


def shared_data() -> Path:
    """``../shared/data`` (or ``$SATCONV_TEST_DATA``); skips the test when it is absent."""
    env = os.environ.get("SATCONV_TEST_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not (path / "RGB.byte.tif").exists():
        pytest.skip(f"reference rasters not found at {path} (set SATCONV_TEST_DATA)")
    return path


def sample_scene() -> Path:
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} not generated (make demo writes it)")
    return SAMPLE


def read_scene(path: Path, window: tuple[int, int, int, int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(bands, h, w) float64 pixels and their validity (dataset mask / nodata, and not NaN).
    ``window`` = (row0, row1, col0, col1)."""
    with rasterio.open(path) as ds:
        win = None
        if window is not None:
            r0, r1, c0, c1 = window
            win = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
        x = ds.read(window=win).astype(np.float64)
        valid = ds.read_masks(window=win) > 0
    return x, valid & ~np.isnan(x)


def crop(src: Path, dst: Path, window: tuple[int, int, int, int]) -> Path:
    """Copy a window of ``src`` to ``dst`` with its georeferencing, nodata and band layout."""
    r0, r1, c0, c1 = window
    with rasterio.open(src) as ds:
        win = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
        profile = ds.profile.copy()
        profile.update(width=c1 - c0, height=r1 - r0, transform=ds.window_transform(win),
                       tiled=False, compress="deflate")
        for k in ("blockxsize", "blockysize"):
            profile.pop(k, None)
        data = ds.read(window=win)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


def dense(x: np.ndarray, valid: np.ndarray, kernel: np.ndarray, mode: str = "reflect",
          cval: float = 0.0, min_fraction: float = 0.5) -> np.ndarray:
    """The normalised dense convolution of every band over its valid pixels (NaN = nodata):
    ``sum(K+ X M) sum(K+) / sum(K+ M) - sum(K- X M) sum(K-) / sum(K- M)``, nodata where the
    centre is invalid or the valid share of ``|K|`` is below ``min_fraction``."""
    return np.stack([oracle.normalised_dense(x[b], valid[b], kernel, mode, cval, min_fraction)
                     for b in range(x.shape[0])])


def read_output(path: Path) -> np.ndarray:
    """A satconv output as float64 with NaN where it is nodata."""
    with rasterio.open(path) as ds:
        out = ds.read().astype(np.float64)
        nd = ds.nodata
    if nd is not None and not np.isnan(nd):
        out[out == nd] = np.nan
    return out


def stride_errors(tmp_path: Path, stride: int, methods: tuple[str, ...]) -> dict[str, float]:
    """RMS error of each reconstruction at a uniform stride on a smooth float scene (Gaussian
    5x5, sigma 1; tiles of 32), against scipy's dense result; asserts that the samples
    themselves are exact."""
    from scipy import ndimage

    from satconv import api, config, kernels

    rng = np.random.default_rng(3)
    x = ndimage.gaussian_filter(rng.normal(size=(160, 176)), 4) * 4000 + 10000
    path = write_tif(tmp_path / "smooth.tif", x.astype(np.float32))
    x = read_scene(path)[0]
    ref = dense(x, np.ones(x.shape, dtype=bool), kernels.gaussian(5, 1.0))
    errors = {}
    for method in methods:
        s = config.from_dict({"tile_size": 32, "strides": [stride], "max_stride": "none",
                              "reconstruction": method, "output": {"dtype": "float64"}})
        api.run_scene(path, s, output=tmp_path / f"{method}.tif", overwrite=True)
        out = read_output(tmp_path / f"{method}.tif")
        grid = (slice(None), slice(0, None, stride), slice(0, None, stride))
        np.testing.assert_allclose(out[grid], ref[grid], rtol=1e-9, atol=1e-6)
        errors[method] = float(np.sqrt(np.mean((out - ref) ** 2)))
    return errors


def read_band(path: Path, band: int = 1) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(band)


def tile_rmse(out: np.ndarray, ref: np.ndarray, tile: int) -> np.ndarray:
    """Measured RMS error per tile and band ``(ny, nx, bands)`` over the pixels valid in
    both (NaN where a tile has none)."""
    bands, h, w = ref.shape
    ny, nx = -(-h // tile), -(-w // tile)
    res = np.full((ny, nx, bands), np.nan)
    both = np.isfinite(out) & np.isfinite(ref)
    err = np.where(both, out - ref, 0.0) ** 2
    for ty in range(ny):
        for tx in range(nx):
            sl = (slice(None), slice(ty * tile, (ty + 1) * tile),
                  slice(tx * tile, (tx + 1) * tile))
            n = both[sl].sum(axis=(1, 2))
            with np.errstate(invalid="ignore"):
                res[ty, tx] = np.where(n > 0, np.sqrt(err[sl].sum(axis=(1, 2)) / n), np.nan)
    return res


def peaks(ref: np.ndarray) -> np.ndarray:
    """Each band's value range in the reference (the PSNR peak)."""
    return np.array([np.nanmax(r) - np.nanmin(r) if np.isfinite(r).any() else 0.0
                     for r in ref])


def psnr(out: np.ndarray, ref: np.ndarray) -> float:
    """Worst band's PSNR over the pixels valid in both; peak = the reference's range."""
    both = np.isfinite(out) & np.isfinite(ref)
    worst = np.inf
    for b, p in enumerate(peaks(ref)):
        if not both[b].any() or p <= 0:
            continue
        mse = np.mean((out[b][both[b]] - ref[b][both[b]]) ** 2)
        if mse > 0:
            worst = min(worst, 10 * np.log10(p * p / mse))
    return float(worst)


def write_tif(path: Path, data: np.ndarray, crs: str | None = "EPSG:32633",
              transform: Affine | None = None, nodata: float | None = None) -> Path:
    """A small GeoTIFF for the tests (10 m pixels in UTM 33N unless told)."""
    arr = data[None] if data.ndim == 2 else data
    profile = {"driver": "GTiff", "width": arr.shape[2], "height": arr.shape[1],
               "count": arr.shape[0], "dtype": arr.dtype.name,
               "crs": CRS.from_user_input(crs) if crs else None,
               "transform": transform or Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 5200020.0),
               "nodata": nodata, "photometric": "minisblack"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
    return path
