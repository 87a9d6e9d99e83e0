"""Issue 6: batches — globs, lists, --jobs, one bad input never stops the others, idempotent
reruns (--skip-existing), and the summary."""

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
from click.testing import CliRunner

from satconv import batch, config
from satconv.scripts.cli import cli

from . import oracle
from .conftest import random_image, slow_pair, wait_until_computing, write_geotiff

REPO = Path(__file__).resolve().parents[1]
#: every tile at stride 1: the output is the dense convolution, checked against scipy
EXACT = "kernel: {type: gaussian, size: 3, sigma: 1.0}\ntile_size: 32\nstrides: [1]\n"


def satconv(*args: object, cwd: Path | None = None, timeout: float = 120,
            ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "satconv", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def invoke(*args: object, cwd: Path | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def gauss3() -> np.ndarray:
    return config.from_dict({"kernel": {"type": "gaussian", "size": 3, "sigma": 1.0}}
                            ).kernel.array()


def scene(folder: Path, name: str, seed: int, shape=(1, 70, 90)) -> tuple[Path, np.ndarray]:
    data = random_image(np.random.default_rng(seed), shape, "uint16")
    return write_geotiff(folder / name, data), data


def terminate_when(ready, folder: Path, *args: object) -> tuple[int, str]:
    """Run satconv with ``args``; SIGTERM it (as cron or systemd would) once
    ``ready(names in folder)``; return its exit code and stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "satconv", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not ready(os.listdir(folder)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - t0 < 60
            time.sleep(0.005)
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def broken_inputs(folder: Path) -> list[Path]:
    """A truncated TIFF, a text file named .tif, and a name that does not exist."""
    trunc = folder / "truncated.tif"
    trunc.write_bytes(b"II*\x00" + b"\x00" * 100)
    text = folder / "notes.tif"
    text.write_text("not a raster\n")
    return [trunc, text, folder / "missing.tif"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_batch_of_good_and_broken_inputs(tmp_path, jobs):
    src = tmp_path / "in"
    src.mkdir()
    good = [scene(src, f"g{i}.tif", i) for i in range(3)]
    bad = broken_inputs(src)
    out = tmp_path / "out"
    out.mkdir()
    cfg = tmp_path / "exact.yaml"
    cfg.write_text(EXACT)
    args = [good[0][0], bad[0], good[1][0], bad[1], bad[2], good[2][0]]
    proc = satconv("run", *args, "--out-dir", out, "-c", cfg, "--jobs", jobs, "-q")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    for b in bad:  # each broken input named in exactly one line
        naming = [ln for ln in lines if b.name in ln]
        assert len(naming) == 1, lines
        assert naming[0].startswith(f"satconv: {b}: ")
    assert lines[-1] == "satconv: 3 of 6 inputs failed"
    assert len(lines) == 4
    # the good ones are complete and exact; nothing at all for the broken ones, no leftovers
    assert listing(out) == sorted(f"g{i}{ext}" for i in range(3)
                                  for ext in (".satconv.json", ".satconv.tif", ".stride.tif"))
    for i, (_, data) in enumerate(good):
        with rasterio.open(out / f"g{i}.satconv.tif") as ds:
            got = ds.read()
        assert oracle.relative_error(got, oracle.dense(data, gauss3(), "reflect")) < 1e-5


def test_globs_lists_and_outputs_not_taken_as_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenes").mkdir()
    (tmp_path / "more").mkdir()
    for i in range(3):
        scene(tmp_path / "scenes", f"s{i}.tif", i, (1, 20, 20))
    scene(tmp_path / "more", "m.tif", 7, (1, 20, 20))
    lst = tmp_path / "list.txt"
    lst.write_text("# tonight's extra scenes\n\nmore/m.tif\nscenes/s0.tif\n")
    result = invoke("run", "scenes/*.tif", "--from-list", lst, "-q")
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "scenes").glob("*.satconv.tif"))) == 3
    assert (tmp_path / "more" / "m.satconv.tif").exists()
    # a rerun of the same pattern with the outputs beside the inputs: the outputs (*.satconv.tif,
    # *.stride.tif) are not inputs, so everything is simply up to date
    result = invoke("run", "scenes/*.tif", "--skip-existing", "--log-format", "json", "-q")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(ln) for ln in result.stderr.splitlines()]
    assert sorted(e["input"] for e in events if e["event"] == "skipped") == \
        ["scenes/s0.tif", "scenes/s1.tif", "scenes/s2.tif"]
    assert not [e for e in events if e["event"] in ("done", "failed")]
    assert batch.expand_inputs(["scenes/*.tif", "scenes/s1.tif"]) == \
        ["scenes/s0.tif", "scenes/s1.tif", "scenes/s2.tif"]
    # one file by other spellings is one input (it failed as 'would write the same output');
    # a link of another name is an input of its own (its outputs have its name)
    (tmp_path / "scenes" / "link.tif").symlink_to(tmp_path / "scenes" / "s2.tif")
    assert batch.expand_inputs(["./scenes/s1.tif", str(tmp_path / "scenes" / "s1.tif"),
                                "scenes//s1.tif", "scenes/s2.tif", "scenes/link.tif"]) == \
        ["./scenes/s1.tif", "scenes/s2.tif", "scenes/link.tif"]


def test_pattern_matching_nothing_fails_named_and_others_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scene(tmp_path, "a.tif", 0, (1, 20, 20))
    result = invoke("run", "nothing/*.tif", "a.tif", "-q")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "satconv: nothing/*.tif: no such file (as a pattern, it matched no file)",
        "satconv: 1 of 2 inputs failed"]
    assert (tmp_path / "a.satconv.tif").exists()


def test_missing_list_and_no_inputs_are_usage_errors(tmp_path):
    result = invoke("run", "--from-list", tmp_path / "none.txt")
    assert result.exit_code == 2 and "none.txt" in result.stderr
    result = invoke("run")
    assert result.exit_code == 2 and "no inputs" in result.stderr


def test_two_inputs_with_one_output_name(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    scene(a, "x.tif", 0, (1, 20, 20))
    scene(b, "x.tif", 1, (1, 20, 20))
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("run", a / "x.tif", b / "x.tif", "--out-dir", out, "-q")
    assert result.exit_code == 1
    line = [ln for ln in result.stderr.splitlines() if str(b / "x.tif") in ln]
    assert len(line) == 1 and "same output" in line[0]
    with rasterio.open(out / "x.satconv.tif") as ds, rasterio.open(a / "x.tif") as src:
        assert ds.shape == src.shape
    report = json.loads((out / "x.satconv.json").read_text())
    assert report["input"] == str(a / "x.tif")


def _state(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())
            if p.name.startswith("s.")}


def test_skip_existing_is_idempotent_and_notices_changes(tmp_path):
    src, _ = scene(tmp_path, "s.tif", 3, (1, 40, 40))
    assert invoke("run", src, "-q").exit_code == 0
    before = _state(tmp_path)
    # same input, same config: skipped, nothing touched
    result = invoke("run", src, "--skip-existing")
    assert result.exit_code == 0, result.stderr
    assert "skipped" in result.stderr
    assert _state(tmp_path) == before
    # another config: the outputs are stale; refused without --overwrite, redone with it
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kernel: {type: box, size: 3}\n")
    result = invoke("run", src, "--skip-existing", "-c", cfg)
    assert result.exit_code == 1
    assert "--overwrite" in result.stderr and "config" in result.stderr
    assert _state(tmp_path) == before
    result = invoke("run", src, "--skip-existing", "--overwrite", "-c", cfg, "-q")
    assert result.exit_code == 0, result.stderr
    redone = _state(tmp_path)
    assert redone["s.satconv.tif"] != before["s.satconv.tif"]
    assert invoke("run", src, "--skip-existing", "-c", cfg, "-q").exit_code == 0
    assert _state(tmp_path) == redone
    # the input rewritten (new metadata): stale again
    time.sleep(0.01)
    os.utime(src)
    result = invoke("run", src, "--skip-existing", "-c", cfg)
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    # the report records what skip-existing compares
    fp = json.loads((tmp_path / "s.satconv.json").read_text())["fingerprint"]
    assert set(fp) == {"input", "config"} and all(len(v) == 64 for v in fp.values())


def test_skip_existing_redoes_a_set_missing_an_output_but_not_a_foreign_one(tmp_path):
    """A raster or stride map deleted beside this run's report is redone, as a damaged one is
    (a nightly --skip-existing job must not fail until someone passes --overwrite); beside
    another config's report, the set is another run's, refused without --overwrite."""
    src, _ = scene(tmp_path, "s.tif", 3, (1, 40, 40))
    assert invoke("run", src, "-q").exit_code == 0
    for name in ("s.stride.tif", "s.satconv.tif"):
        (tmp_path / name).unlink()
        result = invoke("run", src, "--skip-existing")
        assert result.exit_code == 0, result.stderr
        assert "skipped" not in result.stderr
        with rasterio.open(tmp_path / name) as ds:
            assert ds.read().size
    assert "skipped" in invoke("run", src, "--skip-existing").stderr
    other = tmp_path / "other.yaml"
    other.write_text("kernel: {type: box, size: 3}\n")
    (tmp_path / "s.stride.tif").unlink()
    result = invoke("run", src, "-c", other, "--skip-existing")
    assert result.exit_code == 1 and "use --overwrite" in result.stderr
    assert invoke("run", src, "-c", other, "--skip-existing", "--overwrite", "-q").exit_code == 0
    assert (tmp_path / "s.stride.tif").exists()


def test_skip_existing_keeps_a_foreign_raster_beside_this_runs_report(tmp_path):
    """This run's report, its stride map deleted, and at the raster's name a GeoTIFF satconv
    did not write for it: refused, not overwritten."""
    src, _ = scene(tmp_path, "s.tif", 3, (1, 40, 40))
    assert invoke("run", src, "-q").exit_code == 0
    (tmp_path / "s.stride.tif").unlink()
    foreign = tmp_path / "s.satconv.tif"
    with rasterio.open(foreign, "w", driver="GTiff", width=4, height=4, count=1,
                       dtype="uint8") as ds:
        ds.write(np.ones((1, 4, 4), dtype="uint8"))
    before = foreign.read_bytes()
    result = invoke("run", src, "--skip-existing")
    assert result.exit_code == 1 and "use --overwrite" in result.stderr
    assert foreign.read_bytes() == before


def test_summary_json(tmp_path):
    good, _ = scene(tmp_path, "g.tif", 0, (1, 20, 20))
    summary = tmp_path / "summary.json"
    result = invoke("run", good, tmp_path / "missing.tif", "--summary", summary, "-q")
    assert result.exit_code == 1
    s = json.loads(summary.read_text())
    assert (s["inputs"], s["done"], s["skipped"], s["failed"], s["exit_code"]) == (2, 1, 0, 1, 1)
    by = {r["input"]: r for r in s["results"]}
    assert by[str(good)]["status"] == "done"
    assert by[str(good)]["report"] == str(tmp_path / "g.satconv.json")
    missing = by[str(tmp_path / "missing.tif")]
    assert missing["status"] == "failed" and "no such file" in missing["message"]
    assert missing["error_type"] == "InputError"
    # readable as the outputs are: the umask decides, as for any new file
    old = os.umask(0o027)
    try:
        invoke("run", good, "--summary", summary, "--overwrite", "-q")
    finally:
        os.umask(old)
    assert summary.stat().st_mode & 0o777 == 0o640


def test_jobs_give_the_same_outputs_as_one_at_a_time(tmp_path):
    ins = tmp_path / "in"
    ins.mkdir()
    for i in range(3):
        scene(ins, f"j{i}.tif", 10 + i, (2, 64, 48))
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    assert invoke("run", *sorted(ins.iterdir()), "--out-dir", one, "-q").exit_code == 0
    proc = satconv("run", str(ins / "*.tif"), "--out-dir", many, "--jobs", 3, "-q")
    assert proc.returncode == 0, proc.stderr
    assert listing(one) == listing(many)
    for name in listing(one):
        if name.endswith(".tif"):
            with rasterio.open(one / name) as a, rasterio.open(many / name) as b:
                np.testing.assert_array_equal(a.read(), b.read())
                assert a.tags() == b.tags()


def test_a_worker_process_that_dies_costs_its_input_only(tmp_path):
    """--jobs workers run many inputs each; one killed mid-scene (as by the out-of-memory
    killer) fails that input with one line, leaves nothing behind, and the others are done."""
    ins = tmp_path / "in"
    ins.mkdir()
    rng = np.random.default_rng(2)
    big = write_geotiff(ins / "big.tif", rng.integers(0, 65535, (1, 2500, 2500), np.uint16))
    small = [scene(ins, f"s{i}.tif", i, (1, 60, 60))[0] for i in range(4)]
    cfg = config.from_dict({"kernel": {"type": "custom",
                                       "weights": np.round(rng.normal(size=(9, 9)), 2).tolist()},
                            "tile_size": 128})
    out = tmp_path / "out"
    out.mkdir()
    events: list = []
    killed: list[int] = []

    def emit(ev) -> None:
        events.append(ev)
        if ev.kind == "progress" and ev.input == str(big) and ev.fields["phase"] == "execute" \
                and not killed:
            with batch._LIVE_LOCK:
                procs = list(batch._LIVE)
            # the worker running big.tif is the one that has not answered for it yet
            for proc in procs:
                if proc.pid and _runs(proc.pid, "big"):
                    killed.append(proc.pid)
                    os.kill(proc.pid, 9)

    opts = batch.RunOptions(out_dir=out, progress_every=5)
    summary = batch.run_batch([str(big), *map(str, small)], cfg, opts, emit, jobs=2)
    assert killed, "the scene finished before its worker could be killed"
    by = {o.input: o for o in summary.outcomes}
    assert by[str(big)].status == "failed"
    assert by[str(big)].message == (f"{big}: the worker process died (signal SIGKILL); "
                                    "nothing written")
    assert all(by[str(s)].status == "done" for s in small)
    assert summary.exit_code == 1
    assert listing(out) == sorted(f"s{i}{ext}" for i in range(4)
                                  for ext in (".satconv.json", ".satconv.tif", ".stride.tif"))


def _runs(pid: int, name: str) -> bool:
    """Whether process ``pid`` has a file of ``name`` open (its input or staged output)."""
    try:
        return any(name in os.readlink(f"/proc/{pid}/fd/{fd}")
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_sigterm_stops_a_batch_and_leaves_nothing(tmp_path):
    """What cron or systemd does to a run it stops: every worker stops, each removes what it
    had staged and its lock; exit 143; the interrupted inputs are named."""
    rng = np.random.default_rng(4)
    names = []
    for i in range(2):
        names.append(write_geotiff(tmp_path / f"b{i}.tif",
                                   rng.integers(0, 65535, (1, 4000, 4000), np.uint16)))
    cfg = tmp_path / "c.yaml"
    # a costly kernel at stride 1 everywhere, so that each input is written for seconds and
    # the two overlap even when the machine is busy
    weights = np.round(rng.normal(size=(61, 61)), 2).tolist()
    cfg.write_text(f"kernel: {{type: custom, weights: {weights}}}\ntile_size: 128\n")
    out = tmp_path / "out"
    out.mkdir()
    # both inputs being written (an input stages several files: count inputs, not files)
    code, err = terminate_when(
        lambda names: {n.split(".")[1] for n in names if n.endswith(".partial")} == {"b0", "b1"},
        out, "run", *names, "-c", cfg, "--out-dir", out, "--jobs", "2")
    assert code == 143, err
    assert sorted(err.splitlines()) == sorted(f"satconv: {n}: terminated, nothing written"
                                              for n in names)
    assert listing(out) == []


def test_skip_existing_redoes_damaged_outputs(tmp_path):
    """Outputs of this input and config whose raster or stride map no longer holds all its
    blocks (truncated, emptied) are redone, not called complete."""
    src, _ = scene(tmp_path, "s.tif", 3, (1, 140, 90))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXACT)
    assert invoke("run", src, "-c", cfg, "-q").exit_code == 0
    good = {n: (tmp_path / n).read_bytes() for n in ("s.satconv.tif", "s.stride.tif")}
    for name, size in (("s.satconv.tif", 1000), ("s.stride.tif", 0)):
        with open(tmp_path / name, "r+b") as f:
            f.truncate(size)
        result = invoke("run", src, "-c", cfg, "--skip-existing")
        assert result.exit_code == 0, result.stderr
        assert "skipped" not in result.stderr
        with rasterio.open(tmp_path / "s.satconv.tif") as ds:
            assert ds.read().shape == (1, 140, 90)
        assert (tmp_path / "s.stride.tif").read_bytes() == good["s.stride.tif"]
    assert "skipped" in invoke("run", src, "-c", cfg, "--skip-existing").stderr


def test_skip_existing_redoes_a_damaged_report_but_not_a_foreign_one(tmp_path):
    """A report truncated or emptied beside this run's rasters is redone (the README: a
    damaged output is redone); a JSON report that is not this run's is another's output, and
    refused without --overwrite."""
    src, _ = scene(tmp_path, "s.tif", 3, (1, 140, 90))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXACT)
    assert invoke("run", src, "-c", cfg, "-q").exit_code == 0
    report = tmp_path / "s.satconv.json"
    good = json.loads(report.read_text())
    for damage in (lambda t: "", lambda t: t[:500]):
        report.write_text(damage(report.read_text()))
        result = invoke("run", src, "-c", cfg, "--skip-existing")
        assert result.exit_code == 0, result.stderr
        assert "skipped" not in result.stderr
        again = json.loads(report.read_text())
        assert again["fingerprint"] == good["fingerprint"]
    assert "skipped" in invoke("run", src, "-c", cfg, "--skip-existing").stderr
    report.write_text(json.dumps({"from": "another tool"}))
    result = invoke("run", src, "-c", cfg, "--skip-existing")
    assert result.exit_code == 1 and "use --overwrite" in result.stderr, result.stderr
    assert json.loads(report.read_text()) == {"from": "another tool"}


def test_a_folder_at_an_output_name_fails_before_anything_is_written(tmp_path):
    src, _ = scene(tmp_path, "s.tif", 3, (1, 40, 40))
    (tmp_path / "s.satconv.json").mkdir()
    result = invoke("run", src, "--overwrite")
    assert result.exit_code == 1 and "s.satconv.json" in result.stderr
    assert "folder" in result.stderr
    assert listing(tmp_path) == ["s.satconv.json", "s.tif"]


def test_a_child_stops_once_when_ctrl_c_and_the_parents_sigterm_both_arrive():
    """Ctrl-C reaches every process of the group, then the parent sends SIGTERM: a child
    raises KeyboardInterrupt for the first and ignores the second, which would otherwise
    strike while the first unwinds (a lock released twice: the input reported failed)."""
    script = (
        "import os, signal, threading, time\n"
        "from satconv import batch\n"
        "batch._on_interrupt_stop()\n"
        "cond = threading.Condition()\n"
        "threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "threading.Timer(0.25, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
        "try:\n"
        "    with cond:\n"
        "        cond.wait(5)\n"
        "except KeyboardInterrupt:\n"
        "    time.sleep(0.5)\n"  # the SIGTERM arrives here, and must not raise again
        "    print('stopped once')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped once"


def test_a_recursive_pattern_skips_every_output_of_a_previous_run(tmp_path, monkeypatch):
    """'**' over a folder of inputs and last night's outputs (error maps, reports,
    quicklooks, the summary) runs the inputs only, night after night."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rec").mkdir()
    scene(tmp_path / "rec", "a.tif", 1, (1, 40, 40))
    for _ in range(2):
        result = invoke("run", "rec/**", "--error-map", "--quicklook", "--overwrite",
                        "--summary", "rec/last.json", "--log-format", "json", "-q")
        assert result.exit_code == 0, result.stderr
        summary = json.loads((tmp_path / "rec" / "last.json").read_text())
        assert [r["input"] for r in summary["results"]] == ["rec/a.tif"]
    assert listing(tmp_path / "rec") == ["a.error.tif", "a.quicklook.png", "a.satconv.json",
                                         "a.satconv.tif", "a.stride.tif", "a.tif",
                                         "last.json"]


def test_a_pattern_skips_the_side_files_gdal_reads_beside_a_raster(tmp_path, monkeypatch):
    """A raster with its mask, overviews, aux.xml and world file: '**' runs the raster alone
    (the mask is read through it: its pixels are nodata in the output); named on its own, a
    side file is still an input."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sc").mkdir()
    path, _ = scene(tmp_path / "sc", "a.tif", 1, (1, 40, 40))
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=False, TIFF_USE_OVR=True):
        with rasterio.open(path, "r+") as ds:  # an external mask (a.tif.msk), overviews (.ovr)
            mask = np.full((40, 40), 255, dtype=np.uint8)
            mask[:5] = 0
            ds.write_mask(mask)
            ds.build_overviews([2], rasterio.enums.Resampling.nearest)
    for side in ("a.tif.aux.xml", "a.tfw", "B.TIF.AUX.XML"):
        (tmp_path / "sc" / side).write_text("side file")
    assert {"a.tif.msk", "a.tif.ovr"} <= set(listing(tmp_path / "sc"))
    result = invoke("run", "sc/**", "--summary", "last.json", "--log-format", "json", "-q")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "last.json").read_text())
    assert [r["input"] for r in summary["results"]] == ["sc/a.tif"]
    with rasterio.open(tmp_path / "sc" / "a.satconv.tif") as out:
        kept = out.read_masks(1)
    assert not kept[:5].any() and kept[8:].all()
    named = invoke("run", "sc/a.tfw", "-q")
    assert named.exit_code == 1 and "sc/a.tfw" in named.stderr


def test_a_stopped_batch_still_writes_its_summary(tmp_path):
    """SIGTERM in the middle of a batch: the summary says which inputs ended (done) and which
    did not (stopped, with the exit code), for whoever reruns what is left."""
    rng = np.random.default_rng(8)
    small, _ = scene(tmp_path, "a.tif", 1, (1, 40, 40))
    big = write_geotiff(tmp_path / "b.tif", rng.integers(0, 65535, (1, 3000, 3000), np.uint16))
    later, _ = scene(tmp_path, "c.tif", 2, (1, 40, 40))
    cfg = tmp_path / "c.yaml"
    weights = np.round(rng.normal(size=(31, 31)), 2).tolist()
    cfg.write_text(f"kernel: {{type: custom, weights: {weights}}}\nstrides: [1]\n")
    out = tmp_path / "out"
    out.mkdir()
    summary = tmp_path / "summary.json"
    code, err = terminate_when(
        lambda names: any(n.startswith(".b.") and n.endswith(".partial") for n in names),
        out, "run", small, big, later, "-c", cfg, "--out-dir", out, "--summary", summary)
    assert code == 143, err
    got = json.loads(summary.read_text())
    assert [(r["input"], r["status"]) for r in got["results"]] == [
        (str(small), "done"), (str(big), "stopped"), (str(later), "stopped")]
    assert (got["done"], got["stopped"], got["exit_code"]) == (1, 2, 143)
    assert got["results"][1]["message"] == f"{big}: terminated, not finished"
    assert listing(out) == ["a.satconv.json", "a.satconv.tif", "a.stride.tif"]


# ---------------------------------------------------------------- worker start-up and --timeout

def _slow_start(settings: config.Settings) -> None:
    """A worker start-up as slow as on a loaded machine: the kernels, then 3 s more."""
    batch.load_kernels(settings)
    time.sleep(3)


def _no_start(settings: config.Settings) -> None:
    os._exit(3)


def test_a_workers_time_limit_counts_from_when_it_is_ready(tmp_path):
    """``--timeout`` is the input's time, not the interpreter's: a start-up longer than the
    limit does not fail the (quick) input, whose outputs match the dense convolution."""
    import multiprocessing

    scene = write_geotiff(tmp_path / "a.tif",
                          random_image(np.random.default_rng(3), (40, 40), "uint8"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXACT)
    settings = config.load(str(cfg))
    worker = batch.Worker(multiprocessing.get_context("spawn").Queue(), prepare=_slow_start)
    try:
        outcome = worker.run(str(scene), settings, batch.RunOptions(), timeout=2.5)
    finally:
        worker.close()
    assert outcome.status == "done", outcome.message
    with rasterio.open(tmp_path / "a.satconv.tif") as ds:
        got = ds.read(1)
    with rasterio.open(scene) as ds:
        want = oracle.dense(ds.read(1).astype(np.float64), gauss3(), "reflect")
    assert oracle.relative_error(got, want) < 1e-5


def test_a_worker_that_does_not_start_fails_its_input_only(tmp_path):
    import multiprocessing

    worker = batch.Worker(multiprocessing.get_context("spawn").Queue(), prepare=_no_start)
    try:
        outcome = worker.run(str(tmp_path / "a.tif"), config.Settings(), batch.RunOptions())
    finally:
        worker.close()
    assert outcome.status == "failed"
    assert outcome.message == (f"{tmp_path / 'a.tif'}: the worker process did not start "
                               "(exit code 3); nothing written")
    assert list(tmp_path.iterdir()) == []


def _slow_start_marked(settings: config.Settings) -> None:
    """A start-up that says it has begun (the file named by SATCONV_TEST_MARKER), then takes
    a minute."""
    Path(os.environ["SATCONV_TEST_MARKER"]).touch()
    time.sleep(60)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_worker_stopped_while_starting_stops_the_batch(tmp_path, monkeypatch, sig):
    """Ctrl-C or SIGTERM that reaches a worker during its start-up is a stop, as during an
    input (KeyboardInterrupt in the batch), not a failed input after which the batch goes
    on with a fresh worker."""
    import multiprocessing
    import threading

    marker = tmp_path / "started"
    monkeypatch.setenv("SATCONV_TEST_MARKER", str(marker))
    worker = batch.Worker(multiprocessing.get_context("spawn").Queue(),
                          prepare=_slow_start_marked)

    def stop() -> None:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(worker.proc.pid, sig)

    threading.Thread(target=stop, daemon=True).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            worker.run(str(tmp_path / "a.tif"), config.Settings(), batch.RunOptions())
    finally:
        worker.close()
    assert time.monotonic() - t0 < 45
    assert sorted(p.name for p in tmp_path.iterdir()) == ["started"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_worker_stopped_before_its_handlers_exist_stops_quietly(tmp_path, monkeypatch,
                                                                  capfd, sig):
    """Ctrl-C to the process group reaches a worker while its interpreter is still starting
    (before satconv is imported): a stop of the batch, with no traceback on the terminal."""
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process
    start = process.start

    def start_then_signal(self) -> None:
        start(self)
        os.kill(self.pid, sig)  # milliseconds in: the child is importing Python's modules

    monkeypatch.setattr(process, "start", start_then_signal)
    worker = batch.Worker(multiprocessing.get_context("spawn").Queue(),
                          prepare=_slow_start_marked)
    monkeypatch.setenv("SATCONV_TEST_MARKER", str(tmp_path / "started"))
    try:
        with pytest.raises(KeyboardInterrupt):
            worker.run(str(tmp_path / "a.tif"), config.Settings(), batch.RunOptions())
    finally:
        worker.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_a_worker_starts_with_its_stop_signals_blocked_in_a_fresh_interpreter():
    """The first process multiprocessing spawns also starts its resource tracker, which
    unblocks every signal on its way: the worker must still start with SIGINT and SIGTERM
    blocked (read from the kernel, /proc/PID/status), and the parent keep its own mask."""
    script = (
        "import multiprocessing, os, signal\n"
        "from satconv import batch\n"
        "proc = multiprocessing.get_context('spawn').Process\n"
        "start = proc.start\n"
        "seen = []\n"
        "def start_and_look(self):\n"
        "    start(self)\n"
        "    status = open(f'/proc/{self.pid}/status').read()\n"
        "    line = next(x for x in status.splitlines() if x.startswith('SigBlk:'))\n"
        "    seen.append(int(line.split()[1], 16))\n"
        "proc.start = start_and_look\n"
        "w = batch.Worker(None, prepare=batch.load_kernels)\n"
        "w._start(batch.Settings())\n"
        "w.close()\n"
        "bits = {s: bool(seen[0] >> (s - 1) & 1) for s in (signal.SIGINT, signal.SIGTERM)}\n"
        "print(all(bits.values()), signal.pthread_sigmask(signal.SIG_BLOCK, []) == set())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_a_closed_terminal_stops_a_batch_like_sigterm(tmp_path):
    """SIGHUP to the batch's process group (the terminal or SSH session closed) while two
    workers compute: exit 129, one 'hung up, nothing written' line per input and nothing
    else on stderr (no traceback of a lost resource tracker), the summary written, and no
    output or staged file left."""
    cfg = slow_pair(tmp_path, seed=4)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "satconv"), "run", "s1.tif", "s2.tif", "-c",
         str(cfg), "--out-dir", str(out), "--jobs", "2", "--log-format", "json",
         "--progress-every", "8", "--summary", str(out / "s.json")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    wait_until_computing(proc, {"s1.tif", "s2.tif"})
    os.killpg(proc.pid, signal.SIGHUP)
    rest = [json.loads(ln) for ln in proc.stderr.read().splitlines()]
    assert proc.wait(timeout=120) == 129, rest
    errors = sorted(ev["error"] for ev in rest if ev.get("event") == "error")
    assert errors == ["s1.tif: hung up, nothing written", "s2.tif: hung up, nothing written"]
    assert all(ev.get("event") in ("error", "progress") for ev in rest), rest
    summary = json.loads((out / "s.json").read_text())
    assert [r["status"] for r in summary["results"]] == ["stopped", "stopped"]
    assert summary["exit_code"] == 129
    assert listing(out) == ["s.json"]
