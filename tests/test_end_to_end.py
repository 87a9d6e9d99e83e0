"""Whole runs (api.run_scene and the CLI) checked against scipy's dense convolution of the whole
image and against rasterio's own reading of what satconv wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from satconv import __version__, api, config
from satconv.errors import OutputError

from . import oracle
from .conftest import (
    CRS_UTM33N,
    TRANSFORM,
    random_image,
    slow_run_inputs,
    tile_shape,
    wait_for_staging,
    write_stride_map_file,
)

SATCONV = Path(sys.executable).parent / "satconv"

# An asymmetric 3x5 kernel: a forgotten flip (or a transposed one) cannot pass.
ASYM = [[1.0, 2.0, -1.0, 0.0, 3.0], [0.0, 5.0, 1.0, -2.0, 1.0], [2.0, 0.0, 0.5, 1.0, -3.0]]
ASYM_5x3 = np.asarray(ASYM).T[::-1].tolist()


def settings(**kw) -> config.Settings:
    base = {"kernel": {"type": "custom", "weights": ASYM}}
    base.update(kw)
    return config.from_dict(base)


def run(scene: Path, s: config.Settings, plan: Path | None = None, out: Path | None = None):
    out = out or scene.with_name("out.tif")
    report = api.run_scene(scene, s, output=out, plan_path=plan, workers=2)
    return out, report


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def kernel_of(s: config.Settings) -> np.ndarray:
    """The kernel the config asks for, built here (not by satconv) for custom weights."""
    assert s.kernel.type == "custom"
    return np.asarray(s.kernel.weights, dtype=np.float64)


def assert_dense(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    for b in range(expected.shape[0]):
        err = oracle.relative_error(actual[b], expected[b])
        assert err < 1e-5, f"band {b}: relative error {err:.3g}"


# ---------------------------------------------------------------- exactness: stride 1


@pytest.mark.parametrize("mode", oracle.BOUNDARY_MODES)
@pytest.mark.parametrize("weights", [ASYM, ASYM_5x3], ids=["3x5", "5x3"])
def test_stride1_plan_equals_dense_every_mode(make_scene, write_stride_map, mode, weights):
    scene, data = make_scene(45, 38, bands=1, dtype="float32", seed=1)
    cval = 123.25 if mode == "constant" else 0.0
    s = settings(kernel={"type": "custom", "weights": weights}, boundary=mode, cval=cval,
                 tile_size=16)
    plan = write_stride_map(np.ones(tile_shape(45, 38, 16)), scene, 16)
    out, _ = run(scene, s, plan)
    assert_dense(read(out), oracle.dense(data, np.asarray(weights), mode, cval))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("bands", [1, 3, 4])
def test_stride1_plan_equals_dense_dtypes_and_bands(make_scene, write_stride_map, dtype, bands):
    mode = oracle.BOUNDARY_MODES[(bands + len(dtype)) % 5]
    scene, data = make_scene(37, 53, bands=bands, dtype=dtype, seed=bands)
    s = settings(boundary=mode, cval=-2.0, tile_size=16)
    plan = write_stride_map(np.ones(tile_shape(37, 53, 16)), scene, 16)
    out, _ = run(scene, s, plan)
    with rasterio.open(out) as ds:
        assert ds.dtypes == ("float32",) * bands
    assert_dense(read(out), oracle.dense(data, kernel_of(s), mode, -2.0))


def test_cval_beyond_float32_is_computed_in_float64(make_scene):
    """A finite padding value too large for float32 (the output's type) would be an infinity
    in a float32 block: the tiles are computed in float64 instead, and every pixel whose
    window lies inside the image equals the dense result (7x7, not rank 1: the passes that
    share rows between output rows)."""
    scene, data = make_scene(40, 45, bands=1, dtype="uint8", seed=3)
    weights = np.random.default_rng(3).random((7, 7))
    weights /= weights.sum()
    s = settings(kernel={"type": "custom", "weights": weights.tolist()}, boundary="constant",
                 cval=3.5e38, strides=[1], tile_size=16, output={"dtype": "float32"})
    out, _ = run(scene, s)
    got = read(out)[0].astype(np.float64)
    want = oracle.dense(data.astype(np.float64), weights, "constant", 0.0)[0]
    inner = (slice(3, -3), slice(3, -3))
    assert np.isfinite(got[inner]).all()
    assert oracle.relative_error(got[inner], want[inner]) < 1e-6


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint32", "int32", "float64"])
def test_stride1_plan_equals_dense_other_dtypes(make_scene, write_stride_map, dtype):
    scene, data = make_scene(21, 34, bands=2, dtype=dtype, seed=7)
    s = settings(tile_size=16, boundary="wrap")
    out, _ = run(scene, s, write_stride_map(np.ones(tile_shape(21, 34, 16)), scene, 16))
    assert_dense(read(out), oracle.dense(data, kernel_of(s), "wrap"))


@pytest.mark.parametrize("tile_size", [8, 24, 40, 64])
def test_stride1_plan_any_tile_size(make_scene, write_stride_map, tile_size):
    scene, data = make_scene(45, 59, bands=2, dtype="int16", seed=tile_size)
    s = settings(tile_size=tile_size, strides=[1, 2, 4, 8])
    plan = write_stride_map(np.ones(tile_shape(45, 59, tile_size)), scene, tile_size)
    out, _ = run(scene, s, plan)
    assert_dense(read(out), oracle.dense(data, kernel_of(s), "reflect"))


def test_stride1_plan_through_the_cli(make_scene, write_stride_map, write_config, tmp_path):
    scene, data = make_scene(40, 33, bands=3, dtype="uint16", seed=9)
    cfg = write_config(f"kernel: {{type: custom, weights: {ASYM}}}\nboundary: mirror\n"
                       "tile_size: 16\n")
    plan = write_stride_map(np.ones(tile_shape(40, 33, 16)), scene, 16)
    proc = subprocess.run([str(SATCONV), "run", str(scene), "-c", str(cfg), "--plan", str(plan),
                           "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_dense(read(tmp_path / "scene.satconv.tif"),
                 oracle.dense(data, np.asarray(ASYM), "mirror"))


# ---------------------------------------------------------------- strided plans


def _check_strided(out: np.ndarray, data: np.ndarray, strides: np.ndarray, s: config.Settings,
                   method: str = "bilinear") -> None:
    _, h, w = data.shape
    d = oracle.dense(data, kernel_of(s), s.boundary, s.cval)
    grid = oracle.stride_grid_mask(strides, h, w, s.tile_size)
    for b in range(data.shape[0]):
        span = float(d[b].max() - d[b].min())
        # every sample on a tile's own grid equals the dense reference
        np.testing.assert_allclose(out[b][grid], d[b][grid], rtol=0, atol=1e-5 * span)
        # and the rest is the interpolation of exact samples, seamless across tiles
        expected = oracle.strided_image(d[b], strides, s.tile_size, method)
        np.testing.assert_allclose(out[b], expected, rtol=0, atol=1e-5 * span)


@pytest.mark.parametrize("plan_kind", ["2", "4", "mixed"])
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_strided_plan_grid_samples_equal_dense(make_scene, write_stride_map, plan_kind, method):
    h, w, t = 75, 61, 16
    scene, data = make_scene(h, w, bands=2, dtype="uint16", seed=4)
    shape = tile_shape(h, w, t)
    if plan_kind == "mixed":
        strides = np.random.default_rng(0).choice([1, 2, 4], size=shape)
        strides[0, 0], strides[0, 1], strides[1, 0] = 1, 2, 4
    else:
        strides = np.full(shape, int(plan_kind))
    s = settings(tile_size=t, boundary="nearest", reconstruction=method)
    out, report = run(scene, s, write_stride_map(strides, scene, t))
    _check_strided(read(out), data, strides, s, method)
    hist = dict(zip(*np.unique(strides, return_counts=True), strict=True))
    assert report.plan["tiles_per_stride"] == {str(k): int(v) for k, v in hist.items()}


def test_policy_plan_is_executed_as_written_in_the_stride_map(write_tif):
    """Without --plan: whatever the policy chose, the stride map says it, and the output obeys
    it (grid samples exact, the rest interpolated)."""
    rng = np.random.default_rng(2)
    h, w = 96, 80
    rr, cc = np.mgrid[0:h, 0:w]
    data = (2000 + 10 * rr + 5 * cc).astype(np.float32)[None]
    data[0, 32:64, 16:48] += rng.normal(size=(32, 32)).astype(np.float32) * 500
    scene = write_tif(data)
    s = settings(tile_size=16, max_stride="none")  # the asymmetric kernel's safe stride is 1
    out, report = run(scene, s)
    with rasterio.open(out.with_name("out.stride.tif")) as ds:
        strides = ds.read(1).astype(int)
    assert strides.shape == tile_shape(h, w, 16)
    assert set(np.unique(strides)) <= {1, 2, 4} and len(np.unique(strides)) > 1
    _check_strided(read(out), data, strides, s)


def test_report_contents(make_scene, write_stride_map):
    scene, _ = make_scene(40, 50, bands=2)
    strides = np.array([[1, 2, 4, 4], [2, 2, 1, 4], [4, 4, 4, 4]])
    s = settings(tile_size=16)
    out, _ = run(scene, s, write_stride_map(strides, scene, 16))
    rep = json.loads(out.with_name("out.satconv.json").read_text())
    assert rep["input"] == str(scene)
    assert rep["satconv_version"] == __version__
    assert rep["scene"]["width"] == 50 and rep["scene"]["height"] == 40
    assert rep["scene"]["bands"] == 2 and rep["scene"]["dtype"] == "uint16"
    assert config.from_dict(rep["config"]) == s
    assert rep["plan"]["tiles_per_stride"] == {"1": 2, "2": 3, "4": 7}
    px = np.outer([16, 16, 8], [16, 16, 16, 2])
    assert rep["plan"]["compute_fraction"] == pytest.approx((px / strides**2).sum() / 2000,
                                                            abs=1e-6)
    for key in ("plan", "execute", "total"):
        assert rep["timings_s"][key] >= 0
    assert rep["peak_memory_mb"] > 0


# ---------------------------------------------------------------- georeferencing and metadata


def test_output_georeferencing_metadata_and_tags(write_tif, tmp_path):
    data = random_image(np.random.default_rng(0), (3, 70, 45), "int16")
    scene = write_tif(data, nodata=-9999, descriptions=["blue", "green", None])
    s = settings(tile_size=32)
    out, _ = run(scene, s)
    with rasterio.open(scene) as src, rasterio.open(out) as ds:
        assert ds.crs == src.crs == CRS_UTM33N
        assert ds.transform == src.transform == TRANSFORM
        assert (ds.width, ds.height, ds.count) == (45, 70, 3)
        assert ds.nodata == -9999
        assert ds.dtypes == ("float32",) * 3
        assert ds.descriptions[:2] == ("blue", "green")
        tags = ds.tags()
        assert tags["SATCONV_VERSION"] == __version__
        assert config.from_dict(json.loads(tags["SATCONV_CONFIG"])) == s
        assert ds.profile["tiled"] and ds.compression is not None
    with rasterio.open(out.with_name("out.stride.tif")) as sm:
        assert sm.crs == CRS_UTM33N
        assert sm.transform.almost_equals(TRANSFORM @ Affine.scale(32))
        assert (sm.height, sm.width) == (3, 2) and sm.dtypes == ("uint8",)
        assert sm.colormap(1) is not None
        assert sm.tags()["SATCONV_VERSION"] == __version__


def test_rotated_transform_is_kept(write_tif):
    rot = Affine(8.0, 2.0, 1000.0, 1.5, -9.0, 5000.0)
    scene = write_tif(np.zeros((1, 30, 20), np.uint8), transform=rot)
    out, _ = run(scene, settings(tile_size=16))
    with rasterio.open(out) as ds:
        assert ds.transform == rot
    with rasterio.open(out.with_name("out.stride.tif")) as sm:
        assert sm.transform @ (1, 1) == pytest.approx(rot @ (16, 16))


@pytest.mark.parametrize(("dtype", "kernel"), [
    ("uint8", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),       # sharpen: leaves 0..255
    ("uint16", [[0.3, -0.7, 1.9]]),                           # fractional values to round
    ("int16", [[2.5], [-1.25], [0.6]]),
])
def test_output_dtype_same_rounds_and_clips(make_scene, write_stride_map, dtype, kernel):
    scene, data = make_scene(33, 41, bands=2, dtype=dtype, seed=5)
    s = settings(kernel={"type": "custom", "weights": kernel}, tile_size=16,
                 output={"dtype": "same"})
    out, _ = run(scene, s, write_stride_map(np.ones(tile_shape(33, 41, 16)), scene, 16))
    got = read(out)
    assert got.dtype == np.dtype(dtype)
    d = oracle.dense(data, np.asarray(kernel, dtype=np.float64), "reflect")
    lim = np.iinfo(dtype)
    expected = np.clip(np.rint(d), lim.min, lim.max)
    assert (d < lim.min).any() and (d > lim.max).any()  # clipping is exercised
    tie = np.abs(np.abs(d - np.floor(d)) - 0.5) < 1e-6  # x.5: float noise may round either way
    np.testing.assert_array_equal(got[~tie], expected[~tie])
    assert np.all(np.abs(got.astype(float) - expected) <= 1)


def test_output_dtype_float64(make_scene, write_stride_map):
    scene, data = make_scene(20, 20, dtype="float32")
    s = settings(tile_size=16, output={"dtype": "float64"})
    out, _ = run(scene, s, write_stride_map(np.ones((2, 2)), scene, 16))
    got = read(out)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, oracle.dense(data, kernel_of(s)), rtol=1e-12, atol=1e-9)


def test_float64_values_beyond_float32_are_refused_not_written_as_infinity(write_tif,
                                                                          tmp_path):
    """float64 data near 1e39 filtered into the default float32 output would be infinity:
    the scene fails in one line naming it and the fix, and nothing is left behind; with
    ``output.dtype: float64`` the same scene equals the dense convolution."""
    data = np.random.default_rng(3).random((1, 40, 40)) * 1e39 + 1e38
    scene = write_tif(data, name="big.tif")
    out = tmp_path / "out" / "big.tif"
    out.parent.mkdir()
    s = settings(tile_size=16, strides=[1])
    with pytest.raises(OutputError, match=r"big\.tif: filtered values reach .*float32.*"
                                          r"output\.dtype: float64"):
        api.run_scene(scene, s, output=out)
    assert sorted(p.name for p in out.parent.iterdir()) == []
    wide = settings(tile_size=16, strides=[1], output={"dtype": "float64"})
    api.run_scene(scene, wide, output=out)
    got = read(out)
    np.testing.assert_allclose(got, oracle.dense(data, kernel_of(wide)), rtol=1e-12)


@pytest.mark.parametrize("compress", ["zstd", "lzw", "none"])
def test_compression_options_keep_values(make_scene, write_stride_map, compress):
    scene, data = make_scene(20, 30, dtype="uint8")
    s = settings(tile_size=16, output={"compress": compress})
    out, _ = run(scene, s, write_stride_map(np.ones((2, 2)), scene, 16))
    with rasterio.open(out) as ds:
        assert (ds.compression.value.lower() if ds.compression else "none") == compress
    assert_dense(read(out), oracle.dense(data, kernel_of(s)))


def test_cog_output(make_scene, write_stride_map):
    scene, data = make_scene(300, 280, dtype="uint16")
    s = settings(tile_size=64, output={"cog": True})
    out, _ = run(scene, s, write_stride_map(np.ones(tile_shape(300, 280, 64)), scene, 64))
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.crs == CRS_UTM33N and ds.transform == TRANSFORM
    assert_dense(read(out), oracle.dense(data, kernel_of(s)))
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "out.satconv.json", "out.stride.tif", "out.tif", "plan.tif", "scene.tif"]


# ---------------------------------------------------------------- nodata


def _nodata_scene(write_tif, dtype="uint16", nodata=0):
    data = random_image(np.random.default_rng(8), (2, 64, 48), dtype)
    data[data == nodata] = 1
    data[:, :, :5] = nodata                  # a collar
    data[0, 40:44, 20:23] = nodata           # a hole in one band only
    data[:, 32:, 32:] = nodata               # a whole tile (stride 0)
    return write_tif(data, nodata=nodata), data


def test_input_nodata_pixels_are_output_nodata(write_tif):
    scene, data = _nodata_scene(write_tif)
    out, _ = run(scene, settings(tile_size=16))
    with rasterio.open(out) as ds:
        assert ds.nodata == 0
        got = ds.read()
        masks = ds.read_masks()
    np.testing.assert_array_equal(got[data == 0], 0)
    assert np.all(masks[data == 0] == 0)
    with rasterio.open(out.with_name("out.stride.tif")) as sm:
        assert np.all(sm.read(1)[2:, 2:] == 0)
        assert np.all(sm.read(1)[:2] > 0)


def test_nodata_with_same_dtype(write_tif):
    scene, data = _nodata_scene(write_tif, "int16", -9999)
    out, _ = run(scene, settings(tile_size=16, output={"dtype": "same"}))
    with rasterio.open(out) as ds:
        assert ds.nodata == -9999 and ds.dtypes == ("int16", "int16")
        np.testing.assert_array_equal(ds.read()[data == -9999], -9999)


def test_nan_nodata_float_input(write_tif, write_stride_map):
    data = random_image(np.random.default_rng(3), (1, 40, 40), "float32")
    data[0, :, 30:] = np.nan
    scene = write_tif(data, nodata=float("nan"))
    out, _ = run(scene, settings(tile_size=16))
    with rasterio.open(out) as ds:
        assert np.isnan(ds.nodata)
        assert np.all(np.isnan(ds.read()[np.isnan(data)]))


def test_nodata_does_not_bleed_into_valid_pixels(write_tif, write_stride_map):
    data = np.full((1, 32, 32), 100.0, dtype=np.float32)
    data[0, :, :4] = -9999.0
    scene = write_tif(data, nodata=-9999.0)
    s = config.from_dict({"kernel": {"type": "gaussian", "size": 5}, "tile_size": 16})
    out, _ = run(scene, s, write_stride_map(np.ones((2, 2)), scene, 16))
    got = read(out)[0]
    valid = data[0] != -9999.0
    # a positive kernel over valid neighbours only: the output of a constant field is constant
    np.testing.assert_allclose(got[valid], 100.0, rtol=1e-6)


def test_nan_does_not_bleed_into_valid_pixels(write_tif, write_stride_map):
    data = np.full((1, 16, 16), 5.0, dtype=np.float32)
    data[0, 8, 8] = np.nan
    scene = write_tif(data, nodata=float("nan"))
    out, _ = run(scene, settings(tile_size=16), write_stride_map(np.ones((1, 1)), scene, 16))
    got = read(out)[0]
    assert np.isnan(got[8, 8])
    assert np.isfinite(np.delete(got.ravel(), 8 * 16 + 8)).all()


def test_quiet_run_of_all_nodata_scene_prints_nothing(write_tif):
    scene = write_tif(np.zeros((2, 20, 30), np.uint16), nodata=0)
    proc = subprocess.run([str(SATCONV), "run", str(scene), "-q"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_all_nodata_scene(write_tif):
    scene = write_tif(np.zeros((2, 20, 30), np.uint16), nodata=0)
    out, report = run(scene, settings(tile_size=16))
    assert report.plan["tiles_per_stride"] == {"0": 4}
    assert np.all(read(out) == 0)
    with rasterio.open(out) as ds:
        assert not ds.read_masks().any()


# ---------------------------------------------------------------- reference data


def test_world_byte_stride1_equals_dense(shared_data, tmp_path):
    src = shared_data / "world.byte.tif"
    with rasterio.open(src) as ds:
        data = ds.read()
        h, w = ds.height, ds.width
    s = settings(tile_size=256)
    plan = tmp_path / "ones.tif"
    write_stride_map_file(plan, np.ones(tile_shape(h, w, 256)), src, 256)
    out, _ = run(src, s, plan, out=tmp_path / "world.tif")
    assert_dense(read(out), oracle.dense(data, kernel_of(s), "reflect"))
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert a.crs == b.crs and a.transform == b.transform and np.isnan(b.nodata)


@pytest.mark.parametrize("plan_kind", ["2", "4", "mixed"])
def test_world_byte_strided_grid_samples_equal_dense(shared_data, tmp_path, plan_kind):
    src = shared_data / "world.byte.tif"
    with rasterio.open(src) as ds:
        data = ds.read()
        h, w = ds.height, ds.width
    shape = tile_shape(h, w, 256)
    strides = (np.random.default_rng(1).choice([1, 2, 4], size=shape) if plan_kind == "mixed"
               else np.full(shape, int(plan_kind)))
    plan = write_stride_map_file(tmp_path / "plan.tif", strides, src, 256)
    s = settings(tile_size=256, boundary="wrap")
    out, _ = run(src, s, plan, out=tmp_path / "world.tif")
    _check_strided(read(out), data, strides, s)


def test_rgb_collar_nodata_preserved(shared_data, tmp_path):
    src = shared_data / "RGB.byte.tif"
    out, _ = run(src, settings(tile_size=256), out=tmp_path / "rgb.tif")
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert b.nodata == a.nodata == 0
        assert a.crs == b.crs and a.transform == b.transform
        assert np.all(b.read()[a.read() == 0] == 0)


def test_corrupt_reference_file_fails_cleanly(shared_data, tmp_path):
    proc = subprocess.run([str(SATCONV), "run", str(shared_data / "corrupt.tif"),
                           "--out-dir", str(tmp_path), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "corrupt.tif" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file left behind


# ---------------------------------------------------------------- atomic outputs


@pytest.mark.slow
def test_killed_run_leaves_no_file_at_final_names(tmp_path):
    scene, cfg = slow_run_inputs(tmp_path)
    finals = [tmp_path / n for n in ("big.satconv.tif", "big.stride.tif", "big.satconv.json")]
    proc = subprocess.Popen([str(SATCONV), "run", str(scene), "-c", str(cfg), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / f".big.satconv.tif.{proc.pid}.partial"
    try:
        wait_for_staging(proc, partial)
        time.sleep(0.05)  # let it write a little
        assert proc.poll() is None, "satconv finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not any(f.exists() for f in finals)
    # only hidden temporary names may remain
    assert all(p.name.startswith(".") for p in tmp_path.iterdir()
               if p.name not in ("big.tif", "c.yaml"))


def test_valid_pixels_never_read_back_as_nodata(write_tif, write_stride_map):
    data = np.full((1, 32, 32), 50, dtype=np.uint8)
    data[0, :, :3] = 0                         # a nodata collar
    scene = write_tif(data, nodata=0)
    s = config.from_dict({"kernel": {"type": "laplacian"}, "tile_size": 16})
    out, _ = run(scene, s, write_stride_map(np.ones((2, 2)), scene, 16))
    with rasterio.open(out) as ds:
        masks = ds.read_masks(1)
    np.testing.assert_array_equal(masks > 0, data[0] != 0)


@pytest.mark.parametrize("policy", [
    {"strides": [1]},                                                   # nothing planned
    {"strides": [1, 2, 4], "policy": {"type": "refine", "tolerance": 0.5}},  # decided running
])
def test_report_plan_is_the_stride_map_written(write_tif, policy):
    """The report's plan.tiles_per_stride and compute_fraction describe the stride map on disk
    (read back with rasterio), also where execution changed the plan: a tile found without a
    valid pixel (stride 0), refine's strides. The planned figures follow, named as such."""
    rng = np.random.default_rng(8)
    h, w, t = 64, 80, 16
    data = ndimage.gaussian_filter(rng.normal(size=(h, w)) * 50 + 500, 3)[None].astype(
        np.float32)
    data[0, 20:28, 40:50] += rng.normal(size=(8, 10)).astype(np.float32) * 300  # texture
    data[0, :16, :16] = -9999  # one tile without a valid pixel
    scene = write_tif(data, nodata=-9999)
    out, report = run(scene, settings(tile_size=t, **policy))
    with rasterio.open(out.with_name("out.stride.tif")) as ds:
        strides = ds.read(1).astype(int)
    values, counts = np.unique(strides, return_counts=True)
    assert report.plan["tiles_per_stride"] == {str(v): int(c)
                                               for v, c in zip(values, counts, strict=True)}
    assert strides[0, 0] == 0
    px = np.outer(np.minimum(t, h - t * np.arange(strides.shape[0])),
                  np.minimum(t, w - t * np.arange(strides.shape[1])))
    spent = np.where(strides > 0, px / np.maximum(strides, 1) ** 2, 0.0).sum() / (h * w)
    assert report.plan["compute_fraction"] == pytest.approx(spent, abs=1e-6)
    if policy["strides"] == [1]:  # one allowed stride: every tile planned at it
        assert report.plan["planned_tiles_per_stride"] == {"1": strides.size}
