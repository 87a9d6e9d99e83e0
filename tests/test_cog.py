"""Cloud-Optimized GeoTIFF outputs (``output.cog: true``): valid by rio-cogeo's validator,
the same pixels as a plain GeoTIFF run, overviews by averaging for the data and by nearest
neighbour for the stride map, which keeps its colour table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate

from satconv import raster_io
from satconv.scripts.cli import cli

from .conftest import write_geotiff

CONFIG = ("tile_size: 256\nkernel: {{type: gaussian, size: 3}}\nmax_stride: none\n"
          "output: {{cog: {cog}, dtype: {dtype}}}\n")


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_valid_cog(path: Path) -> None:
    valid, errors, warnings = cog_validate(str(path), strict=True, quiet=True)
    assert valid and not errors and not warnings, (path, errors, warnings)


def smooth_scene(height: int, width: int, bands: int, seed: int) -> np.ndarray:
    """uint16 pixels with texture at several scales (so the plan mixes strides)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    out = []
    for b in range(bands):
        base = 20000 + 8000 * np.sin(x / (37.0 + b)) * np.cos(y / 53.0)
        noise = rng.normal(0, 1, (height, width)) * np.where(x > width // 2, 900, 20)
        out.append(np.clip(base + noise, 0, 65535))
    return np.stack(out).astype(np.uint16)


def block_means(a: np.ndarray, f: int) -> np.ndarray:
    b, h, w = a.shape
    h, w = h // f, w // f
    return a[:, :h * f, :w * f].reshape(b, h, f, w, f).mean(axis=(2, 4))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 4-band uint16 scene run four ways: COG or not, output type same or float32."""
    folder = tmp_path_factory.mktemp("cog")
    scene = write_geotiff(folder / "scene.tif", smooth_scene(1100, 900, 4, 1))
    out = {}
    for cog in ("true", "false"):
        for dtype in ("same", "float32"):
            cfg = folder / f"{cog}-{dtype}.yaml"
            cfg.write_text(CONFIG.format(cog=cog, dtype=dtype))
            dest = folder / f"{cog}-{dtype}"
            dest.mkdir()
            result = invoke("run", scene, "-c", cfg, "--out-dir", dest, "-q")
            assert result.exit_code == 0, result.output
            out[cog == "true", dtype] = dest
    return scene, out


@pytest.mark.parametrize("dtype", ["same", "float32"])
def test_cog_outputs_pass_rio_cogeo_validate(runs, dtype):
    _, out = runs
    folder = out[True, dtype]
    assert_valid_cog(folder / "scene.satconv.tif")
    assert_valid_cog(folder / "scene.stride.tif")
    with rasterio.open(folder / "scene.satconv.tif") as ds:
        assert ds.count == 4
        assert ds.dtypes[0] == ("uint16" if dtype == "same" else "float32")
        assert ds.block_shapes[0] == (256, 256)  # internal tiles
        assert ds.overviews(1), "a COG of 1100 x 900 pixels has overviews"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    # nothing else left in the folder (no .body, .partial or .ovr.tmp)
    assert sorted(p.name for p in folder.iterdir()) == [
        "scene.satconv.json", "scene.satconv.tif", "scene.stride.tif"]


def test_plain_geotiff_is_not_a_cog(runs):
    """The validator tells them apart, so the test above can fail."""
    _, out = runs
    valid, errors, warnings = cog_validate(str(out[False, "same"] / "scene.satconv.tif"),
                                           strict=True, quiet=True)
    assert not valid and (errors or warnings)


@pytest.mark.parametrize("dtype", ["same", "float32"])
def test_cog_holds_the_same_pixels_and_metadata(runs, dtype):
    _, out = runs
    with rasterio.open(out[True, dtype] / "scene.satconv.tif") as cog, \
            rasterio.open(out[False, dtype] / "scene.satconv.tif") as tif:
        assert np.array_equal(cog.read(), tif.read(), equal_nan=True)
        assert cog.crs == tif.crs and cog.transform == tif.transform
        assert cog.nodata == tif.nodata or (np.isnan(cog.nodata) and np.isnan(tif.nodata))
        assert cog.descriptions == tif.descriptions
        assert cog.tags()["SATCONV_VERSION"] == tif.tags()["SATCONV_VERSION"]


@pytest.mark.parametrize("dtype", ["same", "float32"])
def test_cog_overviews_average_the_data(runs, dtype):
    """Continuous data: each first-level overview pixel is the mean of its 2 x 2 pixels."""
    _, out = runs
    path = out[True, dtype] / "scene.satconv.tif"
    with rasterio.open(path) as ds:
        full = ds.read().astype(np.float64)
        assert ds.overviews(1)[0] == 2
    with rasterio.open(path, overview_level=0) as ovr:
        level = ovr.read().astype(np.float64)
    want = block_means(full, 2)
    assert level.shape == want.shape
    tol = 0.5 + 1e-9 if dtype == "same" else 1e-3 * np.abs(want).max()
    assert np.abs(level - want).max() <= tol
    nearest = full[:, 1::2, 1::2][:, :want.shape[1], :want.shape[2]]
    assert np.abs(nearest - want).max() > 10 * tol  # averaging is not picking


def test_stride_map_cog_keeps_plan_colours_and_tags(runs):
    _, out = runs
    with rasterio.open(out[True, "same"] / "scene.stride.tif") as cog, \
            rasterio.open(out[False, "same"] / "scene.stride.tif") as tif:
        assert np.array_equal(cog.read(), tif.read())
        assert len(np.unique(tif.read())) > 1  # the plan mixes strides
        assert cog.dtypes[0] == "uint8" and cog.nodata == 0
        assert cog.colormap(1) == tif.colormap(1)
        assert cog.colorinterp == tif.colorinterp
        assert cog.transform == tif.transform and cog.crs == tif.crs
        assert cog.tags()["SATCONV_CONFIG"] == tif.tags()["SATCONV_CONFIG"].replace(
            '"cog":false', '"cog":true')


def test_large_stride_map_cog_overviews_keep_strides(tmp_path):
    """A stride map large enough for overviews: they hold strides only (nearest neighbour),
    never a mean of two strides."""
    scene = write_geotiff(tmp_path / "s.tif", np.zeros((1, 8, 8), dtype=np.uint8))
    with raster_io.open_input(scene) as ds:
        info = raster_io.describe(ds)
    rng = np.random.default_rng(0)
    strides = rng.choice(np.array([1, 4], dtype=np.uint8), size=(700, 600))
    path = tmp_path / "big.stride.tif"
    raster_io.write_stride_map(path, strides, info, 256, {"SATCONV_VERSION": "test"}, cog=True)
    assert_valid_cog(path)
    with rasterio.open(path) as ds:
        assert ds.overviews(1)
        assert np.array_equal(ds.read(1), strides)
        assert ds.colormap(1)[4] == ds.colormap(1)[4] != ds.colormap(1)[1]
    with rasterio.open(path, overview_level=0) as ovr:
        assert set(np.unique(ovr.read(1)).tolist()) <= {1, 4}
    assert not [p for p in tmp_path.iterdir() if p.name not in ("s.tif", "big.stride.tif")]


def test_plan_o_writes_a_cog_when_asked(make_scene, write_config, tmp_path):
    scene, _ = make_scene(300, 300)
    cfg = write_config("tile_size: 16\noutput: {cog: true}\n")
    result = invoke("plan", scene, "-c", cfg, "-o", tmp_path / "plan.tif")
    assert result.exit_code == 0, result.output
    assert_valid_cog(tmp_path / "plan.tif")
