"""The error report and the error map: per-tile estimates from the executed samples, checked
against the error measured here against scipy's dense result, and their georeferencing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from scipy import ndimage

from satconv import api, config, kernels
from satconv.scripts.cli import cli

try:
    from . import oracle
    from . import policy_support as ps
except ImportError:  # tests/ run as a plain folder
    import oracle
    import policy_support as ps

BASE = {"kernel": {"type": "gaussian", "size": 13, "sigma": 2.0},
        "strides": [1, 2, 4, 8, 16], "max_stride": 16, "tile_size": 128,
        "output": {"dtype": "float64", "compress": "none"}}  # (values only: no need to encode)
POLICIES = {"variance": {"type": "variance"},
            "budget": {"type": "budget", "fraction": 0.1},
            "refine": {"type": "refine", "tolerance_db": 40}}


def scene_of(name, tmp_path):
    if name == "sample":
        return ps.crop(ps.sample_scene(), tmp_path / "sample.tif", (0, 1280, 512, 2048))
    if name == "world.byte.tif":
        return ps.crop(ps.shared_data() / name, tmp_path / "w.tif", (128, 896, 0, 2048))
    return ps.shared_data() / name


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """name -> (scene, its dense reference), computed once for the module."""
    cache = {}

    def get(name):
        if name not in cache:
            scene = scene_of(name, tmp_path_factory.mktemp("scene"))
            x, valid = ps.read_scene(scene)
            cache[name] = scene, ps.dense(x, valid, kernels.gaussian(13, 2.0))
        return cache[name]
    return get


def strict_json(text: str) -> dict:
    def bad(token: str) -> None:
        raise ValueError(f"{token} is not JSON")
    return json.loads(text, parse_constant=bad)


@pytest.mark.parametrize("name", ["RGB.byte.tif", "world.byte.tif", "sample"])
@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("method", ["bilinear", "cubic"])
def test_estimates_are_at_or_above_the_measured_error(scenes, name, policy, method, tmp_path):
    """In at least 90% of the tiles run at a stride above 1, every band's estimate is at or
    above its measured RMS error."""
    scene, ref = scenes(name)
    s = config.from_dict({**BASE, "reconstruction": method, "policy": POLICIES[policy]})
    api.run_scene(scene, s, output=tmp_path / "o.tif", error_map=True)
    measured = ps.tile_rmse(ps.read_output(tmp_path / "o.tif"), ref, 128)
    with rasterio.open(tmp_path / "o.error.tif") as ds:
        estimate = np.moveaxis(ds.read(), 0, -1).astype(np.float64)
    strides = ps.read_band(tmp_path / "o.stride.tif")
    tiles = strides > 1
    margin = 1e-9 * np.maximum(ps.peaks(ref), 1.0)
    ok = np.all((estimate >= measured - margin) | np.isnan(measured), axis=-1)
    assert tiles.sum() >= 10
    assert ok[tiles].mean() >= 0.9, f"{ok[tiles].mean():.2%} of {tiles.sum()} tiles"
    # stride-1 tiles are exact: estimate 0; skipped tiles have none
    assert (estimate[strides == 1] == 0).all()
    assert np.isnan(estimate[strides == 0]).all()


def test_error_map_beside_the_stride_map_georeferenced(tmp_path):
    rgb = ps.shared_data() / "RGB.byte.tif"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tile_size: 64\npolicy: {type: refine, tolerance_db: 40}\n")
    result = CliRunner().invoke(cli, ["run", str(rgb), "-c", str(cfg), "-o",
                                      str(tmp_path / "out.tif"), "--error-map", "-q"])
    assert result.exit_code == 0, result.output
    with rasterio.open(rgb) as src, rasterio.open(tmp_path / "out.error.tif") as err, \
            rasterio.open(tmp_path / "out.stride.tif") as smap:
        assert err.crs == src.crs == smap.crs
        assert err.transform == src.transform @ rasterio.Affine.scale(64) == smap.transform
        assert (err.height, err.width) == (-(-src.height // 64), -(-src.width // 64))
        assert err.count == 3 and err.dtypes[0] == "float32"
        values = err.read()
        strides = smap.read(1)
    assert np.isnan(values[:, strides == 0]).all()
    assert np.isfinite(values[:, strides > 0]).all()
    report = strict_json((tmp_path / "out.satconv.json").read_text())
    assert report["outputs"]["error_map"].endswith("out.error.tif")


def test_report_gives_rmse_and_psnr_per_stride_and_overall(tmp_path):
    rgb = ps.shared_data() / "RGB.byte.tif"
    s = config.from_dict({"tile_size": 64, "strides": [1, 2, 4], "output": {"dtype": "float64"}})
    api.run_scene(rgb, s, output=tmp_path / "o.tif")
    rep = strict_json((tmp_path / "o.satconv.json").read_text())
    err = rep["error"]
    with rasterio.open(tmp_path / "o.stride.tif") as ds:
        strides = ds.read(1)
    executed = {str(k): int((strides == k).sum()) for k in np.unique(strides) if k > 0}
    assert {k: v["tiles"] for k, v in err["per_stride"].items()} == executed
    assert err["per_stride"]["1"]["rmse_per_band"] == [0.0, 0.0, 0.0]
    out = ps.read_output(tmp_path / "o.tif")
    peaks = [float(np.nanmax(b) - np.nanmin(b)) for b in out]
    np.testing.assert_allclose(err["peak_per_band"], peaks, rtol=1e-6)
    for block in [err["overall"], *err["per_stride"].values()]:
        for rmse, psnr, peak in zip(block["rmse_per_band"], block["psnr_db_per_band"], peaks,
                                    strict=True):
            if rmse:
                assert psnr == pytest.approx(20 * np.log10(peak / rmse), abs=1e-3)
    assert err["overall"]["psnr_db"] == min(p for p in err["overall"]["psnr_db_per_band"]
                                            if p is not None)
    assert err["worst_tile"]["stride"] > 1


def test_plan_command_compares_the_policies(tmp_path):
    world = ps.shared_data() / "world.byte.tif"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kernel: {type: gaussian, size: 13, sigma: 2.0}\nstrides: [1, 2, 4, 8, 16]\n"
                   "tile_size: 128\npolicy: {type: refine, tolerance_db: 40}\n")
    result = CliRunner().invoke(cli, ["plan", str(world), "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    text = result.output
    for label in ("variance", "budget", "refine (tolerance_db 40)", "uniform stride 1",
                  "uniform stride 16", "best uniform stride"):
        assert label in text, label
    # the kernel's cap (sigma 2: stride 8) is stated, and refine's strides are a prediction
    assert "stride cap: 8" in text and "prediction" in text


@pytest.mark.parametrize("name", ["RGB.byte.tif", "world.byte.tif"])
@pytest.mark.parametrize("stride", [2, 4])
def test_a_single_stride_is_estimated_and_skips_empty_tiles(scenes, name, stride, tmp_path):
    """With one allowed stride nothing is planned; the executor still estimates every tile's
    error from its samples (at or above the measured error in 90% of tiles) and skips the
    tiles without a valid pixel, which the stride map shows as 0."""
    scene, ref = scenes(name)
    s = config.from_dict({**BASE, "strides": [stride]})
    api.run_scene(scene, s, output=tmp_path / "o.tif", error_map=True)
    measured = ps.tile_rmse(ps.read_output(tmp_path / "o.tif"), ref, 128)
    with rasterio.open(tmp_path / "o.error.tif") as ds:
        estimate = np.moveaxis(ds.read(), 0, -1).astype(np.float64)
    strides = ps.read_band(tmp_path / "o.stride.tif")
    valid = ps.read_scene(scene)[1].any(axis=0)
    ny, nx = strides.shape
    has_data = np.array([[valid[ty * 128:(ty + 1) * 128, tx * 128:(tx + 1) * 128].any()
                          for tx in range(nx)] for ty in range(ny)])
    np.testing.assert_array_equal(strides, np.where(has_data, stride, 0))
    tiles = strides > 0
    assert tiles.sum() >= 10 and (measured[tiles] > 0).any()
    margin = 1e-9 * np.maximum(ps.peaks(ref), 1.0)
    ok = np.all((estimate >= measured - margin) | np.isnan(measured), axis=-1)
    assert ok[tiles].mean() >= 0.9, f"{ok[tiles].mean():.2%} of {tiles.sum()} tiles"
    assert np.isnan(estimate[~tiles]).all()
    rep = strict_json((tmp_path / "o.satconv.json").read_text())
    assert rep["error"]["overall"]["rmse_per_band"][0] > 0
    assert rep["execute"]["tiles_per_stride"].get("0", 0) == int((~has_data).sum())


def test_plan_command_names_explicit_thresholds(tmp_path):
    """The variance row says which variance plan it shows: hand-set thresholds, not the
    target_error that an auto plan would use."""
    rgb = ps.shared_data() / "RGB.byte.tif"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("strides: [1, 2, 4]\npolicy: {thresholds: [100, 10]}\n")
    result = CliRunner().invoke(cli, ["plan", str(rgb), "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "variance (thresholds 100, 10)" in result.output
    assert "target_error" not in result.output


@pytest.mark.parametrize("dtype", ["uint8", "int16"])
def test_an_integer_output_adds_its_rounding_to_the_estimate(write_tif, dtype, tmp_path):
    """With ``dtype: same`` the written values are rounded: at stride 1 (no reconstruction
    error) the error map is exactly the RMS difference between what was written and the
    dense oracle, tile by tile, and the report's PSNR is the measured one."""
    rng = np.random.default_rng(3)
    x = ndimage.gaussian_filter(rng.normal(size=(48, 64)), 2) * 400 + 100
    if dtype == "uint8":
        x = np.clip(x, 0, 255)
    scene = write_tif(np.round(x).astype(dtype)[None])
    s = config.from_dict({"strides": [1], "tile_size": 16, "output": {"dtype": "same"}})
    out = tmp_path / "o.tif"
    rep = api.run_scene(scene, s, output=out, error_map=True)
    with rasterio.open(out) as ds:
        got = ds.read(1).astype(np.float64)
    with rasterio.open(tmp_path / "o.error.tif") as ds:
        est = ds.read(1)
    k = s.kernel.array()
    ref = oracle.normalised_dense(np.round(x).astype(dtype).astype(np.float64),
                                  np.ones(x.shape, dtype=bool), k, s.boundary, s.cval,
                                  s.min_valid_fraction)
    for ty in range(3):
        for tx in range(4):
            sl = np.s_[16 * ty:16 * ty + 16, 16 * tx:16 * tx + 16]
            measured = np.sqrt(np.mean((got[sl] - ref[sl]) ** 2))
            assert est[ty, tx] == pytest.approx(measured, rel=1e-3, abs=1e-6)
    peak = ref.max() - ref.min()
    mse = np.mean((got - ref) ** 2)
    assert rep.error["overall"]["psnr_db"] == pytest.approx(10 * np.log10(peak**2 / mse),
                                                            abs=0.05)
