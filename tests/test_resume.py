"""Issue 6: a run killed at any moment (SIGKILL) and run again ends with the outputs of an
uninterrupted run; no finished-looking file exists in between; --resume continues from the
finished row bands (part files and a checkpoint beside the staged output)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from satconv import parts
from satconv.scripts.cli import cli

from .conftest import write_geotiff

REPO = Path(__file__).resolve().parents[1]
FINALS = ("big.satconv.tif", "big.stride.tif", "big.satconv.json")


def popen(*args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "satconv", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 1800 x 1800, 2-band scene, a 7x7 kernel on tiles of 128 (15 x 15 tiles, 4 parts), and
    the outputs of one uninterrupted run (which also warms numba's cache)."""
    root = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(6)
    data = rng.integers(0, 65535, size=(2, 1800, 1800), dtype=np.uint16)
    data[:, :300, :] = 1000  # flat water: coarse strides there, fine ones elsewhere
    scene = write_geotiff(root / "big.tif", data)
    weights = np.round(rng.normal(size=(7, 7)), 2).tolist()
    cfg = root / "c.yaml"
    cfg.write_text(f"kernel: {{type: custom, weights: {weights}}}\ntile_size: 128\n")
    ref = root / "ref"
    ref.mkdir()
    t0 = time.monotonic()
    result = invoke("run", scene, "-c", cfg, "--out-dir", ref, "-q")
    assert result.exit_code == 0, result.stderr
    return {"scene": scene, "cfg": cfg, "ref": ref, "seconds": time.monotonic() - t0,
            "root": root}


def assert_same_outputs(got: Path, ref: Path) -> None:
    """Pixels, georeferencing, tags, nodata and the stride map equal; reports equal apart
    from timings and memory."""
    for name in ("big.satconv.tif", "big.stride.tif"):
        with rasterio.open(got / name) as a, rasterio.open(ref / name) as b:
            np.testing.assert_array_equal(a.read(), b.read())
            np.testing.assert_array_equal(a.read_masks(), b.read_masks())
            assert (a.crs, a.transform, a.dtypes) == (b.crs, b.transform, b.dtypes)
            assert a.tags() == b.tags()
            assert str(a.nodata) == str(b.nodata)
    ra, rb = (json.loads((d / "big.satconv.json").read_text()) for d in (got, ref))
    for key in ("config", "fingerprint", "plan", "scene"):
        assert ra[key] == rb[key]
    assert ra["execute"]["kernel_evaluations"] == rb["execute"]["kernel_evaluations"]


def kill_during_run(out: Path, cfg: Path, scene: Path, after: float | None = None,
                    parts_done: int | None = None, resume: bool = True,
                    staged: bool = False, after_work: float | None = None,
                    extra: tuple[str, ...] = ()) -> set[str]:
    """Start a run into ``out``, SIGKILL it ``after`` seconds (or ``after_work`` seconds after
    its first staged or part file appears, or once ``parts_done`` part files exist, or once
    its staged output exists), and return every name seen in ``out`` while it ran."""
    args = ["run", scene, "-c", cfg, "--out-dir", out, "-q", *extra] + (
        ["--resume"] if resume else [])
    proc = popen(*args)
    seen: set[str] = set()
    t0 = time.monotonic()
    t_work = None
    try:
        while proc.poll() is None:
            names = set(os.listdir(out))
            seen |= names
            done = [n for n in names if n.startswith(".big.satconv.tif.satconv-part-")
                    and n.endswith(".tif")]
            if t_work is None and any(n.endswith(".partial") or "-part-" in n for n in names):
                t_work = time.monotonic()
            if (after is not None and time.monotonic() - t0 >= after) or \
                    (after_work is not None and t_work is not None
                     and time.monotonic() - t_work >= after_work) or \
                    (parts_done is not None and len(done) >= parts_done) or \
                    (staged and f".big.satconv.tif.{proc.pid}.partial" in names):
                proc.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() - t0 < 120
            time.sleep(0.005)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
    return seen


def no_finished_looking_file(out: Path) -> bool:
    names = set(os.listdir(out))
    return not names & set(FINALS) or set(FINALS) <= names  # none, or a finished run's three


def test_kill_after_some_bands_then_resume(big, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    kill_during_run(out, big["cfg"], big["scene"], parts_done=2)
    left = set(os.listdir(out))
    assert not left & set(FINALS), left
    assert ".big.satconv.tif.satconv.ckpt" in left and ".big.satconv.tif.lock" in left
    result = invoke("run", big["scene"], "-c", big["cfg"], "--out-dir", out, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "took over the lock of a satconv run that is gone" in result.stderr
    assert "resuming an interrupted run" in result.stderr
    report = json.loads((out / "big.satconv.json").read_text())
    assert report["execute"]["resumed_tiles"] >= 2 * 15
    assert_same_outputs(out, big["ref"])
    assert sorted(os.listdir(out)) == sorted(FINALS)  # parts, checkpoint, lock: all gone


def _kill_while_writing_a_part(out: Path, cfg: Path, scene: Path) -> list[str]:
    """SIGKILL a --resume run the moment a part file is being written after a finished one;
    the names of the part files it was writing (tries again in the rare case the part was
    renamed between the look and the kill)."""
    for _ in range(5):
        for p in out.iterdir():
            p.unlink()
        proc = popen("run", scene, "-c", cfg, "--out-dir", out, "-q", "--resume")
        try:
            while proc.poll() is None:
                names = os.listdir(out)
                done = [n for n in names if "-part-" in n and n.endswith(".tif")]
                if done and any("-part-" in n and n.endswith(".partial") for n in names):
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.002)
        finally:
            proc.wait(timeout=60)
            proc.stdout.close()
            proc.stderr.close()
        making = [n for n in os.listdir(out) if "-part-" in n and n.endswith(".partial")]
        if making:
            return making
    raise AssertionError("never killed while a part was being written")


def test_the_parent_of_a_killed_run_removes_its_unfinished_parts(big, tmp_path):
    """--timeout (or a --jobs worker that dies) kills a child; its parent then removes what
    the child had staged. Part files in the making were left behind, holding disk space
    until the next run: they carry the writer's pid, and only that pid's go, never a
    finished part (kept for --resume) nor another run's."""
    out = tmp_path / "out"
    out.mkdir()
    making = _kill_while_writing_a_part(out, big["cfg"], big["scene"])
    pid = int(re.search(r"-part-\d+\.tif\.(\d+)\.", making[0]).group(1))
    other = out / f".big.satconv.tif.satconv-part-00009.tif.{pid + 1}.abc.partial"
    other.write_bytes(b"")
    finished = [n for n in os.listdir(out) if "-part-" in n and n.endswith(".tif")]
    parts.remove_unfinished(out / "big.satconv.tif", pid)
    left = set(os.listdir(out))
    assert not left & set(making) and other.name in left and set(finished) <= left


def test_rerun_clears_what_a_run_killed_after_committing_left(big, tmp_path):
    """A resumable run killed between committing its outputs and removing its parts and
    checkpoint: a rerun with --resume --skip-existing skips the input and removes them."""
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("run", big["scene"], "-c", big["cfg"], "--out-dir", out, "--resume", "-q")
    assert result.exit_code == 0, result.stderr
    raster = out / "big.satconv.tif"
    (out / parts.part_path(raster, 0).name).write_bytes(raster.read_bytes())
    parts.checkpoint_path(raster).write_text("{}")
    result = invoke("run", big["scene"], "-c", big["cfg"], "--out-dir", out, "--resume",
                    "--skip-existing")
    assert result.exit_code == 0, result.stderr
    assert "discarded what an interrupted run left (its outputs were already complete)" in \
        result.stderr
    assert sorted(os.listdir(out)) == sorted(FINALS)
    assert_same_outputs(out, big["ref"])


def test_sigkill_at_random_moments_then_rerun(big, tmp_path):
    rng = random.Random(int(os.environ.get("SATCONV_KILL_SEED", "6")))
    span = max(2.0, 1.5 * big["seconds"])  # counted from the first file the run stages
    for i in range(3):
        out = tmp_path / f"out{i}"
        out.mkdir()
        after = rng.uniform(0.0, span)
        seen = kill_during_run(out, big["cfg"], big["scene"], after_work=after)
        assert no_finished_looking_file(out), (after, sorted(os.listdir(out)))
        assert any(n.endswith(".partial") for n in seen) or set(FINALS) <= seen, (after, seen)
        result = invoke("run", big["scene"], "-c", big["cfg"], "--out-dir", out, "--resume",
                        "--skip-existing", "-q")
        assert result.exit_code == 0, (after, result.stderr)
        assert_same_outputs(out, big["ref"])
        assert sorted(os.listdir(out)) == sorted(FINALS), after


def test_kill_without_resume_then_plain_rerun(big, tmp_path):
    """A plain run killed: the rerun takes the stale lock over, removes the dead run's staged
    files and writes everything again."""
    out = tmp_path / "out"
    out.mkdir()
    seen = kill_during_run(out, big["cfg"], big["scene"], resume=False, staged=True)
    assert not set(os.listdir(out)) & set(FINALS)
    assert any(n.endswith(".partial") for n in seen)
    result = invoke("run", big["scene"], "-c", big["cfg"], "--out-dir", out)
    assert result.exit_code == 0, result.stderr
    assert_same_outputs(out, big["ref"])
    assert sorted(os.listdir(out)) == sorted(FINALS)


def _resumable_run(big, tmp_path):
    """``satconv run --resume`` of the big scene into ``tmp_path/out``, in this process."""
    out = tmp_path / "out"
    out.mkdir()
    return out, CliRunner().invoke(cli, ["run", str(big["scene"]), "-c", str(big["cfg"]),
                                         "--out-dir", str(out), "--resume", "-q"])


def test_a_resumable_run_stopped_before_its_first_part_says_its_plan_is_kept(big, tmp_path,
                                                                           monkeypatch):
    """Stopped once planned but before a part is finished, a --resume run keeps its
    checkpoint (the plan, which the next run does not make again) and says so, rather than
    "nothing written"."""
    @contextlib.contextmanager
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
        yield  # (a context manager, as compute_tiles is)

    monkeypatch.setattr(parts, "compute_tiles", stopped)
    out, result = _resumable_run(big, tmp_path)
    assert result.exit_code == 130
    assert result.stderr.strip() == (f"satconv: {big['scene']}: interrupted, its plan kept "
                                     "for --resume")
    assert (out / ".big.satconv.tif.satconv.ckpt").exists()
    assert parts.finished_parts(out / "big.satconv.tif") == 0


def test_checkpoint_of_another_config_is_not_used(big, tmp_path, monkeypatch):
    """Resume only continues the same input and config: a checkpoint made with another
    kernel is discarded, and the result is that of the new config."""
    out = tmp_path / "out"
    out.mkdir()
    calls = {"n": 0}
    real = parts.PartsEngine.part_done

    def crash_after_two(self, k, evaluations, record):
        real(self, k, evaluations, record)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as a Ctrl-C: the finished parts stay

    monkeypatch.setattr(parts.PartsEngine, "part_done", crash_after_two)
    other = tmp_path / "other.yaml"
    other.write_text("kernel: {type: box, size: 5}\ntile_size: 128\n")
    result = CliRunner().invoke(cli, ["run", str(big["scene"]), "-c", str(other), "--out-dir",
                                      str(out), "--resume", "-q"])
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "kept for --resume" in result.stderr
    assert (out / ".big.satconv.tif.satconv.ckpt").exists()
    monkeypatch.setattr(parts.PartsEngine, "part_done", real)
    result = invoke("run", big["scene"], "-c", big["cfg"], "--out-dir", out, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "discarded what an interrupted run left" in result.stderr
    assert json.loads((out / "big.satconv.json").read_text())["execute"]["resumed_tiles"] == 0
    assert_same_outputs(out, big["ref"])


def test_resume_without_checkpoint_equals_plain_run(big, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("run", big["scene"], "-c", big["cfg"], "--out-dir", out, "--resume", "-q")
    assert result.exit_code == 0, result.stderr
    assert_same_outputs(out, big["ref"])
    assert sorted(os.listdir(out)) == sorted(FINALS)


def test_resumed_refine_run_writes_the_strides_it_executed(big, tmp_path):
    """With refine the strides are decided during execution: a run in resumable parts writes
    the same stride map, error map and error report as a plain run, not the starting
    strides."""
    cfg = tmp_path / "refine.yaml"
    cfg.write_text(big["cfg"].read_text() + "policy: {type: refine, tolerance_db: 40}\n")
    plain, parted = tmp_path / "plain", tmp_path / "parted"
    for out, extra in ((plain, []), (parted, ["--resume"])):
        out.mkdir()
        result = invoke("run", big["scene"], "-c", cfg, "--out-dir", out, "-q", "--error-map",
                        *extra)
        assert result.exit_code == 0, result.stderr
    with rasterio.open(plain / "big.error.tif") as a, \
            rasterio.open(parted / "big.error.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    ra, rb = (json.loads((d / "big.satconv.json").read_text()) for d in (plain, parted))
    assert ra["error"] == rb["error"] and ra["error"]
    assert ra["execute"]["tiles_per_stride"] == rb["execute"]["tiles_per_stride"]
    report = json.loads((parted / "big.satconv.json").read_text())
    assert report["execute"]["parts"] > 1
    with rasterio.open(plain / "big.stride.tif") as a, \
            rasterio.open(parted / "big.stride.tif") as b:
        executed, got = a.read(1), b.read(1)
    np.testing.assert_array_equal(got, executed)
    assert len(np.unique(executed)) > 1  # refined somewhere, not left at the start
    with rasterio.open(plain / "big.satconv.tif") as a, \
            rasterio.open(parted / "big.satconv.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def _killed_at_the_last_rename(monkeypatch, scene: Path, cfg: Path, out: Path) -> None:
    """Run until the outputs are renamed into place and stop it (as SIGKILL would, but
    after the staged files are cleaned) just before the report, which goes last."""
    from satconv import api, config, raster_io

    real = os.replace

    def replace(src, dst):
        if str(dst).endswith(".satconv.json"):
            raise SystemExit(137)
        real(src, dst)

    monkeypatch.setattr(raster_io.os, "replace", replace)
    with pytest.raises(SystemExit):
        api.run_scene(scene, config.load(str(cfg)), out_dir=out)
    monkeypatch.setattr(raster_io.os, "replace", real)


@pytest.mark.parametrize("flags", [[], ["--skip-existing", "--resume"]],
                         ids=["plain", "cron"])
def test_killed_between_renames_then_the_same_command_completes(big, tmp_path, monkeypatch,
                                                                 flags):
    """Killed after the raster and stride map are renamed but before the report: the same
    command again (plain, or the README's cron line) redoes the set."""
    out = tmp_path / "out"
    out.mkdir()
    _killed_at_the_last_rename(monkeypatch, big["scene"], big["cfg"], out)
    assert sorted(os.listdir(out)) == ["big.satconv.tif", "big.stride.tif"]
    result = invoke("run", big["scene"], "-c", big["cfg"], "--out-dir", out, "-q", *flags)
    assert result.exit_code == 0, result.stderr
    assert_same_outputs(out, big["ref"])


def test_a_killed_commit_of_another_config_is_not_replaced(big, tmp_path, monkeypatch):
    """What a run of another config left is not this run's to replace."""
    out = tmp_path / "out"
    out.mkdir()
    _killed_at_the_last_rename(monkeypatch, big["scene"], big["cfg"], out)
    other = tmp_path / "other.yaml"
    other.write_text(big["cfg"].read_text() + "reconstruction: nearest\n")
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    for flags in ([], ["--skip-existing"]):
        result = invoke("run", big["scene"], "-c", other, "--out-dir", out, *flags)
        assert result.exit_code == 1 and "--overwrite" in result.stderr
        assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before


def test_another_runs_finished_raster_is_not_taken_for_a_killed_commit(big, tmp_path):
    """``-o out/big.satconv.tif`` after an ``--out-dir out`` run of the same config: its
    raster name is that run's finished raster, but not this run's (its report would be
    ``big.satconv.satconv.json``): refused without --overwrite, nothing touched."""
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("run", big["scene"], "-c", big["cfg"], "--out-dir", out, "-q")
    assert result.exit_code == 0, result.stderr
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    result = invoke("run", big["scene"], "-c", big["cfg"], "-o", out / "big.satconv.tif", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(
        f"{out / 'big.satconv.tif'}: already exists (use --overwrite to replace it)")
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before


def test_resume_redoes_a_damaged_part(big, tmp_path):
    """A finished part that was damaged afterwards (truncated) is computed again, not
    reported on every rerun."""
    out = tmp_path / "out"
    out.mkdir()
    kill_during_run(out, big["cfg"], big["scene"], parts_done=2)
    part = parts.part_path(out / "big.satconv.tif", 0)
    assert part.exists()
    with open(part, "r+b") as f:
        f.truncate(part.stat().st_size // 2)
    result = invoke("run", big["scene"], "-c", big["cfg"], "--out-dir", out, "--resume")
    assert result.exit_code == 0, result.stderr
    assert_same_outputs(out, big["ref"])


def test_a_resumed_refine_run_equals_an_uninterrupted_one(big, tmp_path):
    """Killed after two parts and resumed: the rest is executed with the whole plan (the
    refinement rules and the error model, not only the starting strides), so pixels, stride
    map, error map and error report equal an uninterrupted run's."""
    cfg = tmp_path / "refine.yaml"  # a low-pass kernel: strides above 1 are allowed
    cfg.write_text("kernel: {type: gaussian, size: 7, sigma: 2.0}\ntile_size: 128\n"
                   "policy: {type: refine, tolerance_db: 40}\n")
    plain, resumed = tmp_path / "plain", tmp_path / "resumed"
    plain.mkdir()
    resumed.mkdir()
    result = invoke("run", big["scene"], "-c", cfg, "--out-dir", plain, "-q", "--error-map")
    assert result.exit_code == 0, result.stderr
    kill_during_run(resumed, cfg, big["scene"], parts_done=2, extra=("--error-map",))
    result = invoke("run", big["scene"], "-c", cfg, "--out-dir", resumed, "-q",
                    "--error-map", "--resume")
    assert result.exit_code == 0, result.stderr
    ra, rb = (json.loads((d / "big.satconv.json").read_text()) for d in (plain, resumed))
    assert rb["execute"]["resumed_tiles"] > 0
    assert len(ra["execute"]["tiles_per_stride"]) > 1  # refined somewhere
    assert ra["error"] == rb["error"]
    assert ra["execute"]["kernel_evaluations"] == rb["execute"]["kernel_evaluations"]
    for name in ("big.satconv.tif", "big.stride.tif", "big.error.tif"):
        with rasterio.open(plain / name) as a, rasterio.open(resumed / name) as b:
            np.testing.assert_array_equal(a.read(), b.read())


def test_a_resumable_run_stopped_before_any_part_says_nothing_was_kept(big, tmp_path,
                                                                        monkeypatch):
    """Stopped while planning (or waiting on a lock), a --resume run has finished no part:
    it says so, rather than promising parts kept for --resume."""
    from satconv import api

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "make_plan", stopped)
    out, result = _resumable_run(big, tmp_path)
    assert result.exit_code == 130
    assert result.stderr.strip() == f"satconv: {big['scene']}: interrupted, nothing written"
