"""Nodata, masks, NaN and alpha (issue 3): normalised convolution over valid pixels, checked
against the scipy oracle on the whole image, with no bleed and no seam at any stride."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio

from satconv import api, config

from . import oracle
from . import policy_support as ps

KERNELS = {
    "gaussian": {"type": "gaussian", "size": 5, "sigma": 1.0},
    "sobel": {"type": "sobel_x"},
    "asym": {"type": "custom", "weights": [[1.0, 2.0, 0.0], [0.0, -1.0, 3.5], [0.0, 0.0, -2.0]]},
}


def validity(path: Path) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The input's data bands and per-band validity as rasterio reports them (GDAL's masks,
    plus NaN), independently of satconv: an alpha band is a mask, not data."""
    with rasterio.open(path) as ds:
        bands = [i for i, ci in enumerate(ds.colorinterp, start=1)
                 if ci != rasterio.enums.ColorInterp.alpha]
        x = ds.read(bands).astype(np.float64)
        valid = np.stack([ds.read_masks(b) > 0 for b in bands]) & ~np.isnan(x)
    return x, valid, bands


def run(src: Path, out: Path, **cfg: object) -> Path:
    api.run_scene(src, config.from_dict(cfg), output=out)
    return out


def read_out(path: Path) -> np.ndarray:
    """The output as rasterio reads it, nodata (or masked) pixels as NaN."""
    with rasterio.open(path) as ds:
        return ds.read(masked=True).astype(np.float64).filled(np.nan)


def assert_matches(out: np.ndarray, ref: np.ndarray, where: np.ndarray | None = None) -> None:
    """Same nodata pattern, and values within 1e-5 of the band's output range."""
    for b in range(ref.shape[0]):
        sel = np.ones(ref[b].shape, bool) if where is None else where[b]
        np.testing.assert_array_equal(np.isnan(out[b])[sel], np.isnan(ref[b])[sel])
        both = sel & ~np.isnan(ref[b])
        if not both.any():
            continue
        span = max(np.ptp(ref[b][~np.isnan(ref[b])]), 1.0)
        err = np.abs(out[b][both] - ref[b][both]).max()
        assert err <= 1e-5 * span, f"band {b}: {err} > 1e-5 x {span}"


SHARED = ["RGB.byte.tif", "RGB2.byte.tif", "RGBA.uint16.tif", "float_nan.tif",
          "float_raster_with_nodata.tif", "alpha.tif"]


@pytest.mark.parametrize("name", SHARED)
@pytest.mark.parametrize("kernel", ["gaussian", "sobel", "asym"])
def test_shared_data_stride1_equals_normalised_oracle(shared_data, tmp_path, name, kernel):
    src = shared_data / name
    x, valid, _ = validity(src)
    out = read_out(run(src, tmp_path / "o.tif", kernel=KERNELS[kernel], strides=[1],
                       tile_size=64))
    k = config.from_dict({"kernel": KERNELS[kernel]}).kernel.array()
    ref = np.stack([oracle.normalised_dense(x[b], valid[b], k) for b in range(x.shape[0])])
    assert out.shape == ref.shape
    assert_matches(out, ref)


@pytest.mark.parametrize("stride", [2, 4, 8])
@pytest.mark.parametrize("name", ["RGB.byte.tif", "RGB2.byte.tif", "float_raster_with_nodata.tif"])
def test_no_bleed_at_any_stride(shared_data, tmp_path, name, stride):
    """Within a kernel radius of invalid data, and at every grid sample, the strided output
    equals the normalised oracle exactly; nodata stays exactly where the oracle has it."""
    src = shared_data / name
    x, valid, _ = validity(src)
    kern = KERNELS["asym"]
    out = read_out(run(src, tmp_path / "o.tif", kernel=kern, strides=[stride], tile_size=64))
    k = config.from_dict({"kernel": kern}).kernel.array()
    ref = np.stack([oracle.normalised_dense(x[b], valid[b], k) for b in range(x.shape[0])])
    near = np.stack([oracle.near_invalid(valid[b], k.shape) for b in range(x.shape[0])])
    grid = oracle.grid_mask(x.shape[1], x.shape[2], stride)[None]
    assert near.any()
    assert_matches(out, ref, near | grid)
    # nodata pattern over the whole image: exactly the oracle's
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))


@pytest.mark.parametrize("cfg", [{}, {"strides": [1]}, {"strides": [2]}],
                         ids=["planned", "dense", "stride2"])
def test_all_nodata_scene_is_skipped(shared_data, tmp_path, cfg):
    """Planned or not (one allowed stride: nothing is planned), a tile without a valid pixel
    costs no kernel evaluation and is 0 in the stride map."""
    src = shared_data / "all-nodata.tif"
    out = tmp_path / "o.tif"
    rep = api.run_scene(src, config.from_dict(cfg), output=out)
    tiles = sum(rep.plan["tiles_per_stride"].values())
    assert rep.execute["tiles_per_stride"] == {"0": tiles}
    assert rep.execute["kernel_evaluations"] == 0
    with rasterio.open(out) as ds, rasterio.open(tmp_path / "o.stride.tif") as sm:
        assert ds.read(masked=True).mask.all()
        assert (sm.read(1) == 0).all()


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32",
                                   "float32", "float64"])
@pytest.mark.parametrize("stride", [1, 4])
def test_every_dtype_with_nodata_hole(write_tif, tmp_path, dtype, stride):
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo, hi = (max(info.min, -1000), min(info.max, 1000)) if info else (-1000.0, 1000.0)
    x = rng.uniform(lo + 1, hi, size=(2, 70, 90)).astype(dtype)
    nodata = lo
    x[:, 20:35, 30:50] = nodata
    x[1, 60:, :10] = nodata
    src = write_tif(x, nodata=nodata)
    out = read_out(run(src, tmp_path / "o.tif", kernel=KERNELS["asym"], strides=[stride],
                       tile_size=32))
    valid = x != nodata
    k = config.from_dict({"kernel": KERNELS["asym"]}).kernel.array()
    ref = np.stack([oracle.normalised_dense(x[b].astype(float), valid[b], k) for b in range(2)])
    where = None
    if stride > 1:
        near = np.stack([oracle.near_invalid(valid[b], k.shape) for b in range(2)])
        where = near | oracle.grid_mask(70, 90, stride)[None]
    assert_matches(out, ref, where)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32"])
def test_dtype_same_round_trip(write_tif, tmp_path, dtype):
    """output.dtype same: the oracle's values rounded and clipped to the type; nodata kept and
    never taken by a valid pixel."""
    lim = np.iinfo(dtype)
    rng = np.random.default_rng(5)
    x = rng.integers(max(lim.min, -200), min(lim.max, 200), size=(1, 40, 50)).astype(dtype)
    nodata = lim.min
    x[:, 10:15, 10:20] = nodata
    src = write_tif(x, nodata=nodata)
    out_path = run(src, tmp_path / "o.tif", kernel=KERNELS["sobel"], strides=[1],
                   output={"dtype": "same"})
    valid = x[0] != nodata
    ref = oracle.normalised_dense(x[0].astype(float), valid, config.from_dict(
        {"kernel": KERNELS["sobel"]}).kernel.array())
    expect = np.clip(np.rint(np.nan_to_num(ref)), lim.min, lim.max)
    with rasterio.open(out_path) as ds:
        assert ds.dtypes[0] == dtype and ds.nodata == nodata
        got = ds.read(1)
    ok = ~np.isnan(ref)
    assert (got[~ok] == nodata).all()
    assert (got[ok] != nodata).all()
    diff = np.abs(got[ok].astype(np.int64) - expect[ok].astype(np.int64))
    moved = expect[ok] == nodata  # a valid value equal to nodata moves one step inward
    assert (diff[~moved] == 0).all() and (diff[moved] == 1).all()


def test_dtype_same_masks_skipped_tiles_and_keeps_every_valid_value(write_tif, tmp_path):
    """An integer input without nodata, output in its own type, and a plan that skips tiles:
    the skipped tiles must read as nodata, not as valid zeros, and no valid value may move to
    make room for a nodata value (a 0/1 raster would lose its zeros): an internal mask marks
    them, and no nodata value is declared."""
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, size=(1, 96, 80)).astype("uint8")
    x[0, :40, :40] = 0  # valid zeros, as over a dark sea
    src = write_tif(x)
    plan = np.array([[2, 0, 2], [0, 2, 2], [2, 2, 0]], dtype="uint8")
    plan_path = tmp_path / "plan.tif"
    with rasterio.open(plan_path, "w", driver="GTiff", width=3, height=3, count=1,
                       dtype="uint8") as ds:
        ds.write(plan, 1)
    s = config.from_dict({"kernel": KERNELS["gaussian"], "strides": [1, 2], "tile_size": 32,
                          "output": {"dtype": "same"}})
    api.run_scene(src, s, output=tmp_path / "o.tif", plan_path=plan_path)
    skipped = np.kron(plan == 0, np.ones((32, 32), dtype=bool))[:96, :80]
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.nodata is None
        got = ds.read(1)
        mask = ds.read_masks(1)
    assert (mask[skipped] == 0).all() and (mask[~skipped] == 255).all()
    assert (got[~skipped] == 0).any()  # the valid dark sea keeps its zeros
    k = config.from_dict({"kernel": KERNELS["gaussian"]}).kernel.array()
    ref = np.clip(np.rint(oracle.normalised_dense(x[0].astype(float), np.ones(x[0].shape,
                                                                             dtype=bool), k)),
                  0, 255)
    grid = np.zeros(x[0].shape, dtype=bool)
    grid[::2, ::2] = True  # (the tiles' stride-2 samples are exact)
    np.testing.assert_array_equal(got[grid & ~skipped], ref[grid & ~skipped])


def test_alpha_becomes_output_mask(shared_data, tmp_path):
    """The alpha band is not data: the output has the three colour bands and an internal mask
    that is set exactly where the normalised oracle has a value."""
    src = shared_data / "RGBA.uint16.tif"
    out = run(src, tmp_path / "o.tif", strides=[1])
    x, valid, bands = validity(src)
    k = config.Settings().kernel.array()
    defined = np.stack([~np.isnan(oracle.normalised_dense(x[b], valid[b], k))
                        for b in range(x.shape[0])])
    with rasterio.open(out) as ds:
        assert ds.count == len(bands) == 3
        assert rasterio.enums.MaskFlags.per_dataset in ds.mask_flag_enums[0]
        mask = ds.dataset_mask() > 0
    assert (~valid.all(axis=0)).any() and (defined.any(axis=0) != valid.all(axis=0)).any()
    np.testing.assert_array_equal(mask, defined.any(axis=0))


def test_an_alpha_band_gdal_does_not_take_as_the_mask_is_data(write_tif, tmp_path):
    """GDAL takes only the last band tagged alpha as the mask; one tagged alpha elsewhere is
    data to GDAL (no mask), so it is convolved as data, not dropped with its transparency
    lost."""
    rng = np.random.default_rng(6)
    x = (rng.random((3, 30, 30)) * 200).astype(np.uint8)
    x[0, 5:15, 5:15] = 0
    src = write_tif(x, name="alpha_first.tif")
    with rasterio.open(src, "r+") as ds:
        ds.colorinterp = [rasterio.enums.ColorInterp.alpha, rasterio.enums.ColorInterp.gray,
                          rasterio.enums.ColorInterp.undefined]
    with rasterio.open(src) as ds:
        assert all(f == [rasterio.enums.MaskFlags.all_valid] for f in ds.mask_flag_enums)
    k = KERNELS["asym"]
    out = run(src, tmp_path / "o.tif", kernel=k, strides=[1], tile_size=16)
    with rasterio.open(out) as ds:
        assert ds.count == 3
        assert rasterio.enums.ColorInterp.alpha not in ds.colorinterp
        got = ds.read()
        assert (ds.dataset_mask() > 0).all()
    for b in range(3):
        np.testing.assert_allclose(got[b], oracle.dense(x[b].astype(np.float64),
                                                        np.asarray(k["weights"])),
                                   rtol=1e-5, atol=1e-3)


def test_scale_and_offset_carried_over(write_tif, tmp_path):
    x = np.full((1, 20, 20), 100, dtype=np.uint16)
    src = write_tif(x)
    with rasterio.open(src, "r+") as ds:
        ds.scales = (0.5,)
        ds.offsets = (10.0,)
    out = run(src, tmp_path / "o.tif", kernel={"type": "gaussian", "size": 5, "sigma": 1.0})
    with rasterio.open(out) as ds:  # a normalised kernel: the offset as written, exactly
        assert ds.scales == (0.5,) and ds.offsets == (10.0,)


def test_nodata_and_descriptions_in_an_aux_xml_are_the_inputs(write_tif, tmp_path):
    """A read-only source edited in a GIS keeps its nodata and band names in ``.aux.xml``:
    GDAL reads them as the input's, so satconv does too, and writes no side file of its
    own beside the input."""
    rng = np.random.default_rng(4)
    x = (rng.random((2, 40, 40)) * 200 + 20).astype(np.uint8)
    x[:, 10:18, 20:30] = 7
    src = write_tif(x, name="edited.tif")
    aux = src.with_name(src.name + ".aux.xml")
    aux.write_text("<PAMDataset>" + "".join(
        f'<PAMRasterBand band="{b}"><NoDataValue>7</NoDataValue>'
        f"<Description>B{b}</Description></PAMRasterBand>" for b in (1, 2)) + "</PAMDataset>")
    k = KERNELS["asym"]
    before = sorted(p.name for p in src.parent.iterdir()) + ["out"]
    (tmp_path / "out").mkdir()
    out = run(src, tmp_path / "out" / "o.tif", kernel=k, strides=[1], tile_size=16)
    assert sorted(p.name for p in src.parent.iterdir()) == before
    x_in, valid, _ = validity(src)  # rasterio, with GDAL's side-file reading on
    assert (~valid).sum() == 2 * 80
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("B1", "B2") and ds.nodata == 7
        got = ds.read(masked=True)
    weights = np.asarray(k["weights"])
    for b in range(2):
        want = oracle.normalised_dense(x_in[b], valid[b], weights)
        np.testing.assert_array_equal(got.mask[b], np.isnan(want))
        np.testing.assert_allclose(got[b].compressed(), want[~np.isnan(want)], rtol=1e-5,
                                   atol=1e-3)


@pytest.mark.parametrize("dtype", ["complex64", "complex_int16"])
def test_complex_input_refused(tmp_path, dtype):
    src = tmp_path / "c.tif"
    with rasterio.open(src, "w", driver="GTiff", width=4, height=4, count=1,
                       dtype=dtype) as ds:
        ds.write(np.ones((1, 4, 4), np.complex64))
    res = subprocess.run([sys.executable, "-m", "satconv", "run", str(src)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 1
    assert "complex" in res.stderr and str(src) in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1  # one line for one failed input
    assert not list(tmp_path.glob("c.satconv*")) and not (tmp_path / "c.stride.tif").exists()


@pytest.mark.slow
def test_every_shared_file_succeeds_or_fails_cleanly(shared_data, tmp_path):
    sources = sorted(shared_data.glob("*.tif"))

    def one(src: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "satconv", "run", str(src), "--out-dir",
                               str(tmp_path)], capture_output=True, text=True)

    with ThreadPoolExecutor(2) as pool:  # one command per file, two at a time
        results = list(pool.map(one, sources))
    for src, res in zip(sources, results, strict=True):
        outs = [tmp_path / f"{src.stem}{suffix}" for suffix in
                (".satconv.tif", ".stride.tif", ".satconv.json")]
        assert "Traceback" not in res.stderr
        if src.name == "corrupt.tif":
            assert res.returncode == 1 and "corrupt.tif" in res.stderr
            assert not any(p.exists() for p in outs)
        else:
            assert res.returncode == 0, res.stderr
            assert all(p.exists() for p in outs)
    assert not list(tmp_path.glob(".*partial*"))


def test_an_infinite_pixel_is_nodata_not_data(write_tif, tmp_path):
    """One +inf pixel must not make the scene's value range infinite (every tile then ran at
    the coarsest stride, with no error target left): it is invalid, like NaN."""
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[0:256, 0:256]
    x = ((np.sin(xx / 7) * np.cos(yy / 11) * 0.4 + 0.5) * 1000
         + rng.normal(0, 50, (256, 256))).astype("float32")
    base = write_tif(x, name="base.tif")
    x[5, 5] = np.inf
    one = write_tif(x, name="inf.tif")
    cfg = {"tile_size": 64, "strides": [1, 2, 4]}
    rb = api.run_scene(base, config.from_dict(cfg), output=tmp_path / "b.tif")
    ri = api.run_scene(one, config.from_dict(cfg), output=tmp_path / "i.tif")
    assert ri.plan["scene_range_per_band"] == rb.plan["scene_range_per_band"]
    assert ri.execute["tiles_per_stride"] == rb.execute["tiles_per_stride"]
    out = read_out(tmp_path / "i.tif")[0]
    valid = np.isfinite(x)
    ref = oracle.normalised_dense(np.where(valid, x, 0).astype(float), valid,
                                  config.Settings().kernel.array())
    assert np.isnan(out[5, 5]) and np.isfinite(out[valid]).all()
    stride1 = np.kron(ps.read_band(tmp_path / "i.stride.tif") == 1, np.ones((64, 64), bool))
    np.testing.assert_allclose(out[stride1 & valid], ref[stride1 & valid], rtol=1e-5)


@pytest.mark.parametrize(("dtype", "nodata"), [("int32", 16777217), ("uint32", 4294967295)])
def test_a_nodata_float32_cannot_hold_is_declared_nan(write_tif, tmp_path, dtype, nodata):
    """float32 rounds these nodata values: declaring the rounded value would mark (and move)
    valid pixels near it, so the output declares NaN and keeps every valid value."""
    rng = np.random.default_rng(4)
    x = (nodata - 60 + rng.integers(0, 50, (1, 60, 70))).astype(dtype)
    x[:, 10:20, 10:20] = nodata
    src = write_tif(x, nodata=nodata)
    out = run(src, tmp_path / "o.tif", strides=[1])
    with rasterio.open(out) as ds:
        assert np.isnan(ds.nodata)
        got = ds.read(1).astype(float)
    valid = x[0] != nodata
    ref = oracle.normalised_dense(x[0].astype(float), valid, config.Settings().kernel.array())
    assert np.isnan(got[~valid]).all()
    np.testing.assert_allclose(got[valid], ref[valid], rtol=1e-6)
