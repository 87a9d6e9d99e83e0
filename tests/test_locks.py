"""Issue 6: two runs writing the same output never both write it; the second fails clearly or
waits; a lock left by a killed run is taken over."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from satconv import locks, raster_io
from satconv.scripts.cli import cli

from .conftest import write_geotiff

REPO = Path(__file__).resolve().parents[1]


def popen(*args: object, stdin: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "satconv", *map(str, args)], env=env,
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def ready_second(*args: object) -> subprocess.Popen:
    """A second run, started (interpreter up, modules imported) but waiting for its list of
    inputs on stdin: it reaches the lock within milliseconds of being given its input."""
    return popen("run", "--from-list", "-", *args, stdin=subprocess.PIPE)


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """A scene that takes a few seconds (7x7 kernel, every tile at stride 1), and its output
    from a run alone."""
    root = tmp_path_factory.mktemp("locks")
    rng = np.random.default_rng(1)
    scene = write_geotiff(root / "s.tif",
                          rng.integers(0, 65535, size=(1, 1500, 1500), dtype=np.uint16))
    weights = np.round(rng.normal(size=(7, 7)), 2).tolist()
    cfg = root / "c.yaml"
    cfg.write_text(f"kernel: {{type: custom, weights: {weights}}}\ntile_size: 128\n"
                   "strides: [1]\n")
    ref = root / "ref.tif"
    assert invoke("run", scene, "-c", cfg, "-o", ref, "-q").exit_code == 0
    with rasterio.open(ref) as ds:
        expected = ds.read()
    return scene, cfg, expected


def holding_the_lock(*args: object, out: Path) -> subprocess.Popen:
    """A run started with ``args``, once it holds the lock of ``out`` (the lock file names
    it: a holder writes its name only once it has the lock; the file exists a moment
    before), then stopped (SIGSTOP) so that it keeps holding it, however slow the machine,
    until the caller lets it go on (``go_on``)."""
    proc = popen(*args)
    lock = locks.lock_path(out)
    t0 = time.monotonic()
    while not (lock.exists() and str(proc.pid) in lock.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < 60
        time.sleep(0.005)
    proc.send_signal(signal.SIGSTOP)
    return proc


def go_on(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGCONT)


def test_second_run_fails_clearly_first_completes(slow, tmp_path):
    scene, cfg, expected = slow
    out = tmp_path / "out.tif"
    second = ready_second("-c", cfg, "-o", out, "--overwrite")
    first = holding_the_lock("run", scene, "-c", cfg, "-o", out, "-q", "--debug", out=out)
    try:
        _, err2 = second.communicate(f"{scene}\n", timeout=120)
    finally:
        go_on(first)
    _, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 1
    lines = err2.splitlines()
    assert len(lines) == 1 and "Traceback" not in err2
    assert lines[0].startswith(f"satconv: {scene}: {out}: being written by another satconv "
                               f"run (pid {first.pid} on ")
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["out.satconv.json", "out.stride.tif", "out.tif"]


def test_second_run_waits_then_replaces(slow, tmp_path):
    scene, cfg, expected = slow
    out = tmp_path / "out.tif"
    second = ready_second("-c", cfg, "-o", out, "--on-lock", "wait", "--overwrite",
                          "--log-format", "json")
    first = holding_the_lock("run", scene, "-c", cfg, "-o", out, "-q", "--debug", out=out)
    try:
        second.stdin.write(f"{scene}\n")
        second.stdin.close()
        seen = []  # the second run's events, until it says it waits
        while not seen or json.loads(seen[-1])["event"] != "lock_wait":
            line = second.stderr.readline()
            assert line, f"the second run ended without waiting: {''.join(seen)}"
            seen.append(line)
    finally:
        go_on(first)
    second.stdin = None  # (closed above; communicate must not flush it)
    _, rest = second.communicate(timeout=180)
    err2 = "".join(seen) + rest
    _, err1 = first.communicate(timeout=60)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    events = [json.loads(ln) for ln in err2.splitlines()]
    kinds = [e["event"] for e in events]
    assert "lock_wait" in kinds and kinds.index("lock_wait") < kinds.index("start")
    assert events[kinds.index("lock_wait")]["pid"] == first.pid
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["out.satconv.json", "out.stride.tif", "out.tif"]


def test_waiting_with_a_time_limit_gives_up_clearly(tmp_path):
    out = tmp_path / "o.tif"
    with locks.OutputLock(out):
        t0 = time.monotonic()
        with pytest.raises(locks.LockBusy, match="after waiting 0.5 s"):
            locks.OutputLock(out, wait=True, timeout=0.5).acquire()
        assert 0.4 < time.monotonic() - t0 < 5
        with pytest.raises(locks.LockBusy, match=f"pid {os.getpid()} on "):
            locks.OutputLock(out).acquire()
    assert not locks.lock_path(out).exists()


def test_many_threads_one_holder_at_a_time(tmp_path):
    out = tmp_path / "o.tif"
    inside = []
    overlap = []

    def work() -> None:
        for _ in range(20):
            with locks.OutputLock(out, wait=True, timeout=60):
                inside.append(1)
                if len(inside) > 1:
                    overlap.append(1)
                time.sleep(0.001)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap
    assert not locks.lock_path(out).exists()


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "o.tif"
    code = ("import sys, time; from pathlib import Path; from satconv import locks; "
            "l = locks.OutputLock(Path(sys.argv[1])).acquire(); print('held', flush=True); "
            "time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.LockBusy):
            locks.OutputLock(out).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.stdout.close()
    assert locks.lock_path(out).exists()  # what a killed run leaves
    with locks.OutputLock(out) as lock:  # taken at once, and we know whose it was
        assert lock.previous is not None and lock.previous.pid == holder.pid
    assert not locks.lock_path(out).exists()


def test_run_takes_over_a_stale_lock_and_removes_that_runs_partials(tmp_path):
    data = np.random.default_rng(0).integers(0, 999, size=(1, 40, 40), dtype=np.uint16)
    scene = write_geotiff(tmp_path / "s.tif", data)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    finals = [tmp_path / n for n in ("s.satconv.tif", "s.stride.tif", "s.satconv.json")]
    for f in finals:  # a killed run's staged files, and its lock
        raster_io.staging_path(f, dead.pid).write_bytes(b"half")
    other = raster_io.staging_path(finals[0], dead.pid + 1)  # not that run's: left alone
    other.write_bytes(b"x")
    lock = locks.lock_path(finals[0])
    lock.write_text(locks.Holder(dead.pid, os.uname().nodename, time.time() - 60).to_json())
    result = invoke("run", scene)
    assert result.exit_code == 0, result.stderr
    assert f"took over the lock of a satconv run that is gone (pid {dead.pid}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [other.name, "s.tif"] + [f.name for f in finals])


def test_a_holder_that_has_not_written_its_name_yet_is_named(tmp_path):
    """A run that has just locked the file writes its name a moment later: a second run in
    that moment names it all the same, instead of "holder unknown"."""
    out = tmp_path / "o.tif"
    path = locks.lock_path(out)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked, still empty
        holder = locks.Holder(4242, "elsewhere", time.time())
        writer = threading.Timer(0.3, os.pwrite, (fd, holder.to_json().encode(), 0))
        writer.start()
        with pytest.raises(locks.LockBusy, match="pid 4242 on elsewhere, since "):
            locks.OutputLock(out).acquire()
        writer.join()
    finally:
        os.close(fd)


def test_runs_whose_output_names_overlap_meet_at_a_lock(tmp_path):
    """'-o out/s.tif' and '--out-dir out' write different rasters but the same stride map
    and report: the second run must not mix its files into the first's set."""
    rng = np.random.default_rng(2)
    scene = write_geotiff(tmp_path / "s.tif", rng.integers(0, 999, (1, 40, 40), np.uint16))
    out = tmp_path / "out"
    out.mkdir()
    with locks.OutputLock(out / "s.stride.tif"):  # what '-o out/s.tif' holds while it runs
        result = CliRunner().invoke(cli, ["run", str(scene), "--out-dir", str(out)])
    assert result.exit_code == 1
    assert "s.stride.tif: being written by another satconv run" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == []
