"""satconv inside the tools GIS people already use: ``rio satconv`` (rasterio's plugin entry
point) and shell completion.

``rio`` finds plugins through installed package metadata. So that these tests check this
checkout whichever satconv the environment has installed, they give ``rio`` a minimal
distribution whose entry points are the ``[project.entry-points."rasterio.rio_plugins"]`` table
of this checkout's ``pyproject.toml``, with the checkout first on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import click
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from satconv.scripts.cli import cli

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GROUP = "rasterio.rio_plugins"


def plugin_entry_points() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return data["project"]["entry-points"][GROUP]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("site")
    dist = site / "satconv_checkout-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: satconv-checkout\n"
                                   "Version: 0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in plugin_entry_points().items())
    (dist / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")
    path = [str(site), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def rio(*args: object, env: dict[str, str], cwd: Path | None = None):
    return subprocess.run([str(BIN / "rio"), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=180)


def satconv(*args: object, env: dict[str, str], cwd: Path | None = None):
    return subprocess.run([sys.executable, "-m", "satconv", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=180)


# ---------------------------------------------------------------- the entry point


def test_pyproject_registers_the_satconv_commands():
    eps = plugin_entry_points()
    assert list(eps) == ["satconv"]
    module, _, attr = eps["satconv"].partition(":")
    group = getattr(import_module(module), attr)
    assert isinstance(group, click.Group)
    ctx = click.Context(group)
    assert {"run", "plan", "preview", "config"} <= set(group.list_commands(ctx))
    for name in ("run", "plan", "preview"):  # the very commands of `satconv`, not copies
        assert group.get_command(ctx, name) is cli.commands[name]


def test_rio_help_lists_satconv(env):
    res = rio("--help", env=env)
    assert res.returncode == 0, res.stderr
    lines = [ln.strip() for ln in res.stdout.splitlines()]
    assert any(ln.startswith("satconv ") and "Adaptive-stride" in ln for ln in lines), res.stdout


def test_rio_help_without_the_plugin_does_not_list_it():
    """Without the entry point (and without an installed satconv registering it) rio has no
    satconv command: what the test above sees comes from the entry point."""
    from importlib.metadata import entry_points

    if any(ep.name == "satconv" for ep in entry_points(group=GROUP)):
        pytest.skip("the installed satconv registers the plugin itself")
    res = rio("--help", env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert not any(ln.strip().startswith("satconv ") for ln in res.stdout.splitlines())


def test_rio_satconv_help_lists_its_commands(env):
    res = rio("satconv", "--help", env=env)
    assert res.returncode == 0, res.stderr
    for name in ("run", "plan", "preview", "config"):
        assert any(ln.strip().startswith(name + " ") for ln in res.stdout.splitlines()), name
    version = rio("satconv", "--version", env=env)
    assert version.returncode == 0 and "satconv" in version.stdout


def test_rio_satconv_run_gives_the_same_outputs(make_scene, write_config, tmp_path, env):
    scene, _ = make_scene(300, 260, bands=2, dtype="uint16", seed=4)
    cfg = write_config("tile_size: 32\nstrides: [1, 2, 4, 8]\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = rio("satconv", "run", scene, "-c", cfg, "--out-dir", tmp_path / "a", "--quicklook",
            "-q", env=env)
    assert a.returncode == 0, a.stderr
    b = satconv("run", scene, "-c", cfg, "--out-dir", tmp_path / "b", "--quicklook", "-q",
                env=env)
    assert b.returncode == 0, b.stderr
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "scene.quicklook.png", "scene.satconv.json", "scene.satconv.tif", "scene.stride.tif"]
    for name in ("scene.satconv.tif", "scene.stride.tif"):
        with rasterio.open(tmp_path / "a" / name) as x, rasterio.open(tmp_path / "b" / name) as y:
            px, py = dict(x.profile), dict(y.profile)
            nx, ny = px.pop("nodata"), py.pop("nodata")
            assert px == py and (nx == ny or (np.isnan(nx) and np.isnan(ny)))
            assert np.array_equal(x.read(), y.read(), equal_nan=True), name
            assert x.tags() == y.tags()
    with rasterio.open(tmp_path / "a" / "scene.stride.tif") as ds:
        assert len(np.unique(ds.read())) > 1  # a real plan, not one stride everywhere
    from PIL import Image

    with Image.open(tmp_path / "a" / "scene.quicklook.png") as x, \
            Image.open(tmp_path / "b" / "scene.quicklook.png") as y:
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_rio_satconv_errors_keep_satconvs_exit_codes(tmp_path, env, write_config):
    missing = rio("satconv", "run", tmp_path / "nope.tif", env=env)
    assert missing.returncode == 1
    assert "nope.tif: no such file" in missing.stderr and "Traceback" not in missing.stderr
    bad = write_config("kernel: {size: 4}\n")
    assert rio("satconv", "run", tmp_path / "nope.tif", "-c", bad, env=env).returncode == 2
    usage = rio("satconv", "run", "--bogus", env=env)
    assert usage.returncode == 2
    (line,) = usage.stderr.splitlines()
    assert line.startswith("satconv: run: No such option") and "--bogus" in line
    assert line.endswith("(see rio satconv run --help)")


# ---------------------------------------------------------------- shell completion


def test_completion_script_is_produced(env):
    """What the README tells users to run: ``_SATCONV_COMPLETE=bash_source satconv``."""
    res = satconv(env={**env, "_SATCONV_COMPLETE": "bash_source"})
    assert res.returncode == 0, res.stderr
    assert "complete -o nosort -F _satconv_completion satconv" in res.stdout
    assert "_SATCONV_COMPLETE=bash_complete" in res.stdout


@pytest.mark.parametrize("shell,marker", [
    ("zsh", "compdef _satconv_completion satconv"),
    ("fish", "complete --no-files --command satconv"),
])
def test_completion_script_for_other_shells(shell, marker):
    res = CliRunner().invoke(cli, [], prog_name="satconv",
                             env={"_SATCONV_COMPLETE": f"{shell}_source"})
    assert res.exit_code == 0, res.output
    assert marker in res.output


@pytest.mark.parametrize("words,cword,want", [
    ("satconv pre", "1", "plain,preview"),
    ("satconv run --quick", "2", "plain,--quicklook"),
    ("satconv preview --si", "2", "plain,--size"),
])
def test_completion_completes_commands_and_options(words, cword, want):
    res = CliRunner().invoke(cli, [], prog_name="satconv",
                             env={"_SATCONV_COMPLETE": "bash_complete", "COMP_WORDS": words,
                                  "COMP_CWORD": cword})
    assert res.exit_code == 0, res.output
    assert res.output.split() == [want]
