"""The ``satconv`` command line: click's CliRunner and real subprocesses of .venv/bin/satconv."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from satconv import __version__, config, kernels
from satconv.scripts.cli import cli

from . import oracle
from .conftest import slow_run_inputs, tile_shape, wait_for_staging

SATCONV = Path(sys.executable).parent / "satconv"
GAUSS3 = "kernel: {type: gaussian, size: 3, sigma: 1.0}\n"


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def run_satconv(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SATCONV), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- satconv run: outputs


def test_run_subprocess_writes_three_outputs_beside_input(make_scene, tmp_path):
    scene, _ = make_scene(50, 40)
    proc = run_satconv("run", scene)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert listing(tmp_path) == ["scene.satconv.json", "scene.satconv.tif", "scene.stride.tif",
                                 "scene.tif"]
    with rasterio.open(tmp_path / "scene.satconv.tif") as ds:
        assert (ds.height, ds.width) == (50, 40)
    report = json.loads((tmp_path / "scene.satconv.json").read_text())
    assert report["input"] == str(scene)
    assert report["outputs"]["raster"] == str(tmp_path / "scene.satconv.tif")


def test_run_output_option(make_scene, tmp_path):
    scene, _ = make_scene(30, 30)
    out = tmp_path / "out" / "out.tif"
    out.parent.mkdir()
    result = invoke("run", scene, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert listing(out.parent) == ["out.satconv.json", "out.stride.tif", "out.tif"]
    assert listing(tmp_path) == ["out", "scene.tif"]


def test_run_out_dir_several_inputs(make_scene, tmp_path):
    a, _ = make_scene(20, 20, name="a.tif")
    b, _ = make_scene(20, 20, name="b.tif", seed=1)
    dest = tmp_path / "dest"
    dest.mkdir()
    result = invoke("run", a, b, "--out-dir", dest, "-q")
    assert result.exit_code == 0, result.stderr
    assert listing(dest) == ["a.satconv.json", "a.satconv.tif", "a.stride.tif",
                             "b.satconv.json", "b.satconv.tif", "b.stride.tif"]


def test_output_option_with_several_inputs_is_a_usage_error(make_scene, tmp_path):
    a, _ = make_scene(20, 20, name="a.tif")
    b, _ = make_scene(20, 20, name="b.tif")
    result = invoke("run", a, b, "-o", tmp_path / "x.tif")
    assert result.exit_code == 2
    assert "--out-dir" in result.stderr
    assert listing(tmp_path) == ["a.tif", "b.tif"]


def test_output_option_with_out_dir_is_a_usage_error(make_scene, tmp_path):
    """-o and --out-dir both say where the outputs go: one must not silently win."""
    scene, _ = make_scene(20, 20)
    dest = tmp_path / "dest"
    dest.mkdir()
    result = invoke("run", scene, "-o", tmp_path / "x.tif", "--out-dir", dest)
    assert result.exit_code == 2
    assert "--out-dir" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert listing(tmp_path) == ["dest", "scene.tif"] and listing(dest) == []


# ---------------------------------------------------------------- failures and exit codes


def test_missing_input_fails_alone_and_the_next_input_is_processed(make_scene, tmp_path):
    good, _ = make_scene(20, 20, name="good.tif")
    missing = tmp_path / "missing.tif"
    result = invoke("run", missing, good, "-q")
    assert result.exit_code == 1
    naming = [ln for ln in result.stderr.splitlines() if "missing.tif" in ln]
    assert len(naming) == 1 and "no such file" in naming[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert listing(tmp_path) == ["good.satconv.json", "good.satconv.tif", "good.stride.tif",
                                 "good.tif"]


def test_missing_input_subprocess(tmp_path):
    proc = run_satconv("run", tmp_path / "nothere.tif")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert any("nothere.tif" in ln and "no such file" in ln for ln in lines)
    assert sum("nothere.tif" in ln for ln in lines) == 1
    assert "Traceback" not in proc.stderr
    assert listing(tmp_path) == []


def test_corrupt_input_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 100)
    result = invoke("run", bad)
    assert result.exit_code == 1
    assert "bad.tif" in result.stderr and "Traceback" not in result.stderr
    assert listing(tmp_path) == ["bad.tif"]


def test_debug_shows_traceback(tmp_path):
    result = invoke("run", tmp_path / "nothere.tif", "--debug")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr


def test_bad_config_exits_2(make_scene, write_config, tmp_path):
    scene, _ = make_scene(20, 20)
    cfg = write_config("kernel: {size: 4}\n")
    result = invoke("run", scene, "-c", cfg)
    assert result.exit_code == 2
    assert "kernel.size" in result.stderr and "odd" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert listing(tmp_path) == ["config.yaml", "scene.tif"]


def test_bad_config_subprocess_exits_2(make_scene, write_config):
    scene, _ = make_scene(20, 20)
    proc = run_satconv("run", scene, "-c", write_config("strides: [1, 3]\n"))
    assert proc.returncode == 2
    assert "strides" in proc.stderr and "power of two" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_config_file_exits_2(make_scene, tmp_path):
    scene, _ = make_scene(20, 20)
    result = invoke("run", scene, "-c", tmp_path / "none.yaml")
    assert result.exit_code == 2
    assert "none.yaml" in result.stderr


def test_refuses_to_overwrite_without_flag(make_scene, tmp_path):
    scene, _ = make_scene(24, 24)
    assert invoke("run", scene, "-q").exit_code == 0
    outputs = [tmp_path / n for n in ("scene.satconv.tif", "scene.stride.tif",
                                      "scene.satconv.json")]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in outputs}
    result = invoke("run", scene, "-q")
    assert result.exit_code == 1
    assert "already exists" in result.stderr and "--overwrite" in result.stderr
    # the line names the input first, so a log grepped for the input finds it
    assert result.stderr.startswith(f"satconv: {scene}: {tmp_path / 'scene.satconv.json'}: ")
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in outputs} == before
    result = invoke("run", scene, "-q", "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert all(p.stat().st_mtime_ns != before[p][1] for p in outputs)


def test_refuses_to_overwrite_when_only_the_report_exists(make_scene, tmp_path):
    scene, _ = make_scene(24, 24)
    (tmp_path / "scene.satconv.json").write_text("{}")
    result = invoke("run", scene)
    assert result.exit_code == 1
    assert "scene.satconv.json" in result.stderr
    assert (tmp_path / "scene.satconv.json").read_text() == "{}"
    assert not (tmp_path / "scene.satconv.tif").exists()


def test_a_saved_plan_at_the_stride_maps_name_is_not_replaced(make_scene, tmp_path):
    """``satconv plan -o scene.stride.tif`` (to edit, say), then ``satconv run scene.tif``: the
    map is no run's interrupted output, so it is not replaced without --overwrite."""
    scene, _ = make_scene(40, 40)
    plan = tmp_path / "scene.stride.tif"
    assert invoke("plan", scene, "-o", plan).exit_code == 0
    before = plan.read_bytes()
    result = invoke("run", scene)
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(f"{plan}: already exists (use --overwrite to replace "
                                          "it)")
    assert plan.read_bytes() == before
    assert not (tmp_path / "scene.satconv.tif").exists()


def test_output_may_not_replace_the_input(make_scene):
    scene, data = make_scene(24, 24)
    result = invoke("run", scene, "-o", scene, "--overwrite")
    assert result.exit_code == 1
    assert "overwrite the input" in result.stderr
    np.testing.assert_array_equal(read(scene), data)


# ---------------------------------------------------------------- --plan


def test_plan_of_ones_gives_dense_output(make_scene, write_stride_map, write_config, tmp_path):
    scene, data = make_scene(45, 38, bands=2, seed=3)
    cfg = write_config("kernel: {type: custom, weights: [[1, 2, -1, 0, 3], [0, 5, 1, -2, 1], "
                       "[2, 0, 0, 1, -3]]}\ntile_size: 16\nboundary: wrap\n")
    plan = write_stride_map(np.ones(tile_shape(45, 38, 16)), scene, 16)
    out = tmp_path / "out.tif"
    proc = run_satconv("run", scene, "-c", cfg, "--plan", plan, "-o", out)
    assert proc.returncode == 0, proc.stderr
    k = np.array([[1, 2, -1, 0, 3], [0, 5, 1, -2, 1], [2, 0, 0, 1, -3]], dtype=np.float64)
    expected = oracle.dense(data, k, "wrap")
    assert oracle.relative_error(read(out), expected) < 1e-5
    with rasterio.open(out.with_name("out.stride.tif")) as ds:
        np.testing.assert_array_equal(ds.read(1), np.ones(tile_shape(45, 38, 16)))


def test_plan_with_wrong_shape_fails(make_scene, write_stride_map, write_config, tmp_path):
    scene, _ = make_scene(45, 38)
    cfg = write_config("tile_size: 16\n")
    plan = write_stride_map(np.ones((2, 2)), scene, 16)
    result = invoke("run", scene, "-c", cfg, "--plan", plan)
    assert result.exit_code == 1
    line = [ln for ln in result.stderr.splitlines() if "plan.tif" in ln]
    assert len(line) == 1 and "2x2" in line[0] and "3x3" in line[0]
    assert listing(tmp_path) == ["config.yaml", "plan.tif", "scene.tif"]


def test_plan_with_disallowed_stride_fails(make_scene, write_stride_map, write_config,
                                           tmp_path):
    scene, _ = make_scene(32, 32)
    cfg = write_config("tile_size: 16\nstrides: [1, 2]\n")
    plan = write_stride_map(np.array([[1, 2], [4, 1]]), scene, 16)
    result = invoke("run", scene, "-c", cfg, "--plan", plan)
    assert result.exit_code == 1
    assert "plan.tif" in result.stderr and "[4]" in result.stderr
    assert "allowed" in result.stderr
    assert listing(tmp_path) == ["config.yaml", "plan.tif", "scene.tif"]


def test_missing_plan_file_is_a_usage_error(make_scene, tmp_path):
    """Like a missing config: exit 2 before any input is touched, not one failure per input."""
    scene, _ = make_scene(32, 32)
    other = tmp_path / "other.tif"
    shutil.copy(scene, other)
    result = invoke("run", scene, other, "--plan", tmp_path / "noplan.tif")
    assert result.exit_code == 2
    assert "noplan.tif" in result.stderr and "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert listing(tmp_path) == ["other.tif", "scene.tif"]


def _shifted_copy(src: Path, dst: Path) -> Path:
    """``src`` rewritten with rasterio one map pixel to the east (its transform, or each
    ground control point's column): the same size, another grid."""
    with rasterio.open(src) as ds:
        profile, data, (gcps, gcp_crs) = ds.profile, ds.read(1), ds.gcps
        transform = ds.transform
    if gcps:
        profile.pop("transform", None)
    else:
        profile["transform"] = transform @ Affine.translation(1, 0)
    with rasterio.open(dst, "w", **profile) as out:
        if gcps:
            out.gcps = ([GroundControlPoint(g.row, g.col + 1, g.x, g.y, g.z) for g in gcps],
                        gcp_crs)
        out.write(data, 1)
    return dst


def _gcp_scene(path: Path) -> Path:
    """A 40x60 uint8 scene placed by four ground control points only (EPSG:4326)."""
    gcps = [GroundControlPoint(0, 0, -75.0, 40.0), GroundControlPoint(0, 60, -74.9, 40.0),
            GroundControlPoint(40, 0, -75.0, 39.9), GroundControlPoint(40, 60, -74.9, 39.9)]
    data = np.random.default_rng(5).integers(0, 255, size=(40, 60), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=60, height=40, count=1,
                       dtype="uint8") as dst:
        dst.gcps = (gcps, CRS.from_epsg(4326))
        dst.write(data, 1)
    return path


@pytest.mark.parametrize(("name", "tile"), [("RGB.byte.tif", 128), ("world.byte.tif", 256),
                                            ("rotated.tif", 4), ("gcp", 16), ("plain", 16)])
def test_plan_maps_satconv_writes_are_accepted_shifted_ones_refused(
        name, tile, shared_data, write_config, write_tif, tmp_path):
    """``satconv plan -o`` and a run's stride map go back in with --plan (transform, rotated
    transform, GCPs, no georeferencing); the same map one pixel off is refused."""
    if name == "gcp":
        scene = _gcp_scene(tmp_path / "gcp.tif")
    elif name == "plain":
        scene = write_tif(np.arange(50 * 40, dtype=np.uint16).reshape(1, 50, 40),
                          name="plain.tif", crs=None, transform=Affine.identity())
    else:
        scene = shared_data / name
    cfg = write_config(GAUSS3 + f"tile_size: {tile}\n")
    planned = invoke("plan", scene, "-c", cfg, "-o", tmp_path / "p.tif")
    assert planned.exit_code == 0, planned.stderr
    first = invoke("run", scene, "-c", cfg, "--plan", tmp_path / "p.tif",
                   "-o", tmp_path / "a.tif", "-q")
    assert first.exit_code == 0, first.stderr
    again = invoke("run", scene, "-c", cfg, "--plan", tmp_path / "a.stride.tif",
                   "-o", tmp_path / "b.tif", "-q")
    assert again.exit_code == 0, again.stderr
    np.testing.assert_array_equal(read(tmp_path / "b.stride.tif"), read(tmp_path / "p.tif"))
    off = _shifted_copy(tmp_path / "p.tif", tmp_path / "off.tif")
    refused = invoke("run", scene, "-c", cfg, "--plan", off, "-o", tmp_path / "c.tif", "-q")
    assert refused.exit_code == 1
    lines = [ln for ln in refused.stderr.splitlines() if "off.tif" in ln]
    assert len(lines) == 1 and "not match" in lines[0], refused.stderr
    assert not (tmp_path / "c.tif").exists()


def test_plan_made_for_another_tile_size_is_refused(make_scene, write_stride_map,
                                                    write_config, tmp_path):
    """A 60x60 scene: tiles of 16 and of 20 both give 3x3, the map (pixel 16 scene pixels)
    says which it was made for."""
    scene, _ = make_scene(60, 60)
    plan = write_stride_map(np.ones((3, 3)), scene, 16)
    result = invoke("run", scene, "-c", write_config("tile_size: 20\n"), "--plan", plan)
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if "plan.tif" in ln]
    assert len(lines) == 1 and "made for tile_size 16, the config has 20" in lines[0]
    assert listing(tmp_path) == ["config.yaml", "plan.tif", "scene.tif"]


def test_plan_nodata_cells_run_as_skipped_tiles(make_scene, write_config, tmp_path):
    """A map that declares nodata 255: those tiles are skipped (0) as if written so."""
    scene, _ = make_scene(32, 32)
    with rasterio.open(scene) as src:
        crs, transform = src.crs, src.transform
    plan = tmp_path / "plan.tif"
    with rasterio.open(plan, "w", driver="GTiff", width=2, height=2, count=1, dtype="uint8",
                       crs=crs, transform=transform @ Affine.scale(16), nodata=255) as dst:
        dst.write(np.array([[1, 255], [2, 1]], np.uint8), 1)
    result = invoke("run", scene, "-c", write_config("tile_size: 16\n"), "--plan", plan,
                    "-o", tmp_path / "out.tif", "-q")
    assert result.exit_code == 0, result.stderr
    assert read(tmp_path / "out.stride.tif")[0].tolist() == [[1, 0], [2, 1]]


# ---------------------------------------------------------------- satconv plan


def test_plan_command_prints_histogram(write_tif, write_config, tmp_path):
    data = np.full((1, 80, 100), 1000, dtype=np.uint16)   # 3 x 4 tiles of 32
    data[0, :32, 32:64] = 0                                  # one all-nodata tile
    rng = np.random.default_rng(0)
    data[0, 32:64, :32] = rng.integers(1, 65535, size=(32, 32))  # one textured tile
    scene = write_tif(data, nodata=0)
    cfg = write_config("tile_size: 32\npolicy: {thresholds: [10.0, 5.0]}\n")
    out = tmp_path / "plan.stride.tif"
    result = invoke("plan", scene, "-c", cfg, "-o", out)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "100x80" in text and "uint16" in text
    counts = {}
    for ln in text.splitlines():
        parts = ln.split(":")
        if parts[0].strip() in ("skipped", "stride 1", "stride 2", "stride 4"):
            counts[parts[0].strip()] = int(parts[1].split()[0])
    assert counts == {"skipped": 1, "stride 1": 1, "stride 4": 10}
    # samples alone: (1 full tile + 10 tiles at 1/16) of the valid pixels
    px = np.outer([32, 32, 16], [32, 32, 32, 4])
    strides = np.array([[4, 0, 4, 4], [1, 4, 4, 4], [4, 4, 4, 4]])
    frac = np.sum(np.where(strides > 0, px / np.maximum(strides, 1) ** 2, 0)) / px.sum()
    assert f"(samples alone: {100 * frac:.1f}%)" in text
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1), strides)
    assert listing(tmp_path) == ["config.yaml", "plan.stride.tif", "scene.tif"]


def test_plan_command_table_stays_aligned_with_long_labels(make_scene, write_config):
    """A long policy label (four relative thresholds) widens the table's first column rather
    than pushing its row's figures out of line."""
    scene, _ = make_scene(64, 64)
    cfg = write_config("strides: [1, 2, 4, 8, 16]\nmax_stride: none\n"
                       "policy: {thresholds: [0.002, 0.001, 0.0005, 0.0002], "
                       "thresholds_relative_to: dtype}\n")
    result = invoke("plan", scene, "-c", cfg)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["plan"])
    rows = lines[head + 1:head + 9]
    assert any("x dtype range²" in ln for ln in rows)
    assert len({ln.index("%") for ln in rows}) == 1, "\n".join(rows)


def test_plan_command_subprocess(make_scene):
    scene, _ = make_scene(64, 64)
    proc = run_satconv("plan", scene)
    assert proc.returncode == 0, proc.stderr
    assert "64x64" in proc.stdout and "predicted compute" in proc.stdout


def test_plan_headline_compute_is_what_the_run_spends(tmp_path):
    """``satconv plan``'s headline compute, its table's row for the configured policy and
    the run's summary line are the same figure (kernel evaluations): on a raster with a
    nodata collar, where the pixels computed exactly near nodata count too."""
    from . import policy_support as ps

    scene = ps.shared_data() / "RGB.byte.tif"
    planned = invoke("plan", scene)
    assert planned.exit_code == 0, planned.stderr
    head = re.search(r"predicted compute: ([0-9.]+)%", planned.stdout)
    row = re.search(r"^\s+variance \(target_error 0.01\)\s+([0-9.]+)%", planned.stdout, re.M)
    assert head and row, planned.stdout
    ran = invoke("run", scene, "-o", tmp_path / "out.tif")
    assert ran.exit_code == 0, ran.stderr
    spent = re.search(r"compute ([0-9.]+)% of full resolution", ran.stderr)
    assert spent, ran.stderr
    assert float(head.group(1)) == pytest.approx(float(row.group(1)), abs=0.051)
    assert float(head.group(1)) == pytest.approx(float(spent.group(1)), abs=0.051)


def test_plan_of_a_scene_smaller_than_a_window_predicts_an_error(write_tif):
    """A random 6x6 scene is one variance window, so its window means do not spread; the
    output's range was then taken as 0, every stride predicted 'exact' (and numpy warned on
    stderr). Stride 4 on noise is far from exact: its predicted PSNR must be a number, and
    well under the 40 dB target."""
    x = (np.random.default_rng(9).random((1, 6, 6)) * 100).astype(np.float32)
    scene = write_tif(x, name="tiny.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = invoke("plan", scene)
    assert result.exit_code == 0, result.stderr
    assert "RuntimeWarning" not in result.stderr
    row = re.search(r"^\s+uniform stride 4\s+[0-9.]+%\s+(\S+) dB", result.stdout, re.M)
    assert row, result.stdout
    assert float(row.group(1)) < 30


@pytest.mark.parametrize("name", ["a.stride.tif", "a.error.tif", "a.satconv.json",
                                  "a.quicklook.png"])
def test_output_named_like_a_side_output_is_refused(write_tif, tmp_path, name):
    """``-o a.stride.tif`` would write a raster under another run's stride-map name (and
    replace it with --overwrite): a usage error, and nothing is written or replaced."""
    scene = write_tif(np.zeros((1, 8, 8), dtype=np.uint8), name="scene.tif")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"another run's")
    result = invoke("run", scene, "-o", out / name, "--overwrite")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and name in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [name]
    assert (out / name).read_bytes() == b"another run's"


def test_a_file_name_with_a_newline_keeps_its_failure_on_one_line(tmp_path):
    """Log lines are read line by line: a control character of a name is shown escaped."""
    bad = tmp_path / "two\nlines\r.tif"
    bad.write_bytes(b"not a raster")
    result = invoke("run", bad, "-o", tmp_path / "o.tif")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "two\\nlines\\r.tif" in result.stderr


def test_a_pattern_that_matches_nothing_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    pattern = str(tmp_path / "empty" / "*.tif")
    result = invoke("run", pattern, "--out-dir", tmp_path)
    assert result.exit_code == 1
    assert result.stderr == f"satconv: {pattern}: no such file (as a pattern, it matched no " \
                            "file)\n"


def test_plan_command_missing_input(tmp_path):
    result = invoke("plan", tmp_path / "gone.tif")
    assert result.exit_code == 1
    assert "gone.tif" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- version and config


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"satconv, version {__version__}"
    proc = run_satconv("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"satconv, version {__version__}"


def test_config_validate_show_init(write_config, tmp_path):
    good = write_config("boundary: mirror\n")
    result = invoke("config", "validate", good)
    assert result.exit_code == 0 and "valid" in result.stdout
    bad = write_config("boundary: sideways\n", "bad.yaml")
    result = invoke("config", "validate", bad)
    assert result.exit_code == 2 and "boundary" in result.stderr
    result = invoke("config", "show", good)
    assert result.exit_code == 0 and "boundary: mirror" in result.stdout
    target = tmp_path / "init.yaml"
    assert invoke("config", "init", target).exit_code == 0
    assert invoke("config", "validate", target).exit_code == 0
    # the documented defaults, as in configs/default.yaml: each key says what it takes
    text = target.read_text()
    assert "type: gaussian        # gaussian | box | sobel_x" in text
    assert config.load(target) == config.Settings()
    assert invoke("config", "init").stdout == text
    assert invoke("config", "init", target).exit_code == 1


def test_config_init_is_one_line_and_atomic_when_it_cannot_write(tmp_path):
    """``config init`` into a missing folder, or past a file-size limit: exit 1, one line
    naming the file, no traceback, and no file (whole or truncated) at its name."""
    result = invoke("config", "init", tmp_path / "missing" / "c.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"satconv: {tmp_path}/missing/c.yaml: output folder {tmp_path}/missing does not exist"]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))  # the defaults are ~6 kB

    proc = subprocess.run([str(SATCONV), "config", "init", "c.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["satconv: c.yaml: write failed: file too large"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_no_progress_bar_or_colour_when_not_a_terminal(make_scene, tmp_path):
    scene, _ = make_scene(40, 40)
    env = {**os.environ, "TERM": "xterm"}
    proc = subprocess.run([str(SATCONV), "run", str(scene)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr and "tile/s" not in proc.stderr


@pytest.mark.parametrize("kernel", ["sobel_x", "laplacian", "sharpen", "box"])
def test_named_kernels_run(make_scene, write_config, write_stride_map, tmp_path, kernel):
    scene, data = make_scene(33, 21, dtype="uint8")
    cfg = write_config(f"kernel: {{type: {kernel}, size: 3}}\ntile_size: 16\n")
    plan = write_stride_map(np.ones(tile_shape(33, 21, 16)), scene, 16)
    result = invoke("run", scene, "-c", cfg, "--plan", plan, "-q")
    assert result.exit_code == 0, result.stderr
    # the named kernels are the textbook ones, written out here by hand
    hand = {
        "sobel_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
        "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
        "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
        "box": np.full((3, 3), 1 / 9),
    }[kernel]
    np.testing.assert_allclose(kernels.make_kernel(kernel, 3), hand)
    expected = oracle.dense(data, np.asarray(hand, dtype=np.float64), "reflect")
    assert oracle.relative_error(read(tmp_path / "scene.satconv.tif"), expected) < 1e-5


def test_jobs_option(make_scene, tmp_path):
    a, _ = make_scene(20, 20, name="a.tif")
    b, _ = make_scene(20, 20, name="b.tif", seed=1)
    result = invoke("run", a, b, "--jobs", "2", "-q")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a.satconv.tif").exists() and (tmp_path / "b.satconv.tif").exists()


@pytest.mark.parametrize("command", ["run", "plan"])
def test_policy_missing_its_parameter_is_a_configuration_error(make_scene, write_config,
                                                                command):
    scene, _ = make_scene(20, 20)
    cfg = write_config("policy: {type: budget}\n")
    result = invoke(command, scene, "-c", cfg)
    assert "policy" in result.stderr and "fraction" in result.stderr
    assert result.exit_code == 2


def _ctrl_c_reaches_it() -> None:
    """In the child before it starts: SIGINT as in a terminal's foreground. A process started
    in the background by a non-interactive shell (``make test &``) inherits SIGINT ignored,
    and satconv, like any Python program, then ignores Ctrl-C too."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_run_exits_130_and_cleans_up(tmp_path):
    scene, cfg = slow_run_inputs(tmp_path)
    proc = subprocess.Popen([str(SATCONV), "run", str(scene), "-c", str(cfg), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_reaches_it)
    partial = tmp_path / f".big.satconv.tif.{proc.pid}.partial"
    try:
        wait_for_staging(proc, partial)
        assert proc.poll() is None, "satconv finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "interrupted" in err and "big.tif" in err and "Traceback" not in err
    assert listing(tmp_path) == ["big.tif", "c.yaml"]  # no final name, no temporary file


def test_summary_folder_and_lock_timeout_are_checked_before_any_work(make_scene, tmp_path):
    """Found out at once, not after the batch: a summary that cannot be written, and a
    --lock-timeout without --on-lock wait (which it would silently not bound)."""
    scene, _ = make_scene(20, 20)
    result = invoke("run", scene, "--summary", tmp_path / "nowhere" / "s.json")
    assert result.exit_code == 1 and "nowhere" in result.stderr
    result = invoke("run", scene, "--lock-timeout", "5")
    assert result.exit_code == 2 and "--on-lock wait" in result.stderr
    assert listing(tmp_path) == ["scene.tif"]


_CRASH = """
import faulthandler, sys
from satconv.scripts.cli import cli
sys.argv = ["satconv", "plan", "/nonexistent/scene.tif"]
try:
    cli(standalone_mode=False)
except BaseException:
    pass
faulthandler._sigsegv()  # what a crash in GDAL or a compiled kernel would do
"""


def test_a_crash_in_native_code_says_where_it_was():
    """A satconv command that dies of SIGSEGV (in native code: GDAL, a compiled kernel) first
    prints every thread's Python stack to stderr, for whoever reads the cron mail."""
    run = subprocess.run([sys.executable, "-c", _CRASH], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"},
                         timeout=300)
    assert run.returncode == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in run.stderr
    assert "Current thread" in run.stderr
