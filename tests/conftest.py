"""Shared fixtures: synthetic GeoTIFFs in tmp_path, hand-written stride maps, reference data."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

REPO_ROOT = Path(__file__).resolve().parents[1]
CRS_UTM33N = CRS.from_epsg(32633)
#: A real UTM 33N geotransform: 10 m pixels, north-up, origin in the zone's false easting range.
TRANSFORM = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 5200020.0)

WriteTif = Callable[..., Path]
WriteStrideMap = Callable[..., Path]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first: ``make test`` spreads the test files over the cores, and a
    long test started last would leave the other cores idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def random_image(rng: np.random.Generator, shape: Sequence[int], dtype: str) -> np.ndarray:
    """Random pixels covering most of ``dtype``'s range (floats: a signed range of 1000)."""
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        lo, hi = max(info.min, -30000), min(info.max, 60000)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)
    return (rng.random(shape) * 2000.0 - 1000.0).astype(dt)


def write_geotiff(path: Path, data: np.ndarray, *, nodata: float | None = None,
                  crs: CRS | None = CRS_UTM33N, transform: Affine = TRANSFORM,
                  descriptions: Sequence[str | None] | None = None,
                  tiled: bool = False, compress: str | None = None,
                  photometric: str | None = "minisblack") -> Path:
    """Write ``data`` ((h, w) or (bands, h, w)) as a GeoTIFF with rasterio. Bands are plain
    data (photometric minisblack) unless asked otherwise: GDAL would otherwise take a fourth
    uint8 band for alpha."""
    arr = data[None] if data.ndim == 2 else data
    profile = {
        "driver": "GTiff", "width": arr.shape[2], "height": arr.shape[1],
        "count": arr.shape[0], "dtype": arr.dtype.name, "crs": crs, "transform": transform,
        "nodata": nodata,
    }
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if compress:
        profile["compress"] = compress
    if photometric:
        profile["photometric"] = photometric
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
        for i, d in enumerate(descriptions or [], start=1):
            if d:
                dst.set_band_description(i, d)
    return Path(path)


@pytest.fixture
def write_tif(tmp_path: Path) -> WriteTif:
    """``write_tif(data, name="scene.tif", nodata=None, ...)`` -> path inside tmp_path."""

    def _write(data: np.ndarray, name: str = "scene.tif", **kw: object) -> Path:
        return write_geotiff(tmp_path / name, data, **kw)

    return _write


@pytest.fixture
def make_scene(write_tif: WriteTif) -> Callable[..., tuple[Path, np.ndarray]]:
    """``make_scene(h, w, bands=1, dtype="uint16", seed=0, nodata=None, name=...)`` writes a
    random scene and returns (path, the (bands, h, w) pixels written)."""

    def _make(height: int, width: int, bands: int = 1, dtype: str = "uint16", seed: int = 0,
              name: str = "scene.tif", **kw: object) -> tuple[Path, np.ndarray]:
        data = random_image(np.random.default_rng(seed), (bands, height, width), dtype)
        return write_tif(data, name=name, **kw), data

    return _make


def write_stride_map_file(path: Path, strides: np.ndarray, scene: Path, tile_size: int,
                          dtype: str = "uint8") -> Path:
    """A hand-written plan: one pixel per tile, the scene's CRS and its transform scaled by
    the tile size (written here with rasterio, not with satconv's writer)."""
    with rasterio.open(scene) as src:
        crs, transform = src.crs, src.transform
    arr = np.asarray(strides).astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype=dtype, crs=crs,
                       transform=transform @ Affine.scale(tile_size)) as dst:
        dst.write(arr, 1)
    return Path(path)


@pytest.fixture
def write_stride_map(tmp_path: Path) -> WriteStrideMap:
    """``write_stride_map(strides, scene, tile_size, name="plan.tif")`` -> path."""

    def _write(strides: np.ndarray, scene: Path, tile_size: int, name: str = "plan.tif",
               dtype: str = "uint8") -> Path:
        return write_stride_map_file(tmp_path / name, strides, scene, tile_size, dtype)

    return _write


def tile_shape(height: int, width: int, tile_size: int) -> tuple[int, int]:
    return -(-height // tile_size), -(-width // tile_size)


def slow_run_inputs(folder: Path) -> tuple[Path, Path]:
    """A 3000x3000 uint16 scene and a random 7x7 kernel config on tiles of 64: a run long
    enough (seconds; 1.4-1.8 s after its output is staged) to be interrupted mid-way. Returns
    (scene, config)."""
    scene = folder / "big.tif"
    rng = np.random.default_rng(0)
    write_geotiff(scene, rng.integers(0, 65535, size=(1, 3000, 3000), dtype=np.uint16))
    weights = np.round(rng.normal(size=(7, 7)), 2).tolist()
    cfg = folder / "c.yaml"
    cfg.write_text(f"kernel: {{type: custom, weights: {weights}}}\ntile_size: 64\n")
    return scene, cfg


def slow_pair(folder: Path, seed: int) -> Path:
    """``s1.tif`` and ``s2.tif`` (2400x2400 uint16) and a config whose 41x41 kernel is not
    separable: each scene takes seconds on one thread. Returns the config's path."""
    rng = np.random.default_rng(seed)
    for i in (1, 2):
        write_geotiff(folder / f"s{i}.tif", random_image(rng, (1, 2400, 2400), "uint16"))
    weights = rng.uniform(0.5, 1.0, size=(41, 41)).round(3).tolist()
    cfg = folder / "slow.yaml"
    cfg.write_text(json.dumps({"kernel": {"type": "custom", "weights": weights},
                               "strides": [1], "tile_size": 128}))
    return cfg


def wait_until_computing(proc: subprocess.Popen, inputs: set[str],
                         timeout: float = 300) -> None:
    """Read the JSON log lines of ``proc`` (a ``satconv run --log-format json`` whose stderr is
    a pipe) until every one of ``inputs`` is past its first tiles; fail if one ends first."""
    running: set[str] = set()
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    for line in proc.stderr:
        ev = json.loads(line)
        if ev.get("event") == "progress" and ev.get("phase") == "execute":
            running.add(ev["input"])
        assert ev.get("event") != "done", "an input ended before the stop: make it slower"
        if running == inputs or time.monotonic() > deadline:
            break
    assert running == inputs


def wait_for_staging(proc: subprocess.Popen, partial: Path, timeout: float = 60) -> None:
    """Wait until a satconv run started as ``proc`` has staged ``partial``, and fail if it
    ends or takes ``timeout`` seconds before."""
    deadline = time.monotonic() + timeout
    while not partial.exists():
        assert proc.poll() is None, "satconv finished before its output was seen"
        assert time.monotonic() < deadline, "no temporary output appeared"
        time.sleep(0.002)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str, str], Path]:
    """``write_config(yaml_text, name="config.yaml")`` -> path."""

    def _write(text: str, name: str = "config.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return _write


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference rasters of SPEC section 6: $SATCONV_TEST_DATA or ../shared/data."""
    env = os.environ.get("SATCONV_TEST_DATA")
    folder = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not folder.is_dir():
        pytest.skip(f"reference data not found: {folder} (set SATCONV_TEST_DATA)")
    return folder
