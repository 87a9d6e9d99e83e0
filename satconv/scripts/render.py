"""How the command line shows events (``satconv.events``): progress bars on a terminal, plain
lines, or one JSON object per line (``--log-format json``) for log collectors."""

from __future__ import annotations

import datetime
import json
import sys
import threading
import traceback
from typing import Any, TextIO

from ..events import Event

#: A warm-up that loaded cached kernels (a second or two) is not worth a line; one that compiled
#: them (tens of seconds, after an install or upgrade) is. Warm-ups report what they compiled;
#: for one that does not say, a warm-up this long is taken to have compiled.
WARMUP_SHOWN_FROM = 5.0


#: Control characters (a newline in a file name, say) shown escaped: a log line stays one line.
_ESCAPES = {i: f"\\x{i:02x}" for i in range(32) if i != 9} | {10: "\\n", 13: "\\r", 127: "\\x7f"}


def one_line(text: str) -> str:
    """``text`` with its control characters escaped (``\\n`` for a newline): one line."""
    return text.translate(_ESCAPES)


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).isoformat(timespec="seconds")


class Renderer:
    """An ``Emit`` for the command line. Thread-safe (events may come from Dask's thread).

    ``fmt``: ``text`` or ``json``. ``bars``: tqdm progress bars (a terminal). ``lines``:
    progress as plain lines (``--progress-every`` given without a terminal). ``quiet``: only
    failures (and, in a batch, the count of them).
    """

    def __init__(self, fmt: str = "text", quiet: bool = False, bars: bool = False,
                 lines: bool = False, stream: TextIO | None = None):
        self.fmt = fmt
        self.quiet = quiet
        self.bars_on = bars and fmt == "text" and not quiet
        self.lines = lines
        self.stream = stream
        self.active: dict[str, bool] = {}
        self._bars: dict[tuple[str, str], Any] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------ output

    def _out(self) -> TextIO:
        return self.stream or sys.stderr

    def line(self, text: str) -> None:
        text = one_line(text)
        with self._lock:
            if self._bars:
                from tqdm import tqdm

                tqdm.write(text, file=self._out())
            else:
                print(text, file=self._out(), flush=True)

    def json_line(self, obj: dict[str, Any]) -> None:
        with self._lock:
            print(json.dumps(obj, default=str), file=self._out(), flush=True)

    def error(self, message: str, exit_code: int, err: BaseException | None = None,
              debug: bool = False) -> None:
        """A failure outside any input (usage, config): one line, or one JSON object."""
        if self.fmt == "json":
            obj: dict[str, Any] = {**Event("error").to_dict(), "error": message,
                                   "exit_code": exit_code}
            if debug and err is not None:
                obj["traceback"] = "".join(traceback.format_exception(err))
            self.json_line(obj)
            return
        if debug and err is not None:
            traceback.print_exception(err, file=self._out())
        self.line(f"satconv: {message}")

    # ------------------------------------------------------------ events

    def __call__(self, ev: Event) -> None:
        with self._lock:
            self._track(ev)
            if self.fmt == "json":
                if not (self.quiet and ev.kind == "progress"):
                    self.json_line(ev.to_dict())
                return
            handler = getattr(self, f"_on_{ev.kind}", None)
            if handler is not None:
                handler(ev)

    def _track(self, ev: Event) -> None:
        if ev.kind == "start" and ev.input is not None:
            self.active[ev.input] = True
        elif ev.kind in ("done", "skipped", "failed") and ev.input is not None:
            self.active.pop(ev.input, None)
            for key in [k for k in self._bars if k[0] == ev.input]:
                self._bars.pop(key).close()

    def _info(self, text: str) -> None:
        if not self.quiet:
            self.line(text)

    def _on_warmup(self, ev: Event) -> None:
        f = ev.fields
        if "error" in f:
            self._info(f"satconv: compiling the kernels ahead of the inputs failed "
                       f"({f['error']}); each input compiles what it needs")
        elif (f["compiled"] > 0 if "compiled" in f
              else f.get("slowest", f.get("seconds", 0)) >= WARMUP_SHOWN_FROM):
            where = f" here and on {f['workers']} Dask workers" if "workers" in f else ""
            self._info(f"satconv: compiled the kernels{where} in {f['seconds']:.0f} s (once "
                       "after an install or upgrade)")

    def _on_lock_wait(self, ev: Event) -> None:
        f = ev.fields
        who = f"pid {f['pid']} on {f['host']}, since {_when(f['started'])}" if "pid" in f \
            else "holder unknown"
        self._info(f"satconv: {f['output']}: being written by another satconv run ({who}); "
                   "waiting for it")

    def _on_lock_takeover(self, ev: Event) -> None:
        f = ev.fields
        self._info(f"satconv: {f['output']}: took over the lock of a satconv run that is gone "
                   f"(pid {f['pid']} on {f['host']}, since {_when(f['started'])}); its "
                   "temporary files were removed")

    def _on_checkpoint(self, ev: Event) -> None:
        f = ev.fields
        if f.get("action") == "resume":
            self._info(f"satconv: {ev.input}: resuming an interrupted run: "
                       f"{f['tiles_done']} of {f['tiles_total']} tiles already done")
        else:
            self._info(f"satconv: {ev.input}: discarded what an interrupted run left "
                       f"({f.get('reason', '')})")

    def _on_progress(self, ev: Event) -> None:
        f = ev.fields
        if self.bars_on:
            key = (ev.input or "", f["phase"])
            bar = self._bars.get(key)
            if bar is None:
                from tqdm import tqdm

                name = (ev.input or "").rsplit("/", 1)[-1]
                bar = tqdm(total=f["total"], desc=f"{name} {f['phase']}", unit="tile",
                           leave=False, dynamic_ncols=True, file=self._out())
                self._bars[key] = bar
            bar.update(f["done"] - bar.n)
            if f["done"] >= f["total"]:
                self._bars.pop(key).close()
        elif self.lines and not self.quiet:
            self.line(f"{ev.input}: {f['phase']} {f['done']}/{f['total']} tiles")

    def _on_warning(self, ev: Event) -> None:
        self._info(f"satconv: {ev.input}: warning: {ev.fields.get('message', '')}")

    def _on_done(self, ev: Event) -> None:
        self._info(ev.fields.get("summary", f"{ev.input}: done"))

    def _on_skipped(self, ev: Event) -> None:
        self._info(f"{ev.input}: skipped, {ev.fields.get('reason', '')}")

    def _on_failed(self, ev: Event) -> None:
        tb = ev.fields.get("traceback")
        if tb:
            with self._lock:
                print(tb, end="", file=self._out())
        self.line(f"satconv: {ev.fields.get('error', ev.input)}")

    def _on_batch_done(self, ev: Event) -> None:
        f = ev.fields
        n, failed = f["inputs"], f["failed"]
        if n <= 1:
            return
        if failed:
            rest = "" if self.quiet else f"; {f['done']} done, {f['skipped']} skipped"
            self.line(f"satconv: {failed} of {n} inputs failed{rest}")
        else:
            self._info(f"satconv: {n} inputs: {f['done']} done, {f['skipped']} skipped")

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
