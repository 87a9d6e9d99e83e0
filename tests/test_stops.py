"""How satconv commands stop on SIGTERM and Ctrl-C (``satconv.scripts.stops``), in-process:
the signal is sent by the command's own code at a known point, so nothing depends on timing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from satconv import api, raster_io
from satconv.scripts import stops
from satconv.scripts.cli import cli

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)


@pytest.fixture
def handlers():
    """Every test leaves the process's handlers as it found them."""
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    yield saved
    signal.setitimer(signal.ITIMER_REAL, 0)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _spin() -> None:
    """Python code for a pending signal's handler to run in."""
    for _ in range(200):
        sum(range(10000))


def test_a_stop_waits_until_rasterio_code_has_returned(handlers):
    """SIGTERM while rasterio's own Python code runs in the main thread (a GDAL environment
    being set up, a dataset opened): the KeyboardInterrupt comes once that code has returned,
    not inside it, where it could leave GDAL's state half changed."""
    in_rasterio = {"__name__": "rasterio.env", "os": os, "signal": signal}
    exec("def setting_up(done):\n"  # code of a rasterio module, as far as frames tell
         "    os.kill(os.getpid(), signal.SIGTERM)\n"
         "    total = sum(i * i for i in range(200000))\n"
         "    done.append(total)\n", in_rasterio)
    done: list[int] = []
    state = stops.Stops().install()
    with pytest.raises(KeyboardInterrupt):
        in_rasterio["setting_up"](done)
        for _ in range(500):  # our own code: the stop comes within STOP_RETRY
            sum(range(20000))
    assert done, "the stop was raised inside rasterio's code"
    assert state.term and state.exit_code == 143


def test_sigterm_while_plan_writes_removes_the_staged_file(make_scene, tmp_path, monkeypatch,
                                                          handlers):
    """``satconv plan -o`` stopped by SIGTERM halfway through writing its stride map: exit
    143, one line, no traceback, and neither the map nor its staged file left behind. (The
    default SIGTERM would kill the process on the spot, staged file and all.)"""
    scene, _ = make_scene(40, 40)
    write = raster_io.write_stride_map

    def write_then_stop(path, *args, **kwargs):
        write(path, *args, **kwargs)
        assert Path(path).exists()  # the staged file, not yet renamed
        os.kill(os.getpid(), signal.SIGTERM)
        _spin()

    monkeypatch.setattr(raster_io, "write_stride_map", write_then_stop)
    result = invoke("plan", scene, "-o", tmp_path / "plan.tif", "-q")
    assert result.exit_code == 143
    assert result.stderr.strip() == "satconv: plan terminated"
    assert listing(tmp_path) == ["scene.tif"]
    assert {sig: signal.getsignal(sig) for sig in SIGNALS} == handlers  # restored


def _ctrl_c_when_planning(monkeypatch) -> None:
    """``satconv plan`` gets a Ctrl-C as it starts planning."""
    compare = api.compare_scene

    def compare_after_ctrl_c(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        _spin()
        return compare(*args, **kwargs)

    monkeypatch.setattr(api, "compare_scene", compare_after_ctrl_c)


def test_ctrl_c_in_plan_exits_130_with_one_line(make_scene, monkeypatch, handlers):
    scene, _ = make_scene(40, 40)
    _ctrl_c_when_planning(monkeypatch)
    result = invoke("plan", scene)
    assert result.exit_code == 130
    assert result.stderr.strip() == "satconv: plan interrupted"
    assert "Aborted" not in result.output


def test_ctrl_c_ignored_by_the_parent_stays_ignored(make_scene, monkeypatch, handlers):
    """A background job of a non-interactive shell inherits Ctrl-C ignored, and shells expect
    it to stay so: the command runs to its end and leaves SIGINT ignored."""
    scene, _ = make_scene(40, 40)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _ctrl_c_when_planning(monkeypatch)
    result = invoke("plan", scene, "-q")
    assert result.exit_code == 0, result.stderr
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
