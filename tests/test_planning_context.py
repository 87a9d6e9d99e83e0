"""Context: regions of interest from a mask raster, GeoJSON geometries (any CRS) and
detection boxes force the inside stride on every tile they touch; skip_outside skips the rest.
Expected tiles are derived here from pixel boxes, with GDAL's coordinate transforms only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.warp import transform as warp_transform

from satconv import api, config
from satconv.errors import ConfigError, InputError
from satconv.scripts.cli import cli

try:
    from . import policy_support as ps
except ImportError:  # tests/ run as a plain folder
    import policy_support as ps

TILE = 64


def tiles_of(row0, row1, col0, col1, tile=TILE):
    """Tiles a pixel box [row0, row1) x [col0, col1) overlaps."""
    return {(ty, tx) for ty in range(row0 // tile, (row1 - 1) // tile + 1)
            for tx in range(col0 // tile, (col1 - 1) // tile + 1)}


def lonlat_ring(path, row0, row1, col0, col1):
    """The pixel box's corners as a closed lon/lat ring (GDAL transform of the scene's CRS)."""
    with rasterio.open(path) as ds:
        cols = [col0, col1, col1, col0, col0]
        rows = [row0, row0, row1, row1, row0]
        xs, ys = rasterio.transform.xy(ds.transform, rows, cols, offset="ul")
        lon, lat = warp_transform(ds.crs, "EPSG:4326", xs, ys)
    return [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]


def run(scene, tmp_path, cfg, name="out"):
    s = config.load(cfg) if not isinstance(cfg, config.Settings) else cfg
    out = tmp_path / f"{name}.tif"
    report = api.run_scene(scene, s, output=out, overwrite=True)
    return ps.read_band(tmp_path / f"{name}.stride.tif"), out, report


def write_yaml(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# boxes placed at least 5 pixels from any tile border (no reprojection rounding can move them
# to another tile): pixel rows/cols in RGB.byte.tif (791 x 718, UTM 18N)
POLY_BOX = (70, 120, 200, 300)        # rows 70-120, cols 200-300 -> tiles (1, 3..4)
DETECTION = (520, 400, 90, 30)        # x, y, w, h -> rows 400-430, cols 520-610: (6, 8..9)


@pytest.fixture
def rgb():
    return ps.shared_data() / "RGB.byte.tif"


def test_geojson_in_4326_lands_on_the_right_tiles_of_a_utm_scene(rgb, tmp_path):
    geo = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {},
         "geometry": {"type": "Polygon", "coordinates": [lonlat_ring(rgb, *POLY_BOX)]}}]}
    (tmp_path / "roi.geojson").write_text(json.dumps(geo))
    x, y, w, h = DETECTION
    (tmp_path / "dets.json").write_text(json.dumps([{"bbox": [x, y, w, h], "score": 0.9,
                                                     "category": "ship"}]))
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\nstrides: [1, 2, 4]\n"
                     "context: {geometries: roi.geojson, detections: dets.json}\n")
    strides, _, report = run(rgb, tmp_path, cfg)
    want = tiles_of(*POLY_BOX) | tiles_of(y, y + h, x, x + w)
    got = {tuple(t) for t in np.argwhere(strides == 1)}
    assert want <= got
    # tiles that are 1 for another reason are textured; every wanted tile is forced, and the
    # plan reports exactly the tiles the regions touch
    assert report.plan["context"]["tiles_inside"] == len(want)
    assert report.plan["context"]["geometries"]["tiles"] == len(tiles_of(*POLY_BOX))
    assert report.plan["context"]["detections"]["tiles"] == 2


@pytest.mark.parametrize("crs", ["EPSG:32618", "EPSG:4326"])
def test_detection_boxes_in_map_coordinates_land_on_the_right_tiles(rgb, tmp_path, crs):
    """With ``bbox_crs`` the boxes are map coordinates of that CRS (x east, y north): in the
    scene's own UTM zone and in lon/lat (reprojected), one box covering the pixel box
    DETECTION forces exactly its tiles."""
    x, y, w, h = DETECTION
    ring = np.array(lonlat_ring(rgb, y, y + h, x, x + w))
    if crs == "EPSG:32618":
        with rasterio.open(rgb) as ds:
            ex, ny = warp_transform("EPSG:4326", ds.crs, ring[:, 0], ring[:, 1])
        ring = np.column_stack([ex, ny])
    x0, y0 = ring.min(axis=0)
    x1, y1 = ring.max(axis=0)
    # (the lon/lat box of a UTM box is a little larger: keep it inside the same tiles)
    assert DETECTION[0] % TILE >= 5 and (DETECTION[0] + DETECTION[2]) % TILE <= TILE - 5
    (tmp_path / "dets.json").write_text(json.dumps([{"bbox": [x0, y0, x1, y1]}]))
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\nstrides: [1, 2, 4]\n"
                     f"context: {{detections: dets.json, bbox_format: xyxy, bbox_crs: '{crs}',"
                     " skip_outside: true}\n")
    strides, _, report = run(rgb, tmp_path, cfg)
    assert {tuple(t) for t in np.argwhere(strides > 0)} == tiles_of(y, y + h, x, x + w)
    assert (strides[strides > 0] == 1).all()
    assert report.plan["context"]["detections"]["tiles"] == 2


def test_a_bbox_crs_gdal_does_not_know_is_a_config_error(rgb, tmp_path):
    (tmp_path / "dets.json").write_text(json.dumps([{"bbox": [1, 2, 3, 4]}]))
    cfg = write_yaml(tmp_path / "c.yaml", "context: {detections: dets.json, "
                     "bbox_crs: 'EPSG:999999'}\n")
    result = CliRunner().invoke(cli, ["run", str(rgb), "-c", str(cfg), "-o",
                                      str(tmp_path / "o.tif")])
    assert result.exit_code == 2
    assert "context.bbox_crs: EPSG:999999" in result.stderr
    assert result.stderr.count("\n") == 1


def test_regions_force_the_stride_with_every_policy(rgb, tmp_path):
    """A scene whose policy alone puts every tile coarse: the region's tiles get 1 anyway."""
    geo = {"type": "Polygon", "coordinates": [lonlat_ring(rgb, *POLY_BOX)]}
    (tmp_path / "roi.geojson").write_text(json.dumps(geo))
    want = tiles_of(*POLY_BOX)
    for i, policy in enumerate(["{type: variance, target_error: 0.5}",
                                "{type: budget, fraction: 0.05}",
                                "{type: refine, tolerance: 1000}"]):
        cfg = write_yaml(tmp_path / f"c{i}.yaml",
                         f"tile_size: {TILE}\nstrides: [1, 2, 4]\npolicy: {policy}\n"
                         "context: {geometries: roi.geojson}\n")
        strides, _, _ = run(rgb, tmp_path, cfg, f"out{i}")
        assert {tuple(t) for t in np.argwhere(strides == 1)} == want, policy
        assert (strides[strides > 0] >= 1).all()


def test_skip_outside_skips_tiles_and_writes_nodata(rgb, tmp_path):
    x, y, w, h = DETECTION
    (tmp_path / "d.json").write_text(json.dumps({"detections": [{"bbox": [x, y, x + w, y + h]}]}))
    cfg = write_yaml(tmp_path / "c.yaml",
                     f"tile_size: {TILE}\ncontext: {{detections: d.json, bbox_format: xyxy, "
                     "skip_outside: true}\noutput: {dtype: float64}\n")
    strides, out, _ = run(rgb, tmp_path, cfg)
    want = tiles_of(y, y + h, x, x + w)
    assert {tuple(t) for t in np.argwhere(strides > 0)} == want
    assert (strides[tuple(np.array(sorted(want)).T)] == 1).all()
    values = ps.read_output(out)
    inside = np.zeros(values.shape[1:], dtype=bool)
    for ty, tx in want:
        inside[ty * TILE:(ty + 1) * TILE, tx * TILE:(tx + 1) * TILE] = True
    assert np.isnan(values[:, ~inside]).all()
    data, valid = ps.read_scene(rgb)
    ref = ps.dense(data, valid, config.load(cfg).kernel.array())
    np.testing.assert_allclose(values[:, inside], ref[:, inside], rtol=1e-9, atol=1e-6)


def test_mask_raster_on_the_scene_grid(tmp_path):
    scene = ps.write_tif(tmp_path / "flat.tif", np.full((200, 300), 1000, dtype=np.float32))
    mask = np.zeros((200, 300), dtype=np.uint8)
    mask[70, 130] = 1           # one pixel: tile (1, 2)
    mask[150:160, 10:20] = 255  # tile (2, 0)
    ps.write_tif(tmp_path / "roi.tif", mask)
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\ncontext: {{mask: roi.tif}}\n")
    strides, _, _ = run(scene, tmp_path, cfg)
    assert {tuple(t) for t in np.argwhere(strides == 1)} == {(1, 2), (2, 0)}
    assert (strides[strides != 1] == 4).all()   # flat elsewhere: the coarsest stride


def test_mask_raster_in_another_crs_and_grid(tmp_path):
    """A mask in EPSG:4326 with coarse pixels over a UTM 33N scene: its region is reprojected
    onto the tile grid."""
    transform = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 5200020.0)
    scene = ps.write_tif(tmp_path / "s.tif", np.full((256, 384), 7, dtype=np.float32),
                         transform=transform)
    # the region: scene pixels rows 75-115, cols 200-250 -> tiles (1, 3)
    lonlat = np.array(lonlat_ring(scene, 75, 115, 200, 250))
    west, south = lonlat.min(axis=0)
    east, north = lonlat.max(axis=0)
    # one mask pixel = the lon/lat bounding box (slightly larger than the pixel box)
    m = np.zeros((3, 3), dtype=np.uint8)
    m[1, 1] = 1
    px, py = east - west, north - south
    ps.write_tif(tmp_path / "roi.tif", m, crs="EPSG:4326",
                 transform=Affine(px, 0, west - px, 0, -py, north + py))
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\ncontext: {{mask: roi.tif}}\n")
    strides, _, _ = run(scene, tmp_path, cfg)
    assert {tuple(t) for t in np.argwhere(strides == 1)} == tiles_of(75, 115, 200, 250)


def test_relative_paths_resolve_against_the_config_folder(rgb, tmp_path, monkeypatch):
    folder = tmp_path / "cfg"
    folder.mkdir()
    x, y, w, h = DETECTION
    (folder / "d.json").write_text(json.dumps([[x, y, w, h]]))
    cfg = write_yaml(folder / "c.yaml", f"tile_size: {TILE}\ncontext: {{detections: d.json}}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(cli, ["run", str(rgb), "-c", str(cfg), "-o",
                                      str(tmp_path / "o.tif"), "-q"])
    assert result.exit_code == 0, result.output
    strides = ps.read_band(tmp_path / "o.stride.tif")
    assert tiles_of(y, y + h, x, x + w) <= {tuple(t) for t in np.argwhere(strides == 1)}


def test_bad_context_inputs_fail_with_one_line(rgb, tmp_path):
    with pytest.raises(ConfigError, match=r"context.inside_stride"):
        config.from_dict({"strides": [1, 2], "context": {"inside_stride": 4}})
    cases = {
        "bad.json": "{not json",
        "nobox.json": json.dumps([{"score": 1.0}]),
        "point.geojson": json.dumps({"type": "Topology"}),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        key = "detections" if name.endswith(".json") else "geometries"
        cfg = write_yaml(tmp_path / f"{name}.yaml", f"context: {{{key}: {name}}}\n")
        # a problem of the file itself is a config error (exit 2), for the scene's run too
        with pytest.raises(ConfigError) as info:
            api.plan_scene(rgb, config.load(cfg))
        assert name in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name, text", [
    ("bad.json", "{not json"),
    ("nobox.json", json.dumps([{"score": 1.0}])),
    ("topology.geojson", json.dumps({"type": "Topology"})),
    ("nullgeom.geojson", json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": None}]})),
    ("crsstring.geojson", json.dumps({"type": "Polygon", "crs": "EPSG:32618",
                                      "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]})),
])
def test_a_bad_context_file_fails_the_batch_once_before_any_input(rgb, tmp_path, name, text):
    """Shared by every scene: exit 2, one line naming the file, by ``config validate`` too."""
    (tmp_path / name).write_text(text)
    key = "detections" if name.endswith(".json") else "geometries"
    cfg = write_yaml(tmp_path / "c.yaml", f"context: {{{key}: {name}}}\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["config", "validate", str(cfg)])
    assert result.exit_code == 2 and name in result.output
    result = runner.invoke(cli, ["run", str(rgb), str(rgb), "-c", str(cfg), "--out-dir",
                                 str(tmp_path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "unexpected" not in lines[0]
    assert not list(tmp_path.glob("*.satconv.json"))


def utm_ring(path, row0, row1, col0, col1):
    """The pixel box's corners as a closed ring in the scene's own CRS (its affine)."""
    with rasterio.open(path) as ds:
        xs, ys = rasterio.transform.xy(ds.transform, [row0, row0, row1, row1, row0],
                                       [col0, col1, col1, col0, col0], offset="ul")
        return [[float(a), float(b)] for a, b in zip(xs, ys, strict=True)], ds.crs.to_string()


@pytest.mark.parametrize("case", ["utm", "lat100"])
def test_geojson_coordinates_that_are_not_lonlat_are_a_config_error(rgb, tmp_path, case):
    """Coordinates taken as EPSG:4326 (no crs member) must be longitudes and latitudes: UTM
    metres, or a latitude of 100, are named as the file's problem, not the scene's."""
    ring, crs = utm_ring(rgb, *POLY_BOX)
    if case == "lat100":
        ring = [[-77.5, 100.0], [-77.4, 100.0], [-77.4, 24.9], [-77.5, 100.0]]
    (tmp_path / "roi.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\ncontext: {{geometries: "
                     "roi.geojson}\n")
    with pytest.raises(ConfigError, match=r"roi.geojson: coordinates are not longitude/"
                       r"latitude .*add a crs member"):
        api.plan_scene(rgb, config.load(cfg))
    result = CliRunner().invoke(cli, ["run", str(rgb), "-c", str(cfg), "-o",
                                      str(tmp_path / "o.tif")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "roi.geojson: coordinates are not longitude" in lines[0]
    if case == "utm":  # the same metres with a crs member naming their CRS: where they are
        (tmp_path / "roi.geojson").write_text(json.dumps({
            "type": "Polygon", "coordinates": [ring],
            "crs": {"type": "name", "properties": {"name": crs}}}))
        skip = write_yaml(tmp_path / "s.yaml", f"tile_size: {TILE}\ncontext: {{geometries: "
                          "roi.geojson, skip_outside: true}\n")
        strides, _, _ = run(rgb, tmp_path, skip)
        assert {tuple(t) for t in np.argwhere(strides > 0)} == tiles_of(*POLY_BOX)


def test_a_reprojection_failure_names_the_geometries_file(rgb, tmp_path, monkeypatch):
    """Whatever GDAL or PROJ raise while reprojecting is one line naming the file."""
    import rasterio.warp

    class ProjFailure(Exception):
        pass

    def fail(*args, **kwargs):
        raise ProjFailure("PROJ: utm: Invalid latitude")

    (tmp_path / "roi.geojson").write_text(json.dumps(
        {"type": "Polygon", "coordinates": [lonlat_ring(rgb, *POLY_BOX)]}))
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\ncontext: {{geometries: "
                     "roi.geojson}\n")
    monkeypatch.setattr(rasterio.warp, "transform_geom", fail)
    with pytest.raises(InputError, match=r"roi.geojson: cannot reproject .*Invalid latitude"):
        api.plan_scene(rgb, config.load(cfg))


def test_a_mask_without_crs_of_the_scene_size_is_on_the_scene_grid(tmp_path):
    """An ML segmentation mask: no CRS, the scene's size; the scene has a CRS."""
    scene = ps.write_tif(tmp_path / "flat.tif", np.full((200, 300), 1000, dtype=np.float32),
                         crs="EPSG:32633")
    mask = np.zeros((200, 300), dtype=np.uint8)
    mask[10:12, 250:260] = 1    # rows 10-12, cols 250-260
    mask[130, 70] = 7           # one pixel
    ps.write_tif(tmp_path / "roi.tif", mask, crs=None)
    with rasterio.open(tmp_path / "roi.tif") as ds:
        assert ds.crs is None
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\ncontext: {{mask: roi.tif}}\n")
    strides, _, report = run(scene, tmp_path, cfg)
    want = tiles_of(10, 12, 250, 260) | tiles_of(130, 131, 70, 71)
    assert {tuple(t) for t in np.argwhere(strides == 1)} == want
    assert (strides[strides != 1] == 4).all()
    assert "warnings" not in report.plan["context"]


def test_a_mask_without_crs_of_another_size_is_refused(tmp_path):
    scene = ps.write_tif(tmp_path / "flat.tif", np.full((200, 300), 1000, dtype=np.float32))
    ps.write_tif(tmp_path / "roi.tif", np.ones((100, 300), dtype=np.uint8), crs=None)
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\ncontext: {{mask: roi.tif}}\n")
    with pytest.raises(InputError, match=r"roi.tif: .*scene's size 300x200, not 300x100"):
        api.plan_scene(scene, config.load(cfg))


@pytest.mark.parametrize(("text", "key"), [
    ("context:\n  skip_outside: true\n", r"context.skip_outside needs a mask, geometries or "
     r"detections \(line 3\)"),
    ("context:\n  inside_stride: 1\n", r"context needs a mask, geometries or detections"),
    ("context: {}\n", r"context needs a mask"),
])
def test_a_context_without_regions_is_a_config_error(tmp_path, text, key):
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\n{text}")
    with pytest.raises(ConfigError, match=key):
        config.load(cfg)
    result = CliRunner().invoke(cli, ["config", "validate", str(cfg)])
    assert result.exit_code == 2


def _off_scene_sources(rgb, tmp_path):
    """Each kind of source, with regions that miss the scene (or none at all)."""
    ring = lonlat_ring(rgb, -400, -300, 100, 200)        # above the scene's first row
    (tmp_path / "outside.geojson").write_text(json.dumps({"type": "FeatureCollection",
                                                          "features": [{
        "type": "Feature", "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    (tmp_path / "empty.geojson").write_text(json.dumps({"type": "FeatureCollection",
                                                        "features": []}))
    (tmp_path / "dets.json").write_text(json.dumps([[2000, 2000, 50, 50]]))
    with rasterio.open(rgb) as ds:
        crs, t = ds.crs, ds.transform
    # a mask on the scene's CRS, shifted 2000 pixels east of it
    ps.write_tif(tmp_path / "mask.tif", np.ones((50, 50), dtype=np.uint8), crs=crs.to_string(),
                 transform=t @ Affine.translation(2000, 0))
    return {"geometries": "outside.geojson", "mask": "mask.tif", "detections": "dets.json"}


@pytest.mark.parametrize("key", ["geometries", "empty", "mask", "detections"])
def test_regions_that_miss_the_scene_are_a_warning(rgb, tmp_path, key):
    """The run succeeds, says so on stderr (the scene and the file) and in the report."""
    files = _off_scene_sources(rgb, tmp_path)
    files["empty"] = "empty.geojson"
    name = files[key]
    kind = "geometries" if key == "empty" else key
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\ncontext: {{{kind}: {name}, "
                     "skip_outside: true}\n")
    out = tmp_path / "o.tif"
    result = CliRunner().invoke(cli, ["run", str(rgb), "-c", str(cfg), "-o", str(out)])
    assert result.exit_code == 0, result.output
    warned = [ln for ln in result.stderr.splitlines() if "warning" in ln]
    assert len(warned) == 1 and str(rgb) in warned[0] and name in warned[0], result.stderr
    report = json.loads((tmp_path / "o.satconv.json").read_text())
    notes = report["plan"]["context"]["warnings"]
    assert len(notes) == 1 and name in notes[0]
    assert (ps.read_band(tmp_path / "o.stride.tif") == 0).all()   # skip_outside: all skipped
    # as a JSON event too
    result = CliRunner().invoke(cli, ["run", str(rgb), "-c", str(cfg), "-o", str(out),
                                      "--overwrite", "--log-format", "json"])
    events = [json.loads(ln) for ln in result.stderr.splitlines() if ln.startswith("{")]
    assert [e["message"] for e in events if e["event"] == "warning"] == notes
    # a region on the scene beside it: no warning
    x, y, w, h = DETECTION
    (tmp_path / "on.json").write_text(json.dumps([[x, y, w, h]]))
    both = write_yaml(tmp_path / "b.yaml", f"tile_size: {TILE}\ncontext: {{{kind}: {name}, "
                      "detections: on.json}\n" if kind != "detections" else
                      f"tile_size: {TILE}\ncontext: {{detections: on.json}}\n")
    result = CliRunner().invoke(cli, ["run", str(rgb), "-c", str(both), "-o", str(out),
                                      "--overwrite"])
    assert result.exit_code == 0
    assert ("warning" in result.stderr) == (kind != "detections"), result.stderr


@pytest.mark.parametrize("key", ["mask", "geometries", "detections"])
def test_a_missing_context_file_is_a_config_error(rgb, tmp_path, key):
    """Named once, with its key and line, before any input is read (exit 2), by ``config
    validate`` as by ``run``; not as a failure of every input of a batch."""
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\ncontext:\n  {key}: nosuch\n")
    with pytest.raises(ConfigError, match=rf"context.{key}: no such file: .*nosuch \(line 3\)"):
        config.load(cfg)
    runner = CliRunner()
    result = runner.invoke(cli, ["config", "validate", str(cfg)])
    assert result.exit_code == 2 and "nosuch" in result.output
    result = runner.invoke(cli, ["run", str(rgb), str(rgb), "-c", str(cfg), "--out-dir",
                                 str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.count("nosuch") == 1 and len(result.stderr.strip().splitlines()) == 1


def test_a_saved_plan_with_a_context_config_runs_as_saved_and_says_so(rgb, tmp_path):
    """``--plan`` executes the stride map as it is: a ``context:`` block in the config is
    not applied to it (the skipped tiles stay computed), and a warning says so."""
    x, y, w, h = DETECTION
    (tmp_path / "d.json").write_text(json.dumps([[x, y, w, h]]))
    cfg = write_yaml(tmp_path / "c.yaml", f"tile_size: {TILE}\nstrides: [1, 2, 4]\n"
                     "context: {detections: d.json, skip_outside: true}\n")
    plain = write_yaml(tmp_path / "p.yaml", f"tile_size: {TILE}\nstrides: [1, 2, 4]\n")
    saved = tmp_path / "saved.stride.tif"
    result = CliRunner().invoke(cli, ["plan", str(rgb), "-c", str(plain), "-o", str(saved),
                                      "-q"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "o.tif"
    result = CliRunner().invoke(cli, ["run", str(rgb), "-c", str(cfg), "--plan", str(saved),
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    warned = [ln for ln in result.stderr.splitlines() if "warning" in ln]
    assert len(warned) == 1 and str(saved) in warned[0] and "context:" in warned[0], \
        result.stderr
    np.testing.assert_array_equal(ps.read_band(tmp_path / "o.stride.tif"),
                                  ps.read_band(saved))
    result = CliRunner().invoke(cli, ["run", str(rgb), "-c", str(plain), "--plan", str(saved),
                                      "-o", str(out), "--overwrite"])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
