"""How a satconv command stops: SIGTERM (cron, systemd, kill), Ctrl-C and SIGHUP (the terminal
or SSH session it ran in closed).

Every command turns each into a KeyboardInterrupt in the main thread, so that the staged files
of what it was writing are removed on the way out, and ends with one line and the exit code a
shell gives a process stopped by that signal: 130 for Ctrl-C, 143 for SIGTERM, 129 for
SIGHUP. A signal the parent process set to be ignored (a background job of a
non-interactive shell ignores Ctrl-C, ``nohup`` SIGHUP) stays ignored. The handlers are in
place while the command runs and restored after it.

A stop never lands inside rasterio's or numba's code, and later signals are ignored while the
command cleans up (:mod:`satconv.stopping`).

The ``satconv`` command installs the handling before it imports anything heavy
(:func:`main`), so that even a stop during start-up ends with one line, and settles it as it
ends (:meth:`Stops.settle`): no signal in the interpreter's shutdown changes the exit code.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..stopping import STOP_RETRY, Stops, in_delicate_code

__all__ = ["STOP_RETRY", "StoppableGroup", "Stops", "command_stops", "in_delicate_code",
           "json_logs", "main"]

_KEY = "satconv.stops"

#: The handling ``main`` installed for the whole process, if it did.
_PROCESS: Stops | None = None


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

        cli_main()
    except KeyboardInterrupt:  # during start-up, or past the command's own handling
        print(f"satconv: {_PROCESS.what}", file=sys.stderr)
        sys.exit(_PROCESS.exit_code)
    finally:
        _PROCESS.settle()


class StoppableGroup(click.Group):
    """A click group whose commands stop as this module says: a KeyboardInterrupt a command
    did not handle itself ends it with one line (``satconv: plan interrupted``) and exit code
    130, 143 or 129, where click would print "Aborted!" and exit 1."""

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
