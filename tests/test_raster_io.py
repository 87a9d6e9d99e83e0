"""satconv.raster_io: staged (atomic) outputs, the stride map, reading plans and pixels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from satconv import raster_io
from satconv.errors import InputError, OutputError, PlanError

from .conftest import CRS_UTM33N, TRANSFORM


def _info(path: Path) -> raster_io.RasterInfo:
    with raster_io.open_input(path) as ds:
        return raster_io.describe(ds)


# ---------------------------------------------------------------- StagedOutputs


def test_staged_outputs_nothing_final_until_commit(tmp_path):
    finals = [tmp_path / "a.json", tmp_path / "a.tif", tmp_path / "a.stride.tif"]
    with raster_io.StagedOutputs(finals) as staged:
        for i, f in enumerate(finals):
            t = staged.temp(f)
            assert t.parent == tmp_path and t.name.startswith(".") and t != f
            assert t.name.endswith(f".{os.getpid()}.partial") and f.name in t.name
            t.write_text(str(i))
        assert not any(f.exists() for f in finals)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            staged.temp(f).name for f in finals)
        staged.commit()
    assert [f.read_text() for f in finals] == ["0", "1", "2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in finals)


def test_staged_outputs_exception_removes_temps(tmp_path):
    finals = [tmp_path / "b.tif", tmp_path / "b.json"]
    with pytest.raises(RuntimeError, match="boom"):
        with raster_io.StagedOutputs(finals) as staged:
            staged.temp(finals[0]).write_text("half")  # only one temp written
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_staged_outputs_not_committed_leaves_nothing(tmp_path):
    final = tmp_path / "c.tif"
    with raster_io.StagedOutputs([final]) as staged:
        staged.temp(final).write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []


def test_staged_outputs_commit_replaces_existing(tmp_path):
    final = tmp_path / "d.tif"
    final.write_text("old")
    with raster_io.StagedOutputs([final]) as staged:
        staged.temp(final).write_text("new")
        assert final.read_text() == "old"
        staged.commit()
    assert final.read_text() == "new"


def test_staged_outputs_are_on_disk_before_their_rename(tmp_path, monkeypatch):
    """Each staged file is synced before any rename (after a power loss a renamed file
    could be empty), the folder after them; a sync that fails (EIO) fails the commit with
    nothing renamed."""
    finals = [tmp_path / "e.json", tmp_path / "e.tif"]
    log: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        log.append(("sync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(a, b):
        log.append(("rename", Path(b).name))
        real_replace(a, b)

    monkeypatch.setattr(raster_io.os, "fsync", fsync)
    monkeypatch.setattr(raster_io.os, "replace", replace)
    with raster_io.StagedOutputs(finals) as staged:
        for f in finals:
            staged.temp(f).write_text(f.name)
        staged.commit()
    temps = {staged.temp(f).name for f in finals}
    assert {name for kind, name in log[:2] if kind == "sync"} == temps
    assert log[2:] == [("rename", "e.tif"), ("rename", "e.json"), ("sync", tmp_path.name)]

    def failing(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(raster_io.os, "fsync", failing)
    final = tmp_path / "f.tif"
    with pytest.raises(OutputError, match="f.tif: write failed: input/output error"):
        with raster_io.StagedOutputs([final]) as staged:
            staged.temp(final).write_text("x")
            staged.commit()
    assert not final.exists() and not staged.temp(final).exists()


# ---------------------------------------------------------------- stride map


def test_write_stride_map(tmp_path, make_scene):
    scene, _ = make_scene(70, 45, bands=2)
    info = _info(scene)
    strides = np.array([[1, 2], [4, 0], [8, 1]])
    out = tmp_path / "s.stride.tif"
    raster_io.write_stride_map(out, strides, info, 32, {"SATCONV_VERSION": "x"})
    with rasterio.open(out) as ds:
        assert ds.count == 1 and ds.dtypes == ("uint8",)
        assert (ds.height, ds.width) == (3, 2)
        assert ds.crs == CRS_UTM33N
        assert ds.transform.almost_equals(TRANSFORM @ Affine.scale(32))
        # stride-map pixel (row 2, col 1) starts at scene pixel (row 64, col 32)
        assert ds.transform @ (1, 2) == pytest.approx(TRANSFORM @ (32, 64))
        np.testing.assert_array_equal(ds.read(1), strides)
        cmap = ds.colormap(1)
        colours = {cmap[s] for s in (0, 1, 2, 4, 8)}
        assert len(colours) == 5  # every stride, and skipped, has its own colour
        assert ds.colorinterp[0] == rasterio.enums.ColorInterp.palette
        assert ds.tags()["SATCONV_VERSION"] == "x"


def test_stride_map_skipped_tiles_are_transparent(tmp_path, make_scene):
    scene, _ = make_scene(40, 40)
    out = tmp_path / "s.stride.tif"
    raster_io.write_stride_map(out, np.array([[1, 0], [0, 2]]), _info(scene), 32, {})
    with rasterio.open(out) as ds:
        assert ds.colormap(1)[0][3] == 0 or ds.nodata == 0


def test_write_stride_map_rotated_transform(tmp_path, write_tif):
    rot = Affine(8.0, 2.0, 1000.0, 1.5, -9.0, 5000.0)
    info = _info(write_tif(np.zeros((1, 10, 10), np.uint8), transform=rot))
    out = tmp_path / "r.tif"
    raster_io.write_stride_map(out, np.ones((3, 3), int), info, 4, {})
    with rasterio.open(out) as ds:
        for r, c in [(0, 0), (1, 2), (3, 3)]:
            assert ds.transform @ (c, r) == pytest.approx(rot @ (4 * c, 4 * r))


def test_read_stride_map_shape_mismatch_raises_plan_error(tmp_path, make_scene,
                                                          write_stride_map):
    scene, _ = make_scene(70, 45)
    path = write_stride_map(np.ones((2, 2)), scene, 32)
    with pytest.raises(PlanError) as info:
        raster_io.read_stride_map(path, (3, 2))
    assert str(path) in str(info.value) and "2x2" in str(info.value)
    assert info.value.exit_code == 1
    assert raster_io.read_stride_map(path, (2, 2)).tolist() == [[1, 1], [1, 1]]


def test_read_stride_map_rejects_multiband_and_missing(tmp_path, write_tif):
    two = write_tif(np.ones((2, 3, 2), np.uint8), name="two.tif")
    with pytest.raises(PlanError, match="1 band"):
        raster_io.read_stride_map(two, (3, 2))
    with pytest.raises(PlanError, match="no such file"):
        raster_io.read_stride_map(tmp_path / "missing.tif", (3, 2))


def _map(path: Path, data: np.ndarray, crs: object = None, transform: Affine | None = None,
         gcps: tuple[list, object] | None = None, nodata: float | None = None) -> Path:
    """A hand-written stride map (rasterio only): the georeferencing given, nothing else."""
    arr = np.asarray(data)
    profile: dict[str, object] = {"driver": "GTiff", "width": arr.shape[1],
                                  "height": arr.shape[0], "count": 1, "dtype": arr.dtype.name,
                                  "nodata": nodata}
    if transform is not None:
        profile.update(crs=crs, transform=transform)
    elif crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        if gcps is not None:
            dst.gcps = gcps
        dst.write(arr, 1)
    return path


def test_read_stride_map_refuses_another_crs(tmp_path, write_tif):
    # 64x64 scene on TRANSFORM (10 m, UTM 33N), tiles of 32: 2x2, map pixel 320 m
    info = _info(write_tif(np.zeros((1, 64, 64), np.uint8)))
    grid = TRANSFORM @ Affine.scale(32)
    other = _map(tmp_path / "m.tif", np.ones((2, 2), np.uint8), "EPSG:3857", grid)
    with pytest.raises(PlanError) as err:
        raster_io.read_stride_map(other, (2, 2), info, 32)
    msg = str(err.value)
    assert str(other) in msg and "EPSG:3857" in msg and "EPSG:32633" in msg
    assert "\n" not in msg and err.value.exit_code == 1
    same = _map(tmp_path / "ok.tif", np.ones((2, 2), np.uint8), CRS_UTM33N, grid)
    assert raster_io.read_stride_map(same, (2, 2), info, 32).tolist() == [[1, 1], [1, 1]]


def test_read_stride_map_refuses_a_shifted_grid_within_tolerance_accepts(tmp_path, write_tif):
    info = _info(write_tif(np.zeros((1, 64, 64), np.uint8)))
    grid = Affine(320.0, 0.0, 399960.0, 0.0, -320.0, 5200020.0)  # TRANSFORM x 32, by hand
    shifted = _map(tmp_path / "s.tif", np.ones((2, 2), np.uint8), CRS_UTM33N,
                   Affine.translation(100.0, 0.0) @ grid)
    with pytest.raises(PlanError, match="s.tif: stride map's transform does not match"):
        raster_io.read_stride_map(shifted, (2, 2), info, 32)
    near = _map(tmp_path / "n.tif", np.ones((2, 2), np.uint8), CRS_UTM33N,
                Affine.translation(320.0 * 1e-7, 0.0) @ grid)   # 1e-7 of a map pixel
    assert raster_io.read_stride_map(near, (2, 2), info, 32).tolist() == [[1, 1], [1, 1]]


def test_read_stride_map_names_the_tile_size_it_was_made_for(tmp_path, write_tif):
    info = _info(write_tif(np.zeros((1, 64, 64), np.uint8)))
    # made for tiles of 32 (2x2, pixel 320 m); tiles of 33 give 2x2 too: the count agrees
    for32 = _map(tmp_path / "t32.tif", np.ones((2, 2), np.uint8), CRS_UTM33N,
                 Affine(320.0, 0.0, 399960.0, 0.0, -320.0, 5200020.0))
    with pytest.raises(PlanError, match="made for tile_size 32, the config has 33"):
        raster_io.read_stride_map(for32, (2, 2), info, 33)
    # made for tiles of 16 (4x4, pixel 160 m), the config has 32 (2x2): both named
    for16 = _map(tmp_path / "t16.tif", np.ones((4, 4), np.uint8), CRS_UTM33N,
                 Affine(160.0, 0.0, 399960.0, 0.0, -160.0, 5200020.0))
    with pytest.raises(PlanError) as err:
        raster_io.read_stride_map(for16, (2, 2), info, 32)
    msg = str(err.value)
    assert "4x4" in msg and "2x2" in msg and "made for tile_size 16, the config has 32" in msg


def test_read_stride_map_without_georeferencing_is_taken_on_its_size(tmp_path, write_tif):
    info = _info(write_tif(np.zeros((1, 64, 64), np.uint8)))
    plain = _map(tmp_path / "p.tif", np.array([[1, 2], [4, 0]], np.uint8))
    assert raster_io.read_stride_map(plain, (2, 2), info, 32).tolist() == [[1, 2], [4, 0]]
    with pytest.raises(PlanError, match="2x2 tiles, the scene needs 3x3"):
        raster_io.read_stride_map(plain, (3, 3), info, 20)


def test_read_stride_map_of_a_scene_without_georeferencing(tmp_path, write_tif):
    """A scene with an identity transform: its map is scaled by the tile size (what
    satconv writes) or plain; a shifted one is refused."""
    info = _info(write_tif(np.zeros((1, 40, 40), np.uint8), crs=None,
                           transform=Affine.identity()))
    ones = np.ones((2, 2), np.uint8)
    scaled = _map(tmp_path / "a.tif", ones, None, Affine.scale(20))
    assert raster_io.read_stride_map(scaled, (2, 2), info, 20).tolist() == [[1, 1], [1, 1]]
    shifted = _map(tmp_path / "b.tif", ones, None, Affine(20, 0, 20, 0, 20, 0))
    with pytest.raises(PlanError, match="b.tif: stride map's transform does not match"):
        raster_io.read_stride_map(shifted, (2, 2), info, 20)


def test_read_stride_map_of_a_gcp_scene(tmp_path):
    gcps = [GroundControlPoint(0, 0, -75.0, 40.0), GroundControlPoint(0, 40, -74.9, 40.0),
            GroundControlPoint(40, 0, -75.0, 39.9), GroundControlPoint(40, 40, -74.9, 39.9)]
    scene = _map(tmp_path / "scene.tif", np.zeros((40, 40), np.uint8),
                 gcps=(gcps, CRS.from_epsg(4326)))
    info = _info(scene)
    assert info.gcps

    def placed(name: str, div: float, dx: float = 0.0) -> Path:
        mine = [GroundControlPoint(g.row / div, g.col / div, g.x + dx, g.y) for g in gcps]
        return _map(tmp_path / name, np.ones((2, 2), np.uint8),
                    gcps=(mine, CRS.from_epsg(4326)))

    assert raster_io.read_stride_map(placed("ok.tif", 20), (2, 2), info, 20).sum() == 4
    with pytest.raises(PlanError, match="ground control points do not match"):
        raster_io.read_stride_map(placed("x.tif", 20, dx=0.01), (2, 2), info, 20)
    with pytest.raises(PlanError, match="made for tile_size 10, the config has 20"):
        raster_io.read_stride_map(placed("t10.tif", 10), (2, 2), info, 20)


def test_read_stride_map_checks_values_as_stored_and_names_the_tile(tmp_path):
    neg = _map(tmp_path / "neg.tif", np.array([[1, 2], [4, -1]], np.int16))
    with pytest.raises(PlanError) as err:
        raster_io.read_stride_map(neg, (2, 2))
    assert "holds -1" in str(err.value) and "tile row 1, col 1" in str(err.value)
    assert "255" not in str(err.value)
    frac = _map(tmp_path / "frac.tif", np.array([[1, 2.5], [1, 1]], np.float32))
    with pytest.raises(PlanError, match=r"whole numbers >= 0; tile row 0, col 1 holds 2\.5"):
        raster_io.read_stride_map(frac, (2, 2))
    big = _map(tmp_path / "big.tif", np.array([[1, 2], [1, 300]], np.int16))
    with pytest.raises(PlanError) as err:
        raster_io.read_stride_map(big, (2, 2), allowed=(1, 2, 4))
    assert "[300]" in str(err.value) and "tile row 1, col 1" in str(err.value)
    whole = _map(tmp_path / "whole.tif", np.array([[1, 2], [4, 0]], np.float64))
    assert raster_io.read_stride_map(whole, (2, 2), allowed=(1, 2, 4)).tolist() == [
        [1, 2], [4, 0]]


@pytest.mark.parametrize(("dtype", "nodata"), [("uint8", 255), ("int16", -9999),
                                               ("float32", -9999), ("float32", float("nan")),
                                               ("uint8", 4)])
def test_read_stride_map_nodata_cells_are_skipped_tiles(tmp_path, dtype, nodata):
    data = np.array([[1, nodata], [2, 4]], dtype=dtype)
    path = _map(tmp_path / "nd.tif", data, nodata=nodata)
    assert raster_io.read_stride_map(path, (2, 2), allowed=(1, 2, 4, 8)).tolist() == (
        [[1, 0], [2, 0]] if nodata == 4 else [[1, 0], [2, 4]])


# ---------------------------------------------------------------- inputs


def test_open_input_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.tif: no such file"):
        with raster_io.open_input(tmp_path / "missing.tif"):
            pass
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="junk.tif"):
        with raster_io.open_input(junk):
            pass
    with pytest.raises(InputError, match="not a regular file"):
        with raster_io.open_input(tmp_path):
            pass


def test_describe(write_tif):
    data = np.zeros((3, 5, 7), dtype=np.int16)
    path = write_tif(data, nodata=-1, descriptions=["red", None, "nir"])
    info = _info(path)
    assert (info.width, info.height, info.count, info.dtype) == (7, 5, 3, "int16")
    assert info.nodata == -1 and info.crs == CRS_UTM33N and info.transform == TRANSFORM
    assert info.descriptions[0] == "red" and info.descriptions[2] == "nir"


@pytest.mark.parametrize("cval", [0.0, -12.5])
def test_read_indexed_matches_fancy_indexing(make_scene, cval):
    scene, data = make_scene(20, 30, bands=2, dtype="int16", seed=4)
    rows = np.array([3, 2, 1, 0, 0, 1, -1, 19, 18, 5])
    cols = np.array([-1, -1, 0, 1, 2, 29, 28, 0, 10, 11, 12])
    with raster_io.open_input(scene) as ds:
        got, valid = raster_io.read_indexed(ds, raster_io.describe(ds), rows, cols, cval)
    assert valid is None
    expected = np.full((2, rows.size, cols.size), cval)
    ri, ci = np.flatnonzero(rows >= 0), np.flatnonzero(cols >= 0)
    expected[np.ix_([0, 1], ri, ci)] = data[np.ix_([0, 1], rows[ri], cols[ci])]
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)


def test_valid_mask():
    ints = np.array([[0, 1, 2]], dtype=np.uint8)
    assert raster_io.valid_mask(ints, 0).tolist() == [[False, True, True]]
    assert raster_io.valid_mask(ints, None).tolist() == [[True, True, True]]
    fl = np.array([np.nan, -9999.0, 3.0], dtype=np.float32)
    assert raster_io.valid_mask(fl, -9999.0).tolist() == [False, False, True]
    assert raster_io.valid_mask(fl, float("nan")).tolist() == [False, True, True]


def test_output_nodata(write_tif):
    def nd(nodata, dtype, out):
        return raster_io.output_nodata(
            _info(write_tif(np.zeros((1, 2, 2), dtype), nodata=nodata)), out)

    assert np.isnan(nd(None, "uint8", "float32"))
    assert nd(None, "uint16", "uint16") is None  # every pixel valid: nothing reserved
    assert np.isnan(nd(-1e300, "float64", "float32"))
    assert nd(0, "uint8", "float32") == 0.0
    assert nd(0, "uint8", "uint8") == 0
    assert nd(65535, "uint16", "float32") == 65535.0
    assert nd(-9999, "int16", "float32") == -9999.0
    assert np.isnan(nd(float("nan"), "float32", "float32"))


def test_check_output_dir(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        raster_io.check_output_dir(tmp_path / "nope" / "out.tif")
    raster_io.check_output_dir(tmp_path / "out.tif")


# ---------------------------------------------------------------- metadata carried over


def _run(src: Path, out: Path, **cfg: object) -> Path:
    from satconv import api, config

    api.run_scene(src, config.from_dict(cfg), output=out)
    return out


def test_palette_input_gives_a_grey_output_and_point_pixels_stay_points(tmp_path):
    """Filtered palette indices are values: the output is grey, not 'palette' without a
    colour table. AREA_OR_POINT=Point says where the transform points: kept, or the output
    would sit half a pixel off the input where GDAL honours it."""
    src = tmp_path / "p.tif"
    with rasterio.open(src, "w", driver="GTiff", width=40, height=30, count=1, dtype="uint8",
                       crs=CRS_UTM33N, transform=TRANSFORM) as ds:
        ds.write((np.arange(1200).reshape(1, 30, 40) % 2).astype("uint8"))
        ds.write_colormap(1, {0: (0, 0, 0, 255), 1: (255, 0, 0, 255)})
        ds.update_tags(AREA_OR_POINT="Point")
    out = _run(src, tmp_path / "o.tif")
    with rasterio.open(out) as ds:
        assert ds.colorinterp == (rasterio.enums.ColorInterp.gray,)
        assert ds.tags()["AREA_OR_POINT"] == "Point"
    with rasterio.Env(GTIFF_POINT_GEO_IGNORE=True), rasterio.open(src) as a, \
            rasterio.open(out) as b:
        assert a.transform == b.transform


def test_bands_with_different_nodata_values_are_refused(tmp_path):
    """A VRT can give each band its own nodata value; satconv has one per input, and would
    convolve the other bands' nodata as data: refused with one line."""
    base = tmp_path / "b.tif"
    with rasterio.open(base, "w", driver="GTiff", width=8, height=8, count=2,
                       dtype="float32") as ds:
        ds.write(np.ones((2, 8, 8), np.float32))
    bands = "".join(
        f'<VRTRasterBand dataType="Float32" band="{b}"><NoDataValue>{-b}</NoDataValue>'
        f"<SimpleSource><SourceFilename relativeToVRT=\"1\">b.tif</SourceFilename>"
        f"<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>" for b in (1, 2))
    vrt = tmp_path / "v.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="8" rasterYSize="8">{bands}</VRTDataset>')
    policy = raster_io.InputPolicy(drivers=("GTiff", "VRT"))
    with raster_io.open_input(vrt, policy) as ds, \
            pytest.raises(InputError, match="different nodata values"):
        raster_io.describe(ds)


@pytest.mark.parametrize("name", [
    ".a.tif.123.partial", ".a.tif.123.partial.body", ".a.tif.satconv-part-00003.tif",
    ".a.tif.satconv-part-00003.tif.4242.k2x9_q.partial",
    ".a.tif.satconv-part-00003.tif.4242.12345678.partial",  # mkstemp's letters may be digits
])
def test_messages_name_a_staged_or_part_file_by_its_final_name(name, tmp_path):
    assert raster_io.display_name(tmp_path / name) == tmp_path / "a.tif"


def test_a_crs_without_a_code_is_named_not_cut_mid_word():
    """Messages name a CRS by its EPSG code, else its WKT name, else its PROJ parameters
    cut between two of them."""
    from rasterio.crs import CRS

    from satconv.raster_io import _crs_name

    assert _crs_name(CRS.from_epsg(32618)) == "EPSG:32618"
    named = CRS.from_wkt(
        'PROJCS["my zone",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,'
        '298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],'
        'PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],'
        'PARAMETER["central_meridian",-75.3],PARAMETER["scale_factor",0.9996],'
        'PARAMETER["false_easting",500000],PARAMETER["false_northing",0],UNIT["metre",1]]')
    assert _crs_name(named) == '"my zone" (no EPSG code)'
    proj = "+proj=tmerc +lat_0=0 +lon_0=-75.3 +k=0.9996 +x_0=500000 +y_0=0 +datum=WGS84 +units=m"
    text = _crs_name(CRS.from_proj4(proj))
    assert text.endswith(" ...") and len(text) <= 84
    kept = text.removesuffix(" ...").split(" ")
    assert kept and all(p in CRS.from_proj4(proj).to_proj4().split(" ") for p in kept)
