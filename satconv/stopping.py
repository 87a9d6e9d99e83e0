"""Stopping satconv's work on SIGTERM, Ctrl-C and SIGHUP (a closed terminal or SSH session):
in a command (``scripts.stops``) and in a batch's child processes (``batch``) alike.

Each becomes a KeyboardInterrupt in the main thread, so that the staged files of what
was being written are removed on the way out. The stop is never raised inside the Python code
of rasterio (a GDAL environment set up or torn down, a dataset opened or closed) or of numba
and llvmlite (a kernel being compiled or loaded from the cache): raised there it can leave
GDAL's state half changed, and the work then fails with "No GDAL environment exists" in place
of the stop, or dies of SIGSEGV; inside llvmlite's callbacks it is swallowed, and numba is
left unable to compile ("no compiled object yet"). Such a stop waits, tried again every
``STOP_RETRY`` seconds (SIGALRM), until the main thread has left that code. Once raised,
further signals are ignored while the work cleans up: a second Ctrl-C (or the SIGTERM a batch
sends its children after the Ctrl-C that reached them too) would interrupt the removal of
what was staged, or release a lock twice.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any

#: How often a stop that arrived while such code ran is tried again (seconds).
STOP_RETRY = 0.02

#: Modules in whose Python code a stop is never raised (see above).
_DELICATE = ("rasterio", "numba", "llvmlite")


#: The signals that stop the work.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stops:
    """What has stopped the work (``term``: SIGTERM, ``hup``: SIGHUP, else Ctrl-C), and the
    handlers it replaced."""

    def __init__(self) -> None:
        self.term = False
        self.hup = False
        self.pending = False
        self.stopping = False
        self.previous: dict[int, Any] = {}

    @property
    def exit_code(self) -> int:
        """128 plus the signal's number, as a shell reports a process it stopped."""
        return 143 if self.term else 129 if self.hup else 130

    @property
    def what(self) -> str:
        return "terminated" if self.term else "hung up" if self.hup else "interrupted"

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.stopping or (signum == signal.SIGALRM and not self.pending):
            return
        if signum == signal.SIGTERM:
            self.term = True
        elif signum == signal.SIGHUP:
            self.hup = True
        if in_delicate_code(frame):
            self.pending = True
            signal.setitimer(signal.ITIMER_REAL, STOP_RETRY)
            return
        self.pending = False
        self.stopping = True
        raise KeyboardInterrupt

    def install(self, force: bool = False) -> Stops:
        """Handle SIGTERM, SIGINT and SIGHUP (unless inherited as ignored, as under ``nohup``,
        or ``force``), and SIGALRM for retries. Outside the main thread (embedded use) nothing
        is installed."""
        with contextlib.suppress(ValueError):
            for sig in STOP_SIGNALS:
                if force or signal.getsignal(sig) is not signal.SIG_IGN:
                    self.previous[sig] = signal.signal(sig, self.on_signal)
            if self.previous:
                self.previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self.on_signal)
        return self

    def settle(self) -> None:
        """At the end of the process: cancel a pending retry and ignore the stop signals and
        SIGALRM from here on. Python's shutdown sets the signals it handles back to their
        default action, so a signal in its last fraction of a second (or the retry of a stop
        that came while the last of the work was in rasterio's code) would kill the process
        with the raw signal, past its exit code. A stop still pending here found the work
        done: the command ends as it would have."""
        with contextlib.suppress(ValueError):  # not the main thread (embedded use)
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig in (*STOP_SIGNALS, signal.SIGALRM):
                signal.signal(sig, signal.SIG_IGN)

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
