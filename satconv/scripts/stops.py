"""How a satconv command stops: SIGTERM (cron, systemd, kill) and Ctrl-C.

Every command turns both into a KeyboardInterrupt in the main thread, so that the staged files
of what it was writing are removed on the way out, and ends with one line and the exit code a
shell gives a process stopped by that signal: 130 for Ctrl-C, 143 for SIGTERM. A signal the
parent process set to be ignored (a background job of a non-interactive shell ignores Ctrl-C)
stays ignored. The handlers are in place while the command runs and restored after it.

The stop is never raised inside rasterio's own Python code (a GDAL environment set up or torn
down, a dataset opened or closed): raised there it can leave GDAL's state half changed, and the
command then fails with "No GDAL environment exists" in place of the stop, or dies of SIGSEGV.
Such a stop waits, tried again every ``STOP_RETRY`` seconds (SIGALRM), until the main thread
has left that code.
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


class Stops:
    """What has stopped the command (``term``: SIGTERM rather than Ctrl-C), and the handlers
    it replaced."""

    def __init__(self) -> None:
        self.term = False
        self.pending = False
        self.previous: dict[int, Any] = {}

    @property
    def exit_code(self) -> int:
        return 143 if self.term else 130

    @property
    def what(self) -> str:
        return "terminated" if self.term else "interrupted"

    def on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGALRM and not self.pending:
            return
        if signum == signal.SIGTERM:
            self.term = True
        if in_rasterio(frame):
            self.pending = True
            signal.setitimer(signal.ITIMER_REAL, STOP_RETRY)
            return
        self.pending = False
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


def in_rasterio(frame: Any) -> bool:
    """Whether ``frame`` or one of its callers is rasterio's own Python code."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name == "rasterio" or name.startswith("rasterio."):
            return True
        frame = frame.f_back
    return False


def command_stops(ctx: click.Context | None = None) -> Stops:
    """The stop handling of the running command line, installed on first use and restored
    when the context that installed it (the outermost satconv one) closes."""
    ctx = ctx or click.get_current_context()
    stops = ctx.meta.get(_KEY)
    if stops is None:
        stops = Stops().install()
        ctx.meta[_KEY] = stops
        ctx.call_on_close(stops.restore)
    return stops


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
            name = ctx.invoked_subcommand or ctx.info_name or "satconv"
            Renderer(fmt).error(f"{name} {stops.what}", stops.exit_code)
            ctx.exit(stops.exit_code)


def json_logs(argv: list[str]) -> bool:
    """Whether the command line asks for JSON logs (read before click parses it)."""
    return "--log-format=json" in argv or any(
        a == "--log-format" and b == "json" for a, b in zip(argv, argv[1:], strict=False))
