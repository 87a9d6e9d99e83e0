"""How a satconv command stops: SIGTERM (cron, systemd, kill) and Ctrl-C.

Every command turns both into a KeyboardInterrupt in the main thread, so that the staged files
of what it was writing are removed on the way out, and ends with one line and the exit code a
shell gives a process stopped by that signal: 130 for Ctrl-C, 143 for SIGTERM. A signal the
parent process set to be ignored (a background job of a non-interactive shell ignores Ctrl-C)
stays ignored. The handlers are in place while the command runs and restored after it.

The stop is never raised inside the Python code of rasterio (a GDAL environment set up or torn
down, a dataset opened or closed) or of numba and llvmlite (a kernel being compiled or loaded
from the cache): raised there it can leave GDAL's state half changed, and the command then
fails with "No GDAL environment exists" in place of the stop, or dies of SIGSEGV; inside
llvmlite's callbacks it is swallowed, and numba is left unable to compile ("no compiled object
yet"). Such a stop waits, tried again every ``STOP_RETRY`` seconds (SIGALRM), until the main
thread has left that code. Once raised, further signals are ignored while the command cleans
up: a second Ctrl-C would interrupt the removal of what it staged.

The ``satconv`` command installs the handling before it imports anything heavy
(:func:`main`), so that even a stop during start-up ends with one line.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Any

import click

#: How often a stop that arrived while rasterio's own code ran is tried again (seconds).
STOP_RETRY = 0.02

_KEY = "satconv.stops"

#: Modules in whose Python code a stop is never raised (see above).
_DELICATE = ("rasterio", "numba", "llvmlite")

#: The handling ``main`` installed for the whole process, if it did.
_PROCESS: Stops | None = None


class Stops:
    """What has stopped the command (``term``: SIGTERM rather than Ctrl-C), and the handlers
    it replaced."""

    def __init__(self) -> None:
        self.term = False
        self.pending = False
        self.stopping = False
        self.previous: dict[int, Any] = {}

    @property
    def exit_code(self) -> int:
        return 143 if self.term else 130

    @property
    def what(self) -> str:
        return "terminated" if self.term else "interrupted"

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.stopping or (signum == signal.SIGALRM and not self.pending):
            return
        if signum == signal.SIGTERM:
            self.term = True
        if in_delicate_code(frame):
            self.pending = True
            signal.setitimer(signal.ITIMER_REAL, STOP_RETRY)
            return
        self.pending = False
        self.stopping = True
        raise KeyboardInterrupt

    def install(self) -> Stops:
        """Handle SIGTERM and SIGINT (unless inherited as ignored), and SIGALRM for retries.
        Outside the main thread (embedded use) nothing is installed."""
        with contextlib.suppress(ValueError):
            for sig in (signal.SIGTERM, signal.SIGINT):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self.previous[sig] = signal.signal(sig, self.on_signal)
            if self.previous:
                self.previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self.on_signal)
        return self

    def restore(self) -> None:
        """Put back the handlers ``install`` replaced (a pending retry cancelled first)."""
        if signal.SIGALRM in self.previous:
            signal.setitimer(signal.ITIMER_REAL, 0)
        with contextlib.suppress(ValueError, TypeError):
            for sig, handler in self.previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}


def in_delicate_code(frame: Any) -> bool:
    """Whether ``frame`` or one of its callers is the Python code of rasterio, numba or
    llvmlite."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.split(".", 1)[0] in _DELICATE:
            return True
        frame = frame.f_back
    return False


def command_stops(ctx: click.Context | None = None) -> Stops:
    """The stop handling of the running command line: the process's (``main``), else
    installed on first use and restored when the context that installed it (the outermost
    satconv one) closes."""
    ctx = ctx or click.get_current_context()
    stops = ctx.meta.get(_KEY)
    if stops is None:
        stops = _PROCESS or Stops().install()
        ctx.meta[_KEY] = stops
        if stops is not _PROCESS:
            ctx.call_on_close(stops.restore)
    return stops


def main() -> None:
    """The ``satconv`` command: stops handled from its first instant, then the command line
    (whose imports, rasterio and numpy among them, take most of a second)."""
    global _PROCESS
    _PROCESS = Stops().install()
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print(f"satconv: {_PROCESS.what}", file=sys.stderr)
        sys.exit(_PROCESS.exit_code)
    cli_main()


class StoppableGroup(click.Group):
    """A click group whose commands stop as this module says: a KeyboardInterrupt a command
    did not handle itself ends it with one line (``satconv: plan interrupted``) and exit code
    130 or 143, where click would print "Aborted!" and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        stops = command_stops(ctx)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            from .render import Renderer

            fmt = "json" if json_logs(sys.argv[1:]) else "text"
            name = ctx.invoked_subcommand
            Renderer(fmt).error(f"{name} {stops.what}" if name else stops.what,
                                stops.exit_code)
            ctx.exit(stops.exit_code)


def json_logs(argv: list[str]) -> bool:
    """Whether the command line asks for JSON logs (read before click parses it)."""
    return "--log-format=json" in argv or any(
        a == "--log-format" and b == "json" for a, b in zip(argv, argv[1:], strict=False))
