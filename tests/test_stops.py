"""How satconv commands stop on SIGTERM and Ctrl-C (``satconv.scripts.stops``), in-process:
the signal is sent by the command's own code at a known point, so nothing depends on timing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from satconv import __version__, api, raster_io
from satconv.scripts import stops
from satconv.scripts.cli import cli

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM)


@pytest.fixture
def handlers():
    """Every test starts with Python's own Ctrl-C handler, however pytest was started (a
    background job inherits SIGINT ignored, which satconv respects), and leaves the
    process's handlers as it found them."""
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield {sig: signal.getsignal(sig) for sig in SIGNALS}
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


@pytest.mark.parametrize("module", ["rasterio.env", "numba.core.compiler",
                                    "llvmlite.binding.executionengine"])
def test_a_stop_waits_until_library_code_has_returned(handlers, module):
    """SIGTERM while rasterio's Python code runs in the main thread (a GDAL environment being
    set up, a dataset opened), or numba's and llvmlite's (a kernel being compiled): the
    KeyboardInterrupt comes once that code has returned, not inside it, where it could leave
    GDAL's or numba's state half changed, or be swallowed by a callback."""
    library = {"__name__": module, "os": os, "signal": signal}
    exec("def working(done):\n"  # code of that library's module, as far as frames tell
         "    os.kill(os.getpid(), signal.SIGTERM)\n"
         "    total = sum(i * i for i in range(200000))\n"
         "    done.append(total)\n", library)
    done: list[int] = []
    state = stops.Stops().install()
    with pytest.raises(KeyboardInterrupt):
        library["working"](done)
        for _ in range(500):  # our own code: the stop comes within STOP_RETRY
            sum(range(20000))
    assert done, f"the stop was raised inside {module}'s code"
    assert state.term and state.exit_code == 143


def test_signals_after_the_stop_do_not_interrupt_the_clean_up(handlers):
    """A second Ctrl-C (or SIGTERM after it) while the command removes what it staged is
    ignored: it would cut the clean-up short and print a traceback."""
    stops.Stops().install()
    cleaned = False
    with pytest.raises(KeyboardInterrupt):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            _spin()
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            _spin()
            cleaned = True
    assert cleaned


_START_UP = """
import os, signal, sys
from satconv.scripts import stops

SIG = getattr(signal, sys.argv[1])

class StopWhileImporting:  # a stop that lands while the command line is being imported
    def find_spec(self, name, path=None, target=None):
        if name == "satconv.scripts.cli":
            os.kill(os.getpid(), SIG)
            for _ in range(100000):
                pass
        return None

sys.meta_path.insert(0, StopWhileImporting())
sys.argv = ["satconv", "--version"]
stops.main()
"""


@pytest.mark.parametrize(("sig", "code", "line"), [("SIGTERM", 143, "satconv: terminated"),
                                                   ("SIGINT", 130, "satconv: interrupted"),
                                                   ("SIGHUP", 129, "satconv: hung up")])
def test_a_stop_during_start_up_ends_with_one_line(sig, code, line):
    """The ``satconv`` command handles a stop from its first instant: one that comes while
    it imports rasterio, numpy and the rest (most of a second) ends as any other stop."""
    def ctrl_c_reaches_it() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    run = subprocess.run([sys.executable, "-c", _START_UP, sig], capture_output=True,
                         text=True, timeout=120, preexec_fn=ctrl_c_reaches_it)
    assert run.returncode == code, run.stderr
    assert run.stderr.strip() == line


_AT_THE_END = """
import atexit, os, signal, sys, time
from satconv.scripts import cli, stops

# the interpreter's shutdown takes a while (here: 0.2 s of atexit work)
atexit.register(time.sleep, 0.2)
if sys.argv[1] == "during-shutdown":  # a signal once the command has ended
    atexit.register(os.kill, os.getpid(), signal.SIGTERM)
else:  # a stop that came while the command's last call was rasterio's code
    library = {"__name__": "rasterio.env", "os": os, "signal": signal}
    exec("def last_call():\\n"
         "    os.kill(os.getpid(), signal.SIGTERM)\\n"
         "    sum(i * i for i in range(100000))\\n", library)

    def command():
        print("done")
        library["last_call"]()
        sys.exit(0)

    cli.main = command
sys.argv = ["satconv", "--version"]
stops.main()
"""


@pytest.mark.parametrize("when", ["during-shutdown", "deferred-at-the-end"])
def test_a_signal_as_the_command_ends_leaves_its_exit_code_alone(when):
    """A SIGTERM while the interpreter shuts down (Python sets its handlers back to the
    default action, which would kill the process with the raw signal), or the retry of a stop
    that came during the command's last call into rasterio (SIGALRM, in the same window):
    the finished command still exits 0, with nothing on stderr."""
    def ctrl_c_reaches_it() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    run = subprocess.run([sys.executable, "-c", _AT_THE_END, when], capture_output=True,
                         text=True, timeout=120, preexec_fn=ctrl_c_reaches_it)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.strip() in ("done", "satconv, version " + __version__)


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
