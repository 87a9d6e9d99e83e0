"""Issue 6: a batch on a real Dask cluster — a scheduler and two workers, each its own process,
on loopback — gives outputs identical to a local run's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from satconv.scripts.cli import cli

from .conftest import random_image, slow_pair, wait_until_computing, write_geotiff

pytest.importorskip("distributed", reason="Dask distributed is not installed "
                    "(pip install 'satconv[dask]')")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
START_TIMEOUT = 60


def _dask_command(*args: str) -> list[str]:
    """``dask scheduler`` / ``dask worker`` (the ``dask`` command of this environment)."""
    exe = BIN / "dask"
    if exe.exists():
        return [str(exe), *args]
    found = shutil.which("dask")
    if found is None:
        pytest.skip("the dask command is not installed")
    return [found, *args]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1; yields the
    scheduler's address; everything is stopped afterwards, whatever happens."""
    root = tmp_path_factory.mktemp("dask")
    sched_file = root / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs: list[subprocess.Popen] = []
    logs = []

    def start(name: str, *args: str) -> None:
        log = open(root / f"{name}.log", "w")  # noqa: SIM115 - closed in finally
        logs.append(log)
        procs.append(subprocess.Popen(_dask_command(*args), env=env, stdout=log,
                                      stderr=subprocess.STDOUT, cwd=root))

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0",
              "--no-dashboard", "--scheduler-file", str(sched_file))
        deadline = time.monotonic() + START_TIMEOUT
        while not (sched_file.exists() and sched_file.stat().st_size):
            assert procs[0].poll() is None, (root / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for i in (1, 2):
            start(f"worker{i}", "worker", "--scheduler-file", str(sched_file), "--host",
                  "127.0.0.1", "--nthreads", "1", "--no-dashboard", "--no-nanny",
                  "--name", f"w{i}")
        from distributed import Client

        with Client(address, timeout=START_TIMEOUT) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT)
        yield address
    finally:
        for p in procs[::-1]:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_identical(a_path: Path, b_path: Path) -> None:
    with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        np.testing.assert_array_equal(a.read_masks(), b.read_masks())
        assert (a.crs, a.transform, a.shape, a.count, a.dtypes) == \
            (b.crs, b.transform, b.shape, b.count, b.dtypes)
        assert a.tags() == b.tags()  # version and config only: no timestamps in tags
        assert str(a.nodata) == str(b.nodata)
        assert a.descriptions == b.descriptions


def reports_agree(a: Path, b: Path) -> None:
    ra, rb = (json.loads(p.read_text()) for p in (a, b))
    for key in ("config", "fingerprint", "plan", "scene"):
        assert ra[key] == rb[key]
    assert ra["execute"]["kernel_evaluations"] == rb["execute"]["kernel_evaluations"]


def test_batch_on_dask_equals_local_run(cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative names: the workers run in another folder
    ins = tmp_path / "in"
    ins.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        data = random_image(rng, (2, 150 + 20 * i, 170), "uint16")
        data[:, :40] = 0
        write_geotiff(ins / f"s{i}.tif", data, nodata=0, descriptions=["red", "nir"])
    (ins / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tile_size: 32\nstrides: [1, 2, 4]\n")
    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir()
    remote.mkdir()
    good = [ins / f"s{i}.tif" for i in range(3)]
    assert invoke("run", *good, "-c", cfg, "--out-dir", local, "-q").exit_code == 0
    result = invoke("run", "in/*.tif", "-c", "c.yaml", "--out-dir", "remote", "--scheduler",
                    cluster, "--log-format", "json", "--summary", tmp_path / "summary.json")
    assert result.exit_code == 1, result.stderr
    events = [json.loads(ln) for ln in result.stderr.splitlines()]
    assert events[0]["event"] == "batch_start" and events[0]["backend"] == "dask"
    # the kernels were ready on the client and both workers before the first input started
    kinds = [e["event"] for e in events]
    assert kinds.index("warmup") < kinds.index("start")
    warm = events[kinds.index("warmup")]
    assert warm["workers"] == 2 and "error" not in warm
    assert 0 < warm["slowest"] <= warm["seconds"]
    from distributed import Client

    with Client(cluster, timeout=START_TIMEOUT) as client:
        ran = client.run(lambda: "satconv.warmup" in sys.modules)  # no scene task imports it
    assert sorted(ran.values()) == [True, True]
    failed = [e for e in events if e["event"] == "failed"]
    assert [e["input"] for e in failed] == ["in/broken.tif"]
    assert failed[0]["error"].startswith("in/broken.tif: ")  # named as given
    assert sorted(e["input"] for e in events if e["event"] == "done") == \
        [f"in/s{i}.tif" for i in range(3)]
    # progress travelled back from the workers
    assert any(e["event"] == "progress" and e["input"] == "in/s0.tif" for e in events)
    assert sorted(os.listdir(local)) == sorted(os.listdir(remote))
    for i in range(3):
        assert_identical(local / f"s{i}.satconv.tif", remote / f"s{i}.satconv.tif")
        assert_identical(local / f"s{i}.stride.tif", remote / f"s{i}.stride.tif")
        reports_agree(local / f"s{i}.satconv.json", remote / f"s{i}.satconv.json")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["backend"]) == (3, 1, "dask")


@pytest.mark.parametrize("policy", ["", "policy: {type: refine, tolerance_db: 40}\n"])
def test_one_scene_in_row_bands_on_dask_equals_local_run(cluster, tmp_path, monkeypatch,
                                                         policy):
    """Also with refine, whose tiles decide their strides on the workers: the stride map is
    the strides executed there."""
    rng = np.random.default_rng(9)
    data = random_image(rng, (1, 700, 650), "int16")
    scene = write_geotiff(tmp_path / "big.tif", data)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tile_size: 32\nkernel: {type: gaussian, size: 5, sigma: 1.5}\n" + policy)
    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir()
    remote.mkdir()
    assert invoke("run", scene, "-c", cfg, "--out-dir", local, "-q").exit_code == 0
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster)  # the address from the environment
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "big.tif", "-c", "c.yaml", "--out-dir", "remote", "--distribute",
                    "bands")
    assert result.exit_code == 0, result.stderr
    report = json.loads((remote / "big.satconv.json").read_text())
    assert report["execute"]["parts"] > 2  # several row-band tasks
    assert_identical(local / "big.satconv.tif", remote / "big.satconv.tif")
    assert_identical(local / "big.stride.tif", remote / "big.stride.tif")
    reports_agree(local / "big.satconv.json", remote / "big.satconv.json")
    assert sorted(os.listdir(remote)) == ["big.satconv.json", "big.satconv.tif",
                                          "big.stride.tif"]


def test_a_failed_warm_up_does_not_fail_the_batch(cluster, tmp_path, monkeypatch):
    from satconv import warmup

    def broken(settings=None):
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(warmup, "warm_up", broken)
    scene = write_geotiff(tmp_path / "s.tif", random_image(np.random.default_rng(2),
                                                            (1, 80, 90), "uint8"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tile_size: 32\n")
    result = invoke("run", scene, "-c", cfg, "--scheduler", cluster, "--distribute", "scenes",
                    "--log-format", "json")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(ln) for ln in result.stderr.splitlines()]
    assert [e.get("error") for e in events if e["event"] == "warmup"] == ["no compiler today"]
    assert [e["event"] for e in events if e["event"] in ("done", "failed")] == ["done"]
    assert (tmp_path / "s.satconv.tif").exists()


def test_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    from satconv import distributed

    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT", 2)
    data = np.zeros((1, 10, 10), np.uint8)
    scene = write_geotiff(tmp_path / "s.tif", data)
    result = invoke("run", scene, "--scheduler", "tcp://127.0.0.1:9")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "tcp://127.0.0.1:9" in lines[0] and "scheduler" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["s.tif"]


@pytest.mark.parametrize("server", ["http", "banner"])
def test_a_port_that_is_no_scheduler_is_a_clear_error_and_a_fresh_summary(tmp_path, monkeypatch,
                                                                          server):
    """The dashboard's HTTP port left the client waiting forever; a server that greets in
    text (ssh) made it fail with a 77-line traceback. Both: one line, exit 2, in bounded
    time, and the --summary file is this run's (a monitor read last night's success)."""
    import socket
    import threading

    from satconv import distributed

    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT", 2)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    held = []

    def serve() -> None:  # accept and keep the connection: read it, or greet first
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            if server == "banner":
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    threading.Thread(target=serve, daemon=True).start()
    scene = write_geotiff(tmp_path / "s.tif", np.zeros((1, 10, 10), np.uint8))
    summary = tmp_path / "last.json"
    summary.write_text('{"exit_code": 0, "done": 1}')
    t0 = time.monotonic()
    try:
        result = invoke("run", scene, "--scheduler", f"tcp://127.0.0.1:{port}", "--summary",
                        summary)
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert time.monotonic() - t0 < 20
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], result.stderr
    got = json.loads(summary.read_text())
    assert got["exit_code"] == 2 and got["failed"] == 1 and got["done"] == 0
    assert got["results"][0]["status"] == "failed"


def test_a_scheduler_address_without_a_port_is_refused_at_once(tmp_path):
    scene = write_geotiff(tmp_path / "s.tif", np.zeros((1, 10, 10), np.uint8))
    for address in ("notaurl", "127.0.0.1", "tcp://127.0.0.1"):
        t0 = time.monotonic()
        result = invoke("run", scene, "--scheduler", address)
        assert result.exit_code == 2 and time.monotonic() - t0 < 10
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and "host:port" in lines[0], result.stderr


def test_a_relative_input_is_the_clients_file_not_a_workers(cluster, tmp_path, monkeypatch):
    """An input named relatively and missing here fails as missing, even where a worker's
    own folder happens to hold a file of that name."""
    from distributed import Client

    with Client(cluster, timeout=START_TIMEOUT) as client:
        folders = set(client.run(os.getcwd).values())
    for folder in folders:
        write_geotiff(Path(folder) / "decoy.tif", np.ones((1, 20, 20), np.uint8))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    try:
        result = invoke("run", "decoy.tif", "--out-dir", "out", "--scheduler", cluster,
                        "--distribute", "scenes")
    finally:
        for folder in folders:
            (Path(folder) / "decoy.tif").unlink()
    assert result.exit_code == 1
    assert "decoy.tif" in result.stderr and "no such file" in result.stderr
    assert os.listdir(tmp_path / "out") == []


def test_a_row_band_lost_on_the_cluster_fails_the_input_in_one_short_line(tmp_path):
    """The scheduler gone mid-run: the input fails with a short line that says the finished
    row bands are kept (not 'unexpected error' and the cluster's whole message)."""
    from types import SimpleNamespace

    from satconv import distributed
    from satconv.errors import ClusterError

    class Lost:
        def done(self) -> bool:
            return True

        def result(self):
            raise RuntimeError("FutureCancelledError: scheduler-connection-lost " + "x" * 500)

    client = SimpleNamespace(submit=lambda *a, **k: Lost(), cancel=lambda futures: None)
    runner = distributed.DaskPartRunner(client, "s.tif", None, None, lambda ev: None)
    engine = SimpleNamespace(layout=SimpleNamespace(tiles=lambda k: []), raster=tmp_path / "o")
    with pytest.raises(ClusterError) as err:
        runner.run(engine, None, None, None, [0], 1, lambda n: None)
    text = str(err.value)
    assert text.startswith("s.tif: a row band failed on the Dask cluster (RuntimeError: ")
    assert text.endswith("finished row bands kept for --resume") and len(text) < 300
    assert "\n" not in text


def test_the_scenes_a_worker_runs_at_once_share_its_memory(monkeypatch):
    """On a worker of three threads, a scene task keeps its decoded tiles within a third of
    the memory share (``satconv.tile_cache``): three such tasks run there at once."""
    import distributed

    from satconv import distributed as sd
    from satconv import tile_cache

    class FakeWorker:
        state = type("State", (), {"nthreads": 3})()

        def log_event(self, topic, msg):
            pass

    seen = []
    monkeypatch.setattr(distributed, "get_worker", lambda: FakeWorker())
    monkeypatch.setattr(tile_cache, "SCENES_AT_ONCE", 1)
    monkeypatch.setattr(sd, "run_one",
                        lambda src, settings, opts, emit, check=None: seen.append(
                            (tile_cache.SCENES_AT_ONCE, opts.threads)))
    sd._scene_task("a.tif", None, sd.RunOptions(), "topic")
    assert seen == [(3, max(1, sd.default_workers() // 3))]


def test_a_stopped_batch_leaves_on_disk_what_its_summary_says(cluster, tmp_path):
    """SIGTERM while the workers compute two scenes: a task already running cannot be
    cancelled, so it is told to stop at its next tile. Each input is then either done (its
    outputs complete) or stopped with nothing written, as the summary says, and it stays so:
    no output appears after the command has exited."""
    cfg = slow_pair(tmp_path, seed=9)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [str(BIN / "satconv"), "run", "s1.tif", "s2.tif", "-c", str(cfg), "--out-dir", str(out),
         "--scheduler", cluster, "--log-format", "json", "--progress-every", "8",
         "--summary", str(out / "s.json")],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    wait_until_computing(proc, {"s1.tif", "s2.tif"})
    proc.terminate()
    assert proc.stderr is not None
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, rest
    summary = json.loads((out / "s.json").read_text())

    def on_disk() -> list[str]:
        return sorted(p.name for p in out.iterdir() if p.name != "s.json")

    names = {i: [f"s{i}.satconv.json", f"s{i}.satconv.tif", f"s{i}.stride.tif"] for i in (1, 2)}
    left = on_disk()
    for r in summary["results"]:
        i = int(r["input"][1])
        if r["status"] == "done":
            assert set(names[i]) <= set(left)
        else:
            assert r["status"] == "stopped", r
            assert not [n for n in left if n.startswith(f"s{i}.") or f".s{i}." in n], left
    time.sleep(8)  # a task that had gone on would have written by now
    assert on_disk() == left
