"""The Python API: ``satconv.run``, ``satconv.plan``, ``satconv.preview``, and the README's
example, executed as written."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

import satconv
from satconv.errors import ConfigError, InputError, OutputError, PlanError, UsageError
from satconv.scripts.cli import cli

ROOT = Path(__file__).resolve().parents[1]
YAML = "tile_size: 32\nstrides: [1, 2, 4, 8]\nkernel: {type: gaussian, size: 3, sigma: 0.8}\n"
AS_DICT = {"tile_size": 32, "strides": [1, 2, 4, 8],
           "kernel": {"type": "gaussian", "size": 3, "sigma": 0.8}}


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def read(path: str | Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def tile_costs(strides: np.ndarray, height: int, width: int, ts: int) -> float:
    ny, nx = strides.shape
    h = np.minimum(ts, height - np.arange(ny) * ts)
    w = np.minimum(ts, width - np.arange(nx) * ts)
    px = np.outer(h, w).astype(float)
    return float(np.where(strides > 0, px / np.maximum(strides, 1) ** 2, 0).sum() / px.sum())


# ---------------------------------------------------------------- the README example


def test_readme_example_runs(tmp_path, monkeypatch):
    blocks = readme_python_blocks()
    assert len(blocks) == 1, "the README has one Python example"
    (tmp_path / "sample_data").mkdir()
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "sample_data" / "sample_scene.tif", tmp_path / "sample_data")
    shutil.copy(ROOT / "configs" / "landsat-gaussian.yaml", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__readme__"})
    printed = out.getvalue()
    folder = tmp_path / "sample_data"
    made = sorted(p.name for p in folder.iterdir())
    assert made == ["sample_scene.quicklook.png", "sample_scene.satconv.json",
                    "sample_scene.satconv.tif", "sample_scene.stride.tif", "sample_scene.tif"]
    report = json.loads((folder / "sample_scene.satconv.json").read_text())
    assert report["config"]["strides"] == [1, 2, 4, 8]
    assert report["config"]["kernel"] == {"type": "gaussian", "size": 5, "sigma": 1.0}
    assert "sample_data/sample_scene.stride.tif" in printed
    assert "sample_data/sample_scene.quicklook.png" in printed
    assert "compute" in printed and "% of full resolution" in printed
    with rasterio.open(folder / "sample_scene.satconv.tif") as ds:
        assert (ds.width, ds.height, ds.count) == (2560, 2048, 4)


# ---------------------------------------------------------------- run


def test_import_satconv_is_light():
    code = ("import sys, satconv; satconv.__version__; "
            "print(sorted(m for m in ('numpy', 'rasterio', 'numba', 'PIL') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert res.stdout.strip() == "[]"
    assert {"run", "plan", "preview", "RunReport", "PlanResult", "Settings"} <= set(dir(satconv))


def test_run_returns_the_report_and_matches_the_cli(make_scene, write_config, tmp_path):
    scene, _ = make_scene(150, 170, bands=2, seed=9)
    cfg = write_config(YAML)
    a, b, c, d = (tmp_path / n for n in "abcd")
    for folder in (a, b, c, d):
        folder.mkdir()
    report = satconv.run(scene, cfg, out_dir=a)
    assert isinstance(report, satconv.RunReport)
    assert report.outputs == {"raster": str(a / "scene.satconv.tif"),
                              "stride_map": str(a / "scene.stride.tif"),
                              "report": str(a / "scene.satconv.json")}
    on_disk = json.loads((a / "scene.satconv.json").read_text())
    assert on_disk["plan"] == report.plan and on_disk["outputs"] == report.outputs
    with rasterio.open(a / "scene.stride.tif") as ds:
        strides = ds.read(1)
    assert report.plan["tiles_per_stride"] == {
        str(int(k)): int(v) for k, v in zip(*np.unique(strides, return_counts=True),
                                            strict=True)}
    assert report.plan["compute_fraction"] == pytest.approx(tile_costs(strides, 150, 170, 32),
                                                            abs=1e-6)
    # the same run from a dict, from Settings and from the command line
    satconv.run(scene, AS_DICT, out_dir=b)
    satconv.run(scene, satconv.load_config(AS_DICT), out_dir=c)
    res = CliRunner().invoke(cli, ["run", str(scene), "-c", str(cfg), "--out-dir", str(d), "-q"])
    assert res.exit_code == 0, res.output
    for other in (b, c, d):
        for name in ("scene.satconv.tif", "scene.stride.tif"):
            assert np.array_equal(read(a / name), read(other / name), equal_nan=True)


def test_run_several_inputs_returns_a_list(make_scene, tmp_path):
    s1, _ = make_scene(40, 40, name="one.tif")
    s2, _ = make_scene(40, 50, name="two.tif", seed=1)
    (tmp_path / "out").mkdir()
    reports = satconv.run([s1, str(s2)], AS_DICT, out_dir=tmp_path / "out", quicklook=True)
    assert [Path(r.input).name for r in reports] == ["one.tif", "two.tif"]
    assert [r.scene["width"] for r in reports] == [40, 50]
    for stem in ("one", "two"):
        assert (tmp_path / "out" / f"{stem}.quicklook.png").is_file()
    assert reports[1].outputs["quicklook"] == str(tmp_path / "out" / "two.quicklook.png")
    # and so does the report on disk (the rest of it as the run wrote it)
    on_disk = json.loads((tmp_path / "out" / "two.satconv.json").read_text())
    assert on_disk == json.loads(json.dumps(reports[1].to_dict()))


def test_run_progress_callback(make_scene):
    scene, _ = make_scene(100, 70)
    seen: dict[str, list[int]] = {}

    def progress(phase: str, total: int):
        seen[phase] = [total, 0]

        def step(n: int) -> None:
            seen[phase][1] += n

        return step

    satconv.run(scene, AS_DICT, progress=progress)
    tiles = 4 * 3
    assert seen == {"plan": [tiles, tiles], "execute": [tiles, tiles]}


def test_run_errors_are_exceptions(make_scene, tmp_path):
    scene, _ = make_scene(30, 30)
    with pytest.raises(ConfigError, match=r"kernel\.size: kernel size must be odd"):
        satconv.run(scene, {"kernel": {"size": 4}})
    with pytest.raises(ConfigError, match="colour: unknown key"):
        satconv.run(scene, {"colour": "red"})
    with pytest.raises(UsageError, match="output takes one input"):
        satconv.run([scene, scene], output=tmp_path / "x.tif")
    with pytest.raises(UsageError, match="threads"):
        satconv.run(scene, threads=0)
    with pytest.raises(UsageError, match="config"):
        satconv.run(scene, 42)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="nope.tif: no such file"):
        satconv.run(tmp_path / "nope.tif")
    with pytest.raises(OutputError, match="does not exist"):
        satconv.run(scene, out_dir=tmp_path / "missing")
    satconv.run(scene)
    with pytest.raises(OutputError, match="already exists"):
        satconv.run(scene)
    assert isinstance(satconv.run(scene, overwrite=True), satconv.RunReport)


def test_run_with_a_steps_config_runs_every_step(make_scene, tmp_path):
    """A ``steps:`` config runs each step, as ``satconv run -c`` does (it ran the top-level
    kernel alone, under the single-run names): one report per step, outputs named after the
    steps, each step's raster the convolution with that step's kernel (scipy)."""
    from scipy import ndimage

    scene, data = make_scene(40, 40, dtype="float32")
    cfg = {"strides": [1], "tile_size": 16,
           "steps": [{"name": "boxy", "kernel": {"type": "box", "size": 3}},
                     {"name": "lap", "kernel": {"type": "laplacian"}}]}
    (tmp_path / "out").mkdir()
    reports = satconv.run(scene, cfg, out_dir=tmp_path / "out")
    assert [Path(r.outputs["raster"]).name for r in reports] == [
        "scene.boxy.satconv.tif", "scene.lap.satconv.tif"]
    assert not (tmp_path / "out" / "scene.satconv.tif").exists()
    lap = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
    for r, k in zip(reports, (np.full((3, 3), 1 / 9), lap), strict=True):
        want = ndimage.convolve(data[0].astype(np.float64), k, mode="reflect")
        np.testing.assert_allclose(read(r.outputs["raster"])[0], want, rtol=1e-5, atol=1e-4)
    both = satconv.run([scene], cfg, out_dir=tmp_path / "out", overwrite=True)
    assert len(both) == 1 and len(both[0]) == 2


def test_run_refuses_inputs_that_would_share_their_outputs(make_scene, tmp_path):
    """Two scenes of one name into one out_dir: the second would replace the first's
    outputs. Refused before either runs, as the command line refuses it."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, _ = make_scene(20, 20, name="a/scene.tif")
    two, _ = make_scene(20, 20, name="b/scene.tif", seed=3)
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match=r"b/scene\.tif: would write the same output as"):
        satconv.run([one, two], out_dir=tmp_path / "out", overwrite=True)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("kwargs", [
    {"inputs": None}, {"inputs": 5}, {"inputs": b"scene.tif"}, {"inputs": [Path("a.tif"), 3]},
    {"overwrite": "no"}, {"quicklook": 1},
])
def test_run_arguments_of_the_wrong_type_are_usage_errors(make_scene, kwargs):
    scene, _ = make_scene(10, 10)
    args = {"inputs": scene, **kwargs}
    with pytest.raises(UsageError):
        satconv.run(args.pop("inputs"), **args)
    assert not scene.with_name("scene.satconv.tif").exists()


def test_what_the_cli_warns_about_is_a_python_warning(tmp_path):
    from tests.policy_support import shared_data

    rgb = shared_data() / "RGB.byte.tif"
    cfg = {"policy": {"type": "budget", "fraction": 0.001}}
    with pytest.warns(satconv.SatconvWarning, match=r"RGB\.byte\.tif: policy\.fraction 0\.001 "
                      r"is below the least"):
        report = satconv.run(rgb, cfg, output=tmp_path / "o.tif")
    assert len(report.warnings) == 1 and "policy.fraction" in report.warnings[0]


def test_plan_with_a_steps_config_plans_every_step_as_its_run_does(write_tif, tmp_path):
    """One plan per step, each the stride map the step's run executes; the command line
    prints a block per step. (A smooth scene with fine texture: the Gaussian step plans
    strides above 1, the Sobel step stride 1.)"""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.normal(size=(64, 96)), 4) * 30000 + 20000
    scene = write_tif((smooth + rng.normal(size=smooth.shape) * 20).astype(np.uint16)[None])
    cfg = {"tile_size": 16, "strides": [1, 2, 4],
           "steps": [{"name": "smooth", "kernel": {"type": "gaussian", "size": 5}},
                     {"name": "edges", "kernel": {"type": "sobel_x"}}]}
    plans = satconv.plan(scene, cfg)
    assert len(plans) == 2
    (tmp_path / "out").mkdir()
    reports = satconv.run(scene, cfg, out_dir=tmp_path / "out")
    for p, r in zip(plans, reports, strict=True):
        np.testing.assert_array_equal(p.strides, read(r.outputs["stride_map"])[0])
    assert not (plans[1].strides == plans[0].strides).all()  # the steps plan apart
    cfg_path = tmp_path / "steps.yaml"
    cfg_path.write_text(json.dumps(cfg))
    result = CliRunner().invoke(cli, ["plan", str(scene), "-c", str(cfg_path)])
    assert result.exit_code == 0, result.stderr
    assert re.findall(r"^step (\w+): ", result.stdout, re.M) == ["smooth", "edges"]
    refused = CliRunner().invoke(cli, ["plan", str(scene), "-c", str(cfg_path), "-o",
                                       str(tmp_path / "p.tif")])
    assert refused.exit_code == 2 and not (tmp_path / "p.tif").exists()
    with pytest.raises(UsageError, match="a plan per step"):
        satconv.plan(scene, cfg, output=tmp_path / "p.tif")


# ---------------------------------------------------------------- plan and preview


def test_plan_result_and_executing_it(make_scene, tmp_path):
    scene, _ = make_scene(200, 150, seed=6)
    result = satconv.plan(scene, AS_DICT)
    assert isinstance(result, satconv.PlanResult)
    assert result.strides.shape == (7, 5) and (result.width, result.height) == (150, 200)
    assert sum(result.tiles_per_stride.values()) == 35
    assert result.compute_fraction == pytest.approx(tile_costs(result.strides, 200, 150, 32))
    # saved, edited by hand, executed
    saved = satconv.plan(scene, AS_DICT, output=tmp_path / "plan.tif")
    assert np.array_equal(read(tmp_path / "plan.tif")[0], saved.strides)
    edited = saved.strides.copy()
    edited[0, :] = 8
    edited[-1, -1] = 1
    with rasterio.open(tmp_path / "plan.tif", "r+") as ds:
        ds.write(edited.astype(np.uint8), 1)
    report = satconv.run(scene, AS_DICT, plan=tmp_path / "plan.tif")
    assert np.array_equal(read(report.outputs["stride_map"])[0], edited)
    with pytest.raises(PlanError):
        satconv.run(scene, {**AS_DICT, "tile_size": 64}, plan=tmp_path / "plan.tif",
                    overwrite=True)


def test_plan_save_refuses_to_overwrite(make_scene, tmp_path):
    scene, _ = make_scene(64, 64)
    result = satconv.plan(scene, AS_DICT)
    p = result.save(tmp_path / "s.tif")
    assert np.array_equal(read(p)[0], result.strides)
    with pytest.raises(OutputError, match="already exists"):
        result.save(tmp_path / "s.tif")
    result.save(tmp_path / "s.tif", overwrite=True)


def test_preview_api(make_scene, tmp_path):
    scene, _ = make_scene(64, 96)
    satconv.run(scene, AS_DICT)
    png = satconv.preview(scene, size=48)
    assert png == tmp_path / "scene.quicklook.png"
    from PIL import Image

    with Image.open(png) as im:
        layout = json.loads(im.text["satconv:layout"])
    x0, y0, x1, y1 = layout["panels"]["stride_map"]
    assert (x1 - x0, y1 - y0) == (48, 32)
    with pytest.raises(UsageError):
        satconv.preview(scene, size=4)
