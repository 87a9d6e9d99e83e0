"""Issue 6: configured pipelines — several named steps over one input in one pass of reading,
each writing what a single-kernel run of that step writes."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import rasterio
import yaml
from click.testing import CliRunner

from satconv import config, kernels, raster_io
from satconv.scripts.cli import cli

from . import oracle
from .conftest import random_image

STEPS = {
    "tile_size": 32,
    "steps": [
        {"name": "smooth", "kernel": {"type": "gaussian", "size": 5, "sigma": 1.5}},
        {"name": "edges", "kernel": {"type": "sobel_x", "size": 3},
         "policy": {"target_error": 0.005}, "suffix": ".sobel"},
        {"name": "wide", "kernel": {"type": "box", "size": 9}, "policy": {"thresholds": [5, 1]}},
    ],
}


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def smooth_scene(write_tif):
    rng = np.random.default_rng(3)
    data = random_image(rng, (2, 150, 170), "uint16")
    data[:, :60] = 2000 + (np.arange(170) * 3).astype(np.uint16)  # a smooth ramp: coarse tiles
    data[:, 100:110, 20:40] = 0  # a nodata hole
    # compressed: a policy plan's execute pass reads the tiles its plan pass decoded
    return write_tif(data, nodata=0, compress="deflate"), data


def test_steps_equal_single_kernel_runs(smooth_scene, tmp_path):
    """Pixels, stride maps and reports (error estimates included) of each step equal a
    single-kernel run of it, a refine step among them (refined as it runs)."""
    scene, _ = smooth_scene
    cfg = tmp_path / "steps.yaml"
    refine = {"name": "refined", "kernel": {"type": "gaussian", "size": 7, "sigma": 2.0},
              "policy": {"type": "refine", "tolerance_db": 60}}
    cfg.write_text(yaml.safe_dump({**STEPS, "steps": [*STEPS["steps"], refine]}))
    out = tmp_path / "steps"
    out.mkdir()
    result = invoke("run", scene, "-c", cfg, "--out-dir", out)
    assert result.exit_code == 0, result.stderr
    assert "steps smooth" in result.stderr
    settings = config.load(cfg)
    for st, single in settings.step_settings():
        alone = tmp_path / f"alone-{st.name}"
        alone.mkdir()
        one = tmp_path / f"{st.name}.yaml"
        one.write_text(yaml.safe_dump(single.to_dict()))
        assert invoke("run", scene, "-c", one, "--out-dir", alone, "-q").exit_code == 0
        suffix = st.output_suffix()
        for got, ref in ((f"scene{suffix}.satconv.tif", "scene.satconv.tif"),
                         (f"scene{suffix}.stride.tif", "scene.stride.tif")):
            with rasterio.open(out / got) as a, rasterio.open(alone / ref) as b:
                np.testing.assert_array_equal(a.read(), b.read())
                # the same tags, but for the report each names (its own run's)
                assert a.tags().pop("SATCONV_REPORT") == f"scene{suffix}.satconv.json"
                assert {**a.tags(), "SATCONV_REPORT": "scene.satconv.json"} == b.tags()
                assert (a.crs, a.transform) == (b.crs, b.transform)
        ra = json.loads((out / f"scene{suffix}.satconv.json").read_text())
        rb = json.loads((alone / "scene.satconv.json").read_text())
        for key in ("config", "fingerprint", "plan", "scene", "error"):
            assert ra[key] == rb[key], key
        assert ra["plan"]["read"].endswith("the input was decoded once")
        for key in ("kernel_evaluations", "tiles_per_stride"):
            assert ra["execute"][key] == rb["execute"][key], key
        assert set(rb["timings_s"]) <= set(ra["timings_s"])  # a single run's keys read too
        # the summary line's compute is what the step spent, as a single run's line says
        spent = 100 * ra["execute"]["evaluations_per_pixel"]
        assert f"{st.name} (compute {spent:.1f}%)" in result.stderr
    # the smooth ramp let at least one step use a coarse stride somewhere
    assert any(int(k) > 1 for st in ("smooth", "sobel", "wide") for k in json.loads(
        (out / f"scene.{st}.satconv.json").read_text())["plan"]["tiles_per_stride"])
    # and a rerun is up to date
    result = invoke("run", scene, "-c", cfg, "--out-dir", out, "--skip-existing")
    assert result.exit_code == 0 and "skipped" in result.stderr


def test_steps_at_stride_1_equal_scipy_and_read_each_tile_once(smooth_scene, tmp_path,
                                                                monkeypatch):
    scene, data = smooth_scene
    cfg = {**STEPS, "strides": [1]}
    cfg["steps"] = [{k: v for k, v in st.items() if k != "policy"} for st in STEPS["steps"]]
    path = tmp_path / "exact.yaml"
    path.write_text(yaml.safe_dump(cfg))
    calls = []
    real = raster_io.read_indexed

    def counting(ds, info, rows, cols, cval, **kw):
        calls.append((rows.size, cols.size))
        return real(ds, info, rows, cols, cval, **kw)

    monkeypatch.setattr(raster_io, "read_indexed", counting)
    result = invoke("run", scene, "-c", path, "-q")
    assert result.exit_code == 0, result.stderr
    ntiles = 5 * 6
    assert len(calls) == ntiles  # one read per tile for the three steps together
    valid = data != 0
    for st in cfg["steps"]:
        k = kernels.make_kernel(st["kernel"]["type"], st["kernel"]["size"],
                                st["kernel"].get("sigma", 1.0))
        with rasterio.open(tmp_path / f"scene{st.get('suffix', '.' + st['name'])}"
                                       ".satconv.tif") as ds:
            got = ds.read(masked=True).astype(np.float64).filled(np.nan)  # nodata -> NaN
        expected = np.stack([oracle.normalised_dense(b, v, k) for b, v in zip(data, valid,
                                                                                strict=True)])
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        ok = np.isfinite(expected)
        assert oracle.relative_error(got[ok], expected[ok]) < 1e-5


def test_steps_are_validated(tmp_path):
    scene = tmp_path / "s.tif"
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - {name: a, kernel: {type: box}}\n  - {name: a, kernel: "
                   "{type: sobel_x}}\n")
    result = invoke("run", scene, "-c", bad)
    assert result.exit_code == 2 and "steps" in result.stderr and "distinct" in result.stderr
    bad.write_text("steps:\n  - {name: a, kernel: {type: box, size: 4}}\n")
    result = invoke("run", scene, "-c", bad)
    assert result.exit_code == 2 and "steps.0.kernel.size" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text("steps:\n  - {name: a, kernel: {type: box}}\n")
    result = invoke("run", scene, "-c", good, "--resume")
    assert result.exit_code == 2 and "--resume" in result.stderr


@pytest.mark.parametrize("flag", [["--error-map"], ["--resume"]])
def test_single_kernel_options_are_refused_with_steps(smooth_scene, tmp_path, flag):
    """Options a steps: run cannot honour are refused up front, not silently dropped."""
    scene, _ = smooth_scene
    cfg = tmp_path / "steps.yaml"
    cfg.write_text(yaml.safe_dump(STEPS))
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("run", scene, "-c", cfg, "--out-dir", out, *flag)
    assert result.exit_code == 2
    assert flag[0] in result.stderr and "steps:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(out.iterdir()) == []


def test_all_steps_are_planned_in_one_pass_over_the_scene(smooth_scene, tmp_path,
                                                          monkeypatch):
    """Steps with different kernels (halos) share one plan pass: each tile is read once."""
    from satconv.planning import scan

    passes, reads = [], []
    real_shares, real_read = scan.map_shares, scan.raster_io.read_window_valid

    planning = []

    @contextlib.contextmanager
    def counting_shares(*args, **kwargs):
        passes.append(1)
        planning.append(True)
        with real_shares(*args, **kwargs) as summaries:
            yield summaries
        planning.clear()

    def counting_read(*args, **kwargs):
        if planning:
            reads.append(1)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(scan, "map_shares", counting_shares)
    scene, _ = smooth_scene
    cfg = tmp_path / "steps.yaml"
    cfg.write_text(yaml.safe_dump(STEPS))
    out = tmp_path / "out"
    out.mkdir()
    settings = config.load(cfg)
    from satconv import steps as steps_mod

    monkeypatch.setattr(scan.raster_io, "read_window_valid", counting_read)
    steps_mod.run_steps(scene, settings, out_dir=out, workers=1)
    assert passes == [1]
    with rasterio.open(scene) as ds:
        ntiles = (-(-ds.height // settings.tile_size)) * (-(-ds.width // settings.tile_size))
    assert len(reads) == ntiles


def test_a_single_stride_step_skips_tiles_without_data(write_tif, tmp_path):
    """Steps with one allowed stride are not planned; their tiles without a valid pixel are
    still skipped (0 in each stride map) and written as nodata."""
    data = np.full((1, 96, 96), 500, dtype="uint16")
    data[0, :, 40:] = np.arange(56, dtype="uint16") * 7 + 100
    data[0, :32, :32] = 0  # one tile without data
    scene = write_tif(data, nodata=0)
    cfg = tmp_path / "steps.yaml"
    cfg.write_text(yaml.safe_dump({"tile_size": 32, "strides": [2], "steps": [
        {"name": "box", "kernel": {"type": "box", "size": 3}},
        {"name": "sobel", "kernel": {"type": "sobel_x"}}]}))
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("run", scene, "-c", cfg, "--out-dir", out, "-q")
    assert result.exit_code == 0, result.output
    for suffix in (".box", ".sobel"):
        with rasterio.open(out / f"scene{suffix}.stride.tif") as sm:
            strides = sm.read(1)
        assert strides[0, 0] == 0 and (strides.ravel()[1:] > 0).all(), suffix
        with rasterio.open(out / f"scene{suffix}.satconv.tif") as ds:
            assert (ds.read_masks(1)[:32, :32] == 0).all()
