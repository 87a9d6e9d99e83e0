"""What a run reports while it works: plain events through a callback.

Nothing below the command line prints. The library (``batch``, ``locks``, ``parts``,
``distributed``) calls an :data:`Emit` callback with :class:`Event` objects; the command line
renders them as a progress bar, plain lines or JSON lines (``satconv/scripts/render.py``).
Events are plain, picklable data, so they cross process boundaries (``--jobs``, ``--timeout``)
and Dask workers unchanged.

Kinds, in the order a batch produces them:

``batch_start``  inputs, jobs, backend
``warmup``       seconds and compiled (kernel versions compiled, 0 when all came from the
                 cache), or error: the kernels compiled before child processes start
                 (``--jobs``, ``--timeout``; ``satconv.warmup``); on Dask also workers and
                 slowest (the longest single warm-up, client or worker)
``start``        input, outputs: one input begins (after its output lock is held)
``lock_wait``    input, output, holder: another run writes the same output; waiting for it
``lock_takeover`` input, output, holder: the lock of a run that is gone was taken over
``checkpoint``   input, tiles_done, tiles_total, action (``resume``; or ``discard``, with reason)
``progress``     input, phase (``plan`` / ``execute``), done, total
``warning``      input, message (one line naming the file): the input is done, but
                 something may not be what was meant (a context source whose regions miss it)
``done``         input, summary, report, seconds
``skipped``      input, reason
``failed``       input, error (one line), error_type, exit_code (, traceback with --debug)
``batch_done``   inputs, done, skipped, failed, exit_code, seconds, failures
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("batch_start", "warmup", "start", "lock_wait", "lock_takeover", "checkpoint", "progress",
         "warning", "done", "skipped", "failed", "batch_done")


@dataclass(frozen=True)
class Event:
    """One thing that happened: its kind, the input it concerns (if any), when, and details."""

    kind: str
    input: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-lines form: ``time`` (ISO 8601, UTC), ``event``, ``input``, then fields."""
        stamp = datetime.datetime.fromtimestamp(self.time, tz=datetime.UTC)
        out: dict[str, Any] = {"time": stamp.isoformat(timespec="milliseconds"),
                               "event": self.kind}
        if self.input is not None:
            out["input"] = self.input
        out.update(self.fields)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        rest = {k: v for k, v in d.items() if k not in ("time", "event", "input", "_t")}
        return cls(d["event"], d.get("input"), rest, d.get("_t", time.time()))


Emit = Callable[[Event], None]


def ignore(event: Event) -> None:
    """An :data:`Emit` that drops everything."""


def progress_factory(emit: Emit, src: str, every: int = 0,
                     check: Callable[[], None] | None = None,
                     ) -> Callable[[str, int], Callable[[int], None]]:
    """An ``api.ProgressFactory`` that turns per-tile callbacks into ``progress`` events.

    ``every``: one event each ``every`` tiles (and always at the last tile); 0 means about
    every tenth of the phase. ``check`` is called at every tile: it raises to stop the work.
    """

    def factory(phase: str, total: int) -> Callable[[int], None]:
        step = every if every > 0 else max(1, total // 10)
        done = 0
        last = 0

        def tick(n: int) -> None:
            nonlocal done, last
            if check is not None:
                check()
            done += n
            if done - last >= step or done >= total:
                last = done
                emit(Event("progress", src, {"phase": phase, "done": done, "total": total}))

        return tick

    return factory
