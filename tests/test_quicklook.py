"""Quicklooks: ``satconv run --quicklook`` and ``satconv preview``, checked in the PNG itself.

Expected values come from the known plan (a hand-written stride map executed with --plan),
from rasterio's reading of the scene and of the stride map's colour table, and from the
overlay formula documented in satconv.quicklook; never from satconv's own drawing code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFont
from rasterio.enums import ColorInterp

from satconv import quicklook
from satconv.scripts.cli import cli

from .conftest import tile_shape, write_geotiff

ROOT = Path(__file__).resolve().parents[1]
TS = 32
CONFIG = f"tile_size: {TS}\nstrides: [1, 2, 4, 8]\nkernel: {{type: gaussian, size: 3}}\n"
#: The known plan: every stride, and skipped tiles, on a 7 x 11 grid (a 200 x 328 scene).
PLAN = np.array([
    [1, 2, 4, 8, 0, 1, 2, 4, 8, 1, 2],
    [2, 4, 8, 1, 1, 0, 0, 2, 4, 8, 1],
    [4, 4, 4, 4, 2, 2, 2, 1, 1, 1, 8],
    [8, 1, 2, 4, 8, 1, 2, 4, 8, 0, 1],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [0, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0],
    [8, 8, 4, 4, 2, 2, 1, 1, 2, 4, 8],
])
H, W = 200, 328


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def load_png(path: Path) -> tuple[np.ndarray, dict, list]:
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        text = dict(im.text)
        rgb = np.asarray(im.convert("RGB")).astype(np.float64)
    return rgb, json.loads(text["satconv:layout"]), json.loads(text["satconv:legend"])


def crop(img: np.ndarray, box: list[int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return img[y0:y1, x0:x1]


def luma(rgb: np.ndarray) -> np.ndarray:
    return (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2]) / 1000


def whole_tile(n_panel: int, n_scene: int, ts: int) -> np.ndarray:
    """For each panel pixel along an axis, the tile its whole footprint lies in, or -1."""
    j = np.arange(n_panel)
    first = np.floor(j * n_scene / n_panel).astype(int)
    last = np.ceil((j + 1) * n_scene / n_panel).astype(int) - 1
    return np.where(first // ts == last // ts, first // ts, -1)


def colour_table(stride_map: Path) -> dict[int, np.ndarray]:
    with rasterio.open(stride_map) as ds:
        cmap = ds.colormap(1)
    return {s: np.array(cmap[s], dtype=np.float64) for s in (0, 1, 2, 4, 8, 16, 32, 64, 128)}


def ink(a: np.ndarray) -> np.ndarray:
    """The part of a grey picture with ink on it (non-white)."""
    ys, xs = np.nonzero(a < 255)
    assert ys.size, "no text drawn"
    return a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def text_ink(text: str, size: int) -> np.ndarray:
    """``text`` as Pillow draws it in black on white with its built-in font at ``size``."""
    font = ImageFont.load_default(size=size)
    im = Image.new("L", (20 * size + 8 * len(text) * size, 4 * size), 255)
    ImageDraw.Draw(im).text((4, 4), text, fill=0, font=font)
    return ink(np.asarray(im))


def shows_text(png_rgb: np.ndarray, box: list[int], text: str, size: int) -> bool:
    grey = np.rint(luma(crop(png_rgb, box))).astype(np.uint8)
    got = ink(grey)
    want = text_ink(text, size)
    return got.shape == want.shape and bool(np.all(np.abs(got.astype(int) - want) <= 1))


def expected_shares(plan: np.ndarray, height: int, width: int, ts: int) -> dict[int, float]:
    ny, nx = plan.shape
    h = np.minimum(ts, height - np.arange(ny) * ts)
    w = np.minimum(ts, width - np.arange(nx) * ts)
    px = np.outer(h, w).astype(float)
    cost = np.where(plan > 0, px / np.maximum(plan, 1) ** 2, 0.0)
    return {int(s): float(cost[plan == s].sum() / cost.sum()) for s in np.unique(plan)}


@pytest.fixture
def known_run(make_scene, write_stride_map, write_config, tmp_path):
    """A 200 x 328 one-band scene run with the known plan and --quicklook."""
    scene, data = make_scene(H, W, bands=1, dtype="uint16", seed=3)
    assert tile_shape(H, W, TS) == PLAN.shape
    plan = write_stride_map(PLAN, scene, TS)
    cfg = write_config(CONFIG)
    result = invoke("run", scene, "-c", cfg, "--plan", plan, "--quicklook", "-q")
    assert result.exit_code == 0, result.output
    return scene, data[0], tmp_path


def check_overlay(png: Path, plan: np.ndarray, height: int, width: int, ts: int,
                  colours: dict[int, np.ndarray]) -> int:
    """Every panel pixel whose footprint lies in one tile has that tile's stride colour laid
    over the grey of the input panel under it. Returns how many pixels were checked."""
    img, layout, _ = load_png(png)
    over = crop(img, layout["panels"]["stride_map"])
    base = crop(img, layout["panels"]["input"])
    assert over.shape == base.shape
    ph, pw = over.shape[:2]
    rows, cols = whole_tile(ph, height, ts), whole_tile(pw, width, ts)
    alpha = quicklook.OVERLAY_OPACITY
    grey = quicklook.BASE_LOW + luma(base) * (quicklook.BASE_HIGH - quicklook.BASE_LOW) / 255
    checked = 0
    for ty in range(plan.shape[0]):
        for tx in range(plan.shape[1]):
            sel = np.ix_(rows == ty, cols == tx)
            if not sel[0].size or not sel[1].size:
                continue
            s = int(plan[ty, tx])
            g = grey[sel][..., None]
            want = g if s == 0 else alpha * colours[s][:3] + (1 - alpha) * g
            diff = np.abs(over[sel] - want)
            assert diff.max() <= 1.0, (f"tile {ty},{tx} (stride {s}): off by {diff.max()}")
            checked += diff.shape[0] * diff.shape[1]
    return checked


# ---------------------------------------------------------------- the overlay and the legend


def test_run_quicklook_overlay_has_each_tiles_stride_colour(known_run):
    scene, _, folder = known_run
    png = folder / "scene.quicklook.png"
    assert png.is_file()
    colours = colour_table(folder / "scene.stride.tif")
    with rasterio.open(folder / "scene.stride.tif") as ds:
        assert np.array_equal(ds.read(1), PLAN)  # the plan executed is the known one
    # full resolution panels (the scene is smaller than the panel size): every pixel counts
    assert check_overlay(png, PLAN, H, W, TS, colours) == H * W


def test_preview_decimated_overlay_has_each_tiles_stride_colour(known_run):
    scene, _, folder = known_run
    out = folder / "small.png"
    result = invoke("preview", scene, "-o", out, "--size", 120)
    assert result.exit_code == 0, result.output
    img, layout, _ = load_png(out)
    x0, y0, x1, y1 = layout["panels"]["stride_map"]
    assert max(x1 - x0, y1 - y0) == 120
    checked = check_overlay(out, PLAN, H, W, TS, colour_table(folder / "scene.stride.tif"))
    assert checked > 0.6 * 120 * 73


def test_legend_counts_and_compute_shares_match_the_plan(known_run):
    _, _, folder = known_run
    img, layout, legend = load_png(folder / "scene.quicklook.png")
    values, counts = np.unique(PLAN, return_counts=True)
    want = dict(zip(values.tolist(), counts.tolist(), strict=True))
    shares = expected_shares(PLAN, H, W, TS)
    assert {row["stride"]: row["tiles"] for row in legend} == want
    for row in legend:
        assert row["compute_share"] == pytest.approx(shares[row["stride"]], abs=1e-6)
    assert [row["stride"] for row in legend] == [1, 2, 4, 8, 0]  # skipped last
    colours = colour_table(folder / "scene.stride.tif")
    size = layout["font_size"]
    for cell in layout["legend"]:
        s = cell["stride"]
        # the counts and shares as drawn in the PNG
        assert shows_text(img, cell["tiles"], str(want[s]), size), f"stride {s} tile count"
        assert shows_text(img, cell["compute"], f"{100 * shares[s]:.1f} %", size)
        assert shows_text(img, cell["label"], "skipped" if s == 0 else f"stride {s}", size)
        if s:
            x0, y0, x1, y1 = cell["swatch"]
            swatch = img[y0 + 2:y1 - 2, x0 + 2:x1 - 2].reshape(-1, 3)
            assert np.all(swatch == colours[s][:3]), f"stride {s} swatch"


def test_legend_text_check_can_fail(known_run):
    """The glyph comparison used above tells counts apart."""
    _, _, folder = known_run
    img, layout, _ = load_png(folder / "scene.quicklook.png")
    cell = layout["legend"][0]
    count = int((PLAN == 1).sum())
    assert shows_text(img, cell["tiles"], str(count), layout["font_size"])
    assert not shows_text(img, cell["tiles"], str(count + 1), layout["font_size"])


def test_stride_palette_is_ordered_in_lightness(known_run):
    """Colour-blind safe: the stride colours of the colour table (the quicklook's too) keep
    their order in lightness alone, well apart; 0 is transparent."""
    _, _, folder = known_run
    colours = colour_table(folder / "scene.stride.tif")
    assert colours[0][3] == 0
    light = [luma(colours[s][None, :3])[0] for s in (1, 2, 4, 8, 16, 32, 64, 128)]
    assert all(a - b >= 8 for a, b in zip(light, light[1:], strict=False)), light


# ---------------------------------------------------------------- what the panels show


def test_input_panel_is_a_2_98_stretch_in_grey(known_run):
    scene, data, folder = known_run
    img, layout, _ = load_png(folder / "scene.quicklook.png")
    panel = crop(img, layout["panels"]["input"])
    assert panel.shape == (H, W, 3)
    assert np.array_equal(panel[..., 0], panel[..., 1])
    assert np.array_equal(panel[..., 0], panel[..., 2])
    lo, hi = np.percentile(data.astype(float), [2, 98])
    want = np.clip((data - lo) * 255 / (hi - lo), 0, 255)
    assert np.abs(panel[..., 0] - want).max() <= 1.0


def test_true_colour_uses_red_green_blue_bands(tmp_path, write_stride_map, write_config):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 4000, size=(4, 64, 96)).astype(np.uint16)
    scene = write_geotiff(tmp_path / "rgb.tif", data)
    with rasterio.open(scene, "r+") as ds:  # stored blue, green, red, nir
        ds.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red,
                          ColorInterp.undefined]
    plan = write_stride_map(np.ones((2, 3), dtype=np.uint8), scene, TS)
    result = invoke("run", scene, "-c", write_config(CONFIG), "--plan", plan, "--quicklook",
                    "-q")
    assert result.exit_code == 0, result.output
    img, layout, _ = load_png(tmp_path / "rgb.quicklook.png")
    panel = crop(img, layout["panels"]["input"])
    for channel, band in enumerate((3, 2, 1)):  # red, green, blue
        b = data[band - 1].astype(float)
        lo, hi = np.percentile(b, [2, 98])
        want = np.clip((b - lo) * 255 / (hi - lo), 0, 255)
        assert np.abs(panel[..., channel] - want).max() <= 1.0, f"channel {channel}"
    assert set(layout["panels"]) == {"input", "stride_map", "output"}


def test_nodata_shows_a_checkerboard(tmp_path, write_stride_map, write_config):
    """Nodata is told apart from any data (a cloud clipped to white included): a checkerboard
    of 6-pixel squares of two light greys, in the input, the output and under the overlay."""
    data = np.full((1, 64, 64), 500, dtype=np.uint16)
    data[0, :, :20] = 0
    data[0, 10:50, 30:60] = 900
    scene = write_geotiff(tmp_path / "nd.tif", data, nodata=0)
    plan = write_stride_map(np.array([[1, 2], [4, 8]]), scene, TS)
    assert invoke("run", scene, "-c", write_config(CONFIG), "--plan", plan, "--quicklook",
                  "-q").exit_code == 0
    img, layout, _ = load_png(tmp_path / "nd.quicklook.png")
    i, j = np.mgrid[0:64, 0:20]
    board = np.where((i // 6 + j // 6) % 2 == 0, 255, 221)
    for name in ("input", "output"):
        panel = crop(img, layout["panels"][name])
        assert np.all(panel[:, :18] == board[:, :18, None]), name
        data_part = panel[:, 22:]
        assert np.all(data_part[..., 0] == data_part[..., 1]), name  # grey data
    inp = crop(img, layout["panels"]["input"])
    assert inp[30, 40, 0] == 255 and inp[5, 40, 0] == 0  # stretched data spans black-white
    over = crop(img, layout["panels"]["stride_map"])
    alpha, c = quicklook.OVERLAY_OPACITY, colour_table(tmp_path / "nd.stride.tif")[1][:3]
    want = alpha * c + (1 - alpha) * board[:32, :18, None]  # stride-1 tile over nodata
    assert np.abs(over[:32, :18] - want).max() <= 1


def test_error_map_drawn_as_fourth_panel(known_run):
    scene, _, folder = known_run
    ny, nx = PLAN.shape
    rng = np.random.default_rng(11)
    errors = np.stack([rng.permutation(ny * nx).reshape(ny, nx) * 0.05,
                       np.zeros((ny, nx))]).astype(np.float32)
    errors[1, 0, 0] = 5.0  # the worst band decides: tile (0, 0) is the largest
    errors[:, 3, 4] = np.nan  # no estimate for this tile
    with rasterio.open(folder / "scene.stride.tif") as sm:
        profile = dict(driver="GTiff", width=nx, height=ny, count=2, dtype="float32",
                       crs=sm.crs, transform=sm.transform, nodata=float("nan"))
    with rasterio.open(folder / "scene.error.tif", "w", **profile) as dst:
        dst.write(errors)
    out = folder / "with_errors.png"
    result = invoke("preview", folder / "scene.satconv.tif", "-o", out)
    assert result.exit_code == 0, result.output
    img, layout, _ = load_png(out)
    assert list(layout["panels"]) == ["input", "stride_map", "output", "error"]
    panel = crop(img, layout["panels"]["error"])
    base = crop(img, layout["panels"]["input"])
    assert panel.shape == base.shape
    worst = np.fmax(errors[0], errors[1])
    means = {}
    for ty in range(ny):
        for tx in range(nx):
            tile = panel[ty * TS + 2:min((ty + 1) * TS, H) - 2,
                         tx * TS + 2:min((tx + 1) * TS, W) - 2].reshape(-1, 3)
            assert np.ptp(tile, axis=0).max() <= 1 or np.isnan(worst[ty, tx])
            means[ty, tx] = tile.mean(axis=0)
    # no estimate: the grey of the overlay, without colour
    grey = quicklook.BASE_LOW + luma(base) * (quicklook.BASE_HIGH - quicklook.BASE_LOW) / 255
    nan_tile = panel[3 * TS:4 * TS, 4 * TS:5 * TS]
    assert np.abs(nan_tile - grey[3 * TS:4 * TS, 4 * TS:5 * TS, None]).max() <= 1
    # a larger error is lighter (the ramp rises in lightness), equal errors look the same
    order = sorted((k for k in means if np.isfinite(worst[k])), key=lambda k: worst[k])
    light = [luma(means[k][None])[0] for k in order]
    assert all(b > a for a, b in zip(light, light[1:], strict=False))
    assert order[-1] == (0, 0)
    bar = layout["colour_bar"]
    assert bar["hi"] == pytest.approx(5.0)
    x0, y0, x1, y1 = bar["box"]
    assert shows_text(img, [x1 - 60, y1 + 1, x1 + 1, y1 + 1 + layout["font_size"] + 6],
                      f"{5.0:.3g}", layout["font_size"])


def test_error_map_option_and_mismatch(known_run, write_tif):
    scene, _, folder = known_run
    bad = write_tif(np.ones((3, 3), dtype=np.float32), name="bad_errors.tif")
    result = invoke("preview", scene, "-o", folder / "x.png", "--error-map", bad)
    assert result.exit_code == 1
    assert "neither one pixel per tile" in result.stderr
    assert not (folder / "x.png").exists()
    good = write_tif(np.ones(PLAN.shape, dtype=np.float32), name="good_errors.tif")
    result = invoke("preview", scene, "-o", folder / "x.png", "--error-map", good)
    assert result.exit_code == 0, result.output
    _, layout, _ = load_png(folder / "x.png")
    assert "error" in layout["panels"]


# ---------------------------------------------------------------- finding a run's files


@pytest.mark.parametrize("given", ["scene.tif", "scene.satconv.tif", "scene.stride.tif",
                                   "scene.satconv.json"])
def test_preview_accepts_input_or_any_output(known_run, given):
    _, _, folder = known_run
    target = folder / "scene.quicklook.png"
    target.unlink()
    result = invoke("preview", folder / given)
    assert result.exit_code == 0, result.output
    _, layout, legend = load_png(target)
    assert set(layout["panels"]) == {"input", "stride_map", "output"}
    assert sum(row["tiles"] for row in legend) == PLAN.size


def test_preview_of_an_output_named_with_o(make_scene, write_config, tmp_path):
    scene, _ = make_scene(40, 70)
    out = tmp_path / "out" / "filtered.tif"
    out.parent.mkdir()
    assert invoke("run", scene, "-c", write_config(CONFIG), "-o", out, "-q").exit_code == 0
    (tmp_path / "out" / "filtered.satconv.json").unlink()  # without the report, by name
    result = invoke("preview", out)
    assert result.exit_code == 0, result.output
    _, layout, _ = load_png(tmp_path / "out" / "filtered.quicklook.png")
    assert set(layout["panels"]) == {"stride_map", "output"}  # the input is not known


def test_preview_without_a_run_is_one_line(make_scene, tmp_path):
    scene, _ = make_scene(20, 20)
    result = invoke("preview", scene)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "no stride map found" in result.stderr
    assert "Traceback" not in result.stderr


def test_preview_to_a_name_not_png_is_a_usage_error(known_run, tmp_path):
    """-o x.jpg is a bad option (exit 2, one line), not a failed input."""
    result = invoke("preview", known_run[0], "-o", tmp_path / "x.jpg")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "a quicklook is a PNG" in result.stderr
    assert not (tmp_path / "x.jpg").exists()


def test_preview_of_a_steps_input_names_each_steps_stride_map(make_scene, write_config):
    """After a ``steps:`` run the input has one run per step: preview says which to pick
    (one line), and draws any of them."""
    scene, _ = make_scene(40, 70)
    cfg = write_config("steps:\n  - {name: smooth, kernel: {type: box, size: 3}}\n"
                       "  - {name: edges, kernel: {type: sobel_x}}\n")
    assert invoke("run", scene, "-c", cfg, "-q").exit_code == 0
    result = invoke("preview", scene)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"satconv: {scene}: has one run per step; preview one of them: "
        "scene.edges.stride.tif, scene.smooth.stride.tif"]
    drawn = invoke("preview", scene.with_name("scene.edges.stride.tif"))
    assert drawn.exit_code == 0, drawn.stderr
    assert scene.with_name("scene.edges.quicklook.png").exists()


def test_skip_existing_draws_a_missing_quicklook_only(make_scene, write_config):
    """A scene done but without its quicklook (a stop while it was drawn, or a run without
    --quicklook): the cron command (--skip-existing --quicklook) skips the scene and draws
    the missing quicklook; the next rerun leaves it as it is."""
    scene, _ = make_scene(40, 70)
    cfg = write_config(CONFIG)
    assert invoke("run", scene, "-c", cfg, "-q").exit_code == 0
    png = scene.with_name("scene.quicklook.png")
    assert not png.exists()
    cron = ("run", scene, "-c", cfg, "--skip-existing", "--quicklook")
    result = invoke(*cron)
    assert result.exit_code == 0, result.stderr
    assert "skipped" in result.stderr and png.exists()
    report = scene.with_name("scene.satconv.json")
    assert json.loads(report.read_text())["outputs"]["quicklook"] == str(png)
    drawn = png.read_bytes()
    os.utime(png, (0, 0))
    assert invoke(*cron).exit_code == 0
    assert png.stat().st_mtime == 0 and png.read_bytes() == drawn  # not drawn again


def test_existing_quicklook_kept_without_overwrite(known_run):
    scene, _, folder = known_run
    png = folder / "scene.quicklook.png"
    before = png.read_bytes()
    result = invoke("preview", scene)
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert png.read_bytes() == before
    # run --quicklook refuses before doing any work
    for p in ("scene.satconv.tif", "scene.stride.tif", "scene.satconv.json"):
        (folder / p).unlink()
    result = invoke("run", scene, "--quicklook", "-q")
    assert result.exit_code == 1 and "scene.quicklook.png: already exists" in result.stderr
    assert not (folder / "scene.satconv.tif").exists()
    assert invoke("preview", scene, "--overwrite").exit_code == 1  # no run to show now


def test_png_written_atomically(known_run, monkeypatch):
    scene, _, folder = known_run
    listing = sorted(p.name for p in folder.iterdir())
    assert not [n for n in listing if n.endswith(".partial") or ".partial." in n]

    def broken(self, path, extra=None):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quicklook.Quicklook, "save", broken)
    result = invoke("preview", scene, "-o", folder / "new.png")
    assert result.exit_code == 1 and "new.png: write failed" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == listing


# ---------------------------------------------------------------- scale


def test_quicklook_of_a_20000_pixel_scene_reads_small(tmp_path):
    """A 20000 x 20000 uint16 scene (800 MB of pixels; sparse on disk) gets its quicklook in
    a process that never holds it: peak resident memory far below the scene's size."""
    n, ts = 20000, 256
    scene = tmp_path / "big.tif"
    profile = dict(driver="GTiff", width=n, height=n, count=1, dtype="uint16", tiled=True,
                   blockxsize=256, blockysize=256, compress="deflate", sparse_ok=True,
                   crs="EPSG:32633", transform=rasterio.Affine(10, 0, 399960, 0, -10, 5200020))
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(np.full((2048, 2048), 3000, dtype=np.uint16), 1,
                  window=rasterio.windows.Window(n - 2048, n - 2048, 2048, 2048))
    ny = nx = -(-n // ts)
    strides = np.full((ny, nx), 4, dtype=np.uint8)
    strides[-8:, -8:] = 1
    with rasterio.open(tmp_path / "big.stride.tif", "w", driver="GTiff", width=nx, height=ny,
                       count=1, dtype="uint8", crs="EPSG:32633",
                       transform=profile["transform"] @ rasterio.Affine.scale(ts)) as dst:
        dst.write(strides, 1)
    probe = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-m', 'satconv', 'preview', sys.argv[1], '-q'])\n"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    res = subprocess.run([sys.executable, "-c", probe, str(scene)], capture_output=True,
                         text=True, env=env, timeout=300)
    code, peak_kb = (int(v) for v in res.stdout.split())
    assert code == 0, res.stderr
    assert peak_kb / 1024 < 400, f"peak resident memory {peak_kb / 1024:.0f} MB"
    img, layout, legend = load_png(tmp_path / "big.quicklook.png")
    x0, y0, x1, y1 = layout["panels"]["stride_map"]
    assert (x1 - x0, y1 - y0) == (640, 640)
    assert {r["stride"]: r["tiles"] for r in legend} == {1: 64, 4: ny * nx - 64}
    panel = crop(img, layout["panels"]["input"])
    # the written corner (2048 of 20000 pixels: 66 of 640) is the only non-zero part
    corner = 640 - int(2048 * 640 / n)
    assert np.all(panel[corner + 1:, corner + 1:] == panel[-1, -1])
    assert not np.array_equal(panel[0, 0], panel[-1, -1])


def test_decimated_read_uses_overviews(tmp_path):
    """With overviews, the picture comes from them (GDAL picks the level), not the full
    resolution: here the overviews hold other values than the full-resolution pixels."""
    from satconv import raster_io

    path = write_geotiff(tmp_path / "ovr.tif", np.full((1, 1024, 1024), 10, dtype=np.uint16),
                         tiled=True)
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4], rasterio.enums.Resampling.nearest)
        ds.write(np.full((1024, 1024), 99, dtype=np.uint16), 1)  # overviews keep 10
    full = raster_io.read_decimated(path, 1024)
    assert full.data.shape == (1, 1024, 1024) and np.all(full.data == 99)
    small = raster_io.read_decimated(path, 256)
    assert small.data.shape == (1, 256, 256) and np.all(small.data == 10)


def test_gdal_block_cache_is_128_mb():
    """Decimated reads go through GDAL's block cache; satconv's environment must give it
    128 MB (rasterio counts an integer GDAL_CACHEMAX in bytes)."""
    import ctypes

    from satconv import raster_io

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        pytest.skip("needs /proc/self/maps to find libgdal")
    libs = {ln.split()[-1] for ln in maps.splitlines() if "libgdal" in ln.split()[-1]}
    if len(libs) != 1:
        pytest.skip(f"libgdal not found once in this process: {sorted(libs)}")
    gdal = ctypes.CDLL(libs.pop())
    gdal.GDALGetCacheMax64.restype = ctypes.c_int64
    with raster_io.gdal_env():
        assert gdal.GDALGetCacheMax64() == raster_io.GDAL_CACHE_MB * 1024 * 1024


def test_preview_size_option_defaults_to_the_library_default():
    from satconv import previews

    size = next(p for p in cli.commands["preview"].params if p.name == "size")
    assert size.default == previews.DEFAULT_SIZE


def test_cron_reruns_with_quicklook_skip_what_exists_and_draw_the_rest(make_scene, tmp_path):
    """'--skip-existing --quicklook' night after night: an input done last night (its
    quicklook there) is skipped, a new one is run and drawn; the batch does not stop."""
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    make_scene(30, 30, name="scenes/a.tif")
    args = ("run", f"{scenes}/*.tif", "--out-dir", out, "--quicklook", "--skip-existing", "-q")
    assert invoke(*args).exit_code == 0
    first = (out / "a.quicklook.png").read_bytes()
    make_scene(30, 30, name="scenes/b.tif", seed=1)
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert (out / "b.quicklook.png").exists()
    assert (out / "a.quicklook.png").read_bytes() == first


def test_steps_with_quicklook_draw_every_step(make_scene, tmp_path):
    scene, _ = make_scene(40, 40)
    cfg = tmp_path / "steps.yaml"
    cfg.write_text("tile_size: 16\nsteps:\n  - {name: smooth, kernel: {type: box}}\n"
                   "  - {name: edges, kernel: {type: sobel_x}}\n")
    result = invoke("run", scene, "-c", cfg, "--quicklook", "-q")
    assert result.exit_code == 0, result.stderr
    for step in ("smooth", "edges"):
        png = tmp_path / f"scene.{step}.quicklook.png"
        with Image.open(png) as im:
            assert im.size[0] > 100
        # the report on disk lists it with the run's other outputs, which stay current
        report = json.loads((tmp_path / f"scene.{step}.satconv.json").read_text())
        assert report["outputs"]["quicklook"] == str(png)
        assert Path(report["outputs"]["raster"]).exists()
    result = invoke("run", scene, "-c", cfg, "--quicklook", "--skip-existing")
    assert result.exit_code == 0 and "skipped" in result.stderr, result.stderr


def test_a_quicklook_that_cannot_be_drawn_fails_its_input_and_says_the_rest_is_complete(
        make_scene, tmp_path):
    """A folder where one input's PNG must go: that input fails, its error line names it and
    says its other outputs are complete (they are), the other input is done, exit 1, and the
    summary says the same."""
    a, _ = make_scene(30, 30, name="a.tif")
    b, _ = make_scene(30, 30, name="b.tif", seed=1)
    (tmp_path / "a.quicklook.png").mkdir()
    result = invoke("run", a, b, "--quicklook", "--overwrite", "--summary",
                    tmp_path / "s.json")
    assert result.exit_code == 1, result.stderr
    line = next(ln for ln in result.stderr.splitlines() if "quicklook not drawn" in ln)
    assert line.startswith(f"satconv: {a}: quicklook not drawn: ") and \
        line.endswith("its other outputs are complete"), line
    for name in ("a.satconv.tif", "a.stride.tif", "a.satconv.json", "b.quicklook.png"):
        assert (tmp_path / name).is_file(), name
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["done"], summary["failed"], summary["exit_code"]) == (1, 1, 1)
    assert [r["status"] for r in summary["results"]] == ["failed", "done"]


def test_a_stop_while_the_quicklooks_are_drawn_writes_the_summary(make_scene, tmp_path,
                                                                   monkeypatch):
    """Ctrl-C after the batch, while the quicklooks are drawn: exit 130, the summary is
    written (the inputs not drawn yet stopped, their outputs complete), and a --skip-existing
    --quicklook rerun draws what is missing."""
    from satconv import previews

    a, _ = make_scene(30, 30, name="a.tif")
    b, _ = make_scene(30, 30, name="b.tif", seed=1)
    real = previews.make_quicklook
    calls = []

    def stopped_at_the_second(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(previews, "make_quicklook", stopped_at_the_second)
    result = invoke("run", a, b, "--quicklook", "--summary", tmp_path / "s.json")
    assert result.exit_code == 130, result.stderr
    assert "while the quicklooks were drawn" in result.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [r["status"] for r in summary["results"]] == ["done", "stopped"]
    assert summary["exit_code"] == 130
    assert (tmp_path / "b.satconv.json").is_file() and not (tmp_path / "b.quicklook.png").exists()
    monkeypatch.setattr(previews, "make_quicklook", real)
    result = invoke("run", a, b, "--quicklook", "--skip-existing")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "b.quicklook.png").is_file()


def test_skip_existing_redraws_its_own_quicklook_only(make_scene, tmp_path):
    """With --skip-existing an input that is (re)done gets its quicklook redrawn when satconv
    drew the PNG there; a PNG from elsewhere at that name is left untouched and fails that
    input (exit 1, its other outputs complete), not the batch; --overwrite replaces it."""
    a, _ = make_scene(30, 30, name="a.tif")
    b, _ = make_scene(30, 30, name="b.tif", seed=1)
    png = tmp_path / "a.quicklook.png"
    Image.new("RGB", (8, 8), "red").save(png)
    foreign = png.read_bytes()
    result = invoke("run", a, b, "--quicklook", "--skip-existing")
    assert result.exit_code == 1, result.stderr
    line = next(ln for ln in result.stderr.splitlines() if "quicklook not drawn" in ln)
    assert line.startswith(f"satconv: {a}: ") and "already exists" in line, line
    assert png.read_bytes() == foreign
    assert (tmp_path / "a.satconv.tif").exists() and (tmp_path / "b.quicklook.png").exists()
    # without --skip-existing: refused before anything runs, the line naming the input
    result = invoke("run", a, "--quicklook")
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith(f"satconv: {a}: {png}: already exists"), result.stderr
    assert invoke("run", a, "--quicklook", "--overwrite", "-q").exit_code == 0
    assert png.read_bytes() != foreign
    # satconv's own, for outputs that are redone (another config): redrawn
    for name in ("a.satconv.tif", "a.stride.tif", "a.satconv.json"):
        (tmp_path / name).unlink()
    os.utime(png, (0, 0))
    result = invoke("run", a, "--quicklook", "--skip-existing", "-q")
    assert result.exit_code == 0, result.stderr
    assert png.stat().st_mtime > 0
