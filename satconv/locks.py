"""One writer per output: a lock file beside the output, held with ``fcntl.flock``.

``.NAME.lock`` (NAME the output raster's name) is created beside the output and locked with
``flock(LOCK_EX)``; it holds the holder's pid, host, start time and command as JSON, for
messages. Why ``flock`` rather than an ``O_EXCL`` file alone: the kernel drops the lock when
its holder dies, however it dies (SIGKILL, out-of-memory killer, a reboot of an NFSv4 client
whose lease expires), so a run can never be blocked by a dead one and no pid guessing is needed
(a pid can be reused by an unrelated process, and a pid on another host cannot be checked at
all). A lock file that is *not* locked but still names a holder is what a killed run leaves:
it is stale, and the next run takes it over (``previous`` says whose it was, so that run's
temporary files can be removed).

The holder removes the file when it is done, while still holding the lock. A waiter that was
blocked on the old file then finds the path gone or pointing elsewhere and starts over, so two
runs can never both believe they hold the lock.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OutputError

#: Seconds between two tries while waiting for a lock.
POLL = 0.2
#: Seconds a contender gives a new holder to write its name into the lock file it has just
#: locked (the file is created empty, then locked, then written).
NAMING = 1.0


class LockBusy(OutputError):
    """Another run holds the lock of an output (and we were not asked to wait, or waited
    long enough)."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a lock."""

    pid: int
    host: str
    started: float
    command: str = ""

    @classmethod
    def me(cls) -> Holder:
        return cls(os.getpid(), socket.gethostname(), time.time(), " ".join(sys.argv)[:500])

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            d = json.loads(text)
            return cls(int(d["pid"]), str(d["host"]), float(d["started"]),
                       str(d.get("command", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "started": self.started,
                           "command": self.command})

    def describe(self) -> str:
        since = datetime.datetime.fromtimestamp(self.started).isoformat(timespec="seconds")
        return f"pid {self.pid} on {self.host}, since {since}"

    def as_fields(self) -> dict[str, Any]:
        return {"pid": self.pid, "host": self.host, "started": self.started}


def lock_path(output: Path) -> Path:
    """The lock file of an output: ``.NAME.lock`` beside it."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 65536, 0).decode("utf-8", "replace")
    except OSError:
        return ""


def _holder_of(fd: int, path: Path) -> Holder | None:
    """The holder named in the lock file ``fd`` (at ``path``), which someone holds. A holder
    that has just taken the lock may not have written its name yet: wait for it up to
    ``NAMING`` seconds, or until the file is no longer the one at ``path``; then None."""
    deadline = time.monotonic() + NAMING
    while True:
        holder = Holder.parse(_read(fd))
        if holder is not None or time.monotonic() >= deadline:
            return holder
        if not _is_at(fd, path):
            return None
        time.sleep(0.01)


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the file at ``path`` (a holder removes its lock
    file when done, and the next run creates a new one)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


class OutputLock:
    """``with OutputLock(output):`` holds the lock of ``output`` for the block.

    ``wait``: when another run holds it, wait for it (at most ``timeout`` seconds, ``None``
    forever) instead of failing at once with :class:`LockBusy`. ``on_wait(holder)`` is called
    once when waiting starts. After acquiring, ``previous`` is the holder of a stale lock that
    was taken over (a run that was killed), else None.
    """

    def __init__(self, output: Path, wait: bool = False, timeout: float | None = None,
                 on_wait: Callable[[Holder | None], None] | None = None):
        self.output = Path(output)
        self.path = lock_path(self.output)
        self.wait = wait
        self.timeout = timeout
        self.on_wait = on_wait
        self.previous: Holder | None = None
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        announced = False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise OutputError(f"{self.output}: cannot create lock file {self.path.name} "
                                  f"({(err.strerror or str(err)).lower()})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder_of(fd, self.path)
                os.close(fd)
                who = holder.describe() if holder else "holder unknown"
                if not self.wait:
                    raise LockBusy(f"{self.output}: being written by another satconv run "
                                   f"({who}); not touched (--on-lock wait waits for it)"
                                   ) from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockBusy(f"{self.output}: still being written by another satconv run "
                                   f"({who}) after waiting {self.timeout:g} s; not touched"
                                   ) from None
                if not announced and self.on_wait is not None:
                    self.on_wait(holder)
                announced = True
                time.sleep(POLL)
                continue
            except OSError as err:
                os.close(fd)
                raise OutputError(f"{self.output}: cannot lock {self.path.name} "
                                  f"({(err.strerror or str(err)).lower()})") from None
            # Locked: but is it still the file at our path (its holder may have removed it)?
            if not _is_at(fd, self.path):
                os.close(fd)
                continue
            text = _read(fd)
            self.previous = Holder.parse(text) if text.strip() else None
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, Holder.me().to_json().encode(), 0)
            except OSError as err:  # a full disk: no run can write here, leave no lock file
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                os.close(fd)
                raise OutputError(f"{self.output}: cannot write lock file {self.path.name} "
                                  f"({(err.strerror or str(err)).lower()})") from None
            self._fd = fd
            return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def clear_if_held_by(output: Path, pid: int) -> None:
    """Remove the lock file of ``output`` when ``pid`` (a process we killed) was its holder
    and nobody holds it now. Never touches a lock someone holds."""
    path = lock_path(output)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder = Holder.parse(_read(fd))
        if holder is not None and holder.pid == pid and holder.host == socket.gethostname():
            if _is_at(fd, path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)
