"""Many inputs: each one, when a time limit is set, in a child process that can be stopped.

A GDAL call that hangs on a pathological file cannot be interrupted from another thread, so a
time limit needs a process of its own: :func:`call_with_timeout` runs one call in a fresh child
(the ``spawn`` start method: no threads or GDAL handles inherited), kills it when the time is up
or the caller is interrupted, lets the caller clean up what it left, and hands back its result
or its exception. :func:`run_scene_with_timeout` is ``api.run_scene`` under that limit; what a
killed child leaves (its ``.NAME.<pid>.partial`` outputs) is removed by the parent.

Nothing here prints. Later extensions (``--jobs``, Dask) can build on the same two functions.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from . import raster_io
from .api import OutputPaths, RunReport, run_scene
from .config import Settings
from .errors import InputError, InputTimeout

R = TypeVar("R")

_CONTEXT = "spawn"
#: Seconds a child that has answered gets to exit on its own before it is killed.
_EXIT_GRACE = 10.0


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this child when its parent dies (Linux; best effort), and stop
    now if the parent already died while this process was starting."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _child(conn: Any, parent: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    _die_with_parent(parent)
    try:
        message: tuple[str, Any] = ("ok", fn(*args, **kwargs))
    except BaseException as err:  # noqa: BLE001 - everything goes back to the parent
        err.add_note(f"in child process:\n{traceback.format_exc()}")
        try:
            pickle.dumps(err)
        except Exception:  # noqa: BLE001 - an exception that cannot cross processes
            err = RuntimeError(f"{type(err).__name__}: {err}")
        message = ("error", err)
    try:
        conn.send(message)
    finally:
        conn.close()


def call_with_timeout(
    fn: Callable[..., R],
    *args: Any,
    timeout: float,
    cleanup: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> R:
    """Return ``fn(*args, **kwargs)`` computed in a child process within ``timeout`` seconds.

    ``fn``, its arguments and its result must be picklable (``fn`` a module-level function).
    What ``fn`` raises is raised here. When the time is up the child is killed and
    :class:`InputTimeout` raised; when it dies without an answer (a crash in a C library, the
    out-of-memory killer), :class:`WorkerDied`; when the caller is interrupted (Ctrl-C), the
    child is killed and the interruption goes on. After a kill or a death,
    ``cleanup(child_pid)`` is called.
    """
    ctx = multiprocessing.get_context(_CONTEXT)
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(sender, os.getpid(), fn, args, kwargs), daemon=True)
    proc.start()
    sender.close()
    answer: tuple[str, Any] | None = None
    timed_out = False
    try:
        if receiver.poll(timeout):
            with contextlib.suppress(EOFError, OSError):
                answer = receiver.recv()
        else:
            timed_out = True
        if answer is not None:
            proc.join(_EXIT_GRACE)  # done: let it exit, but never wait on a stuck exit
        proc.kill()
        proc.join()
    except BaseException:
        proc.kill()
        proc.join()
        if cleanup is not None:
            cleanup(proc.pid)
        raise
    finally:
        receiver.close()
    if answer is None:
        if cleanup is not None:
            cleanup(proc.pid)
        if timed_out:
            raise InputTimeout(f"timed out after {timeout:g} s")
        raise WorkerDied(f"the worker process died ({_describe_exit(proc.exitcode)})")
    status, value = answer
    if status == "ok":
        return value
    raise value


class WorkerDied(InputError):
    """The child process ended without an answer (killed, or a crash in a C library)."""


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def run_scene_with_timeout(
    src: str | Path,
    settings: Settings,
    timeout: float,
    output: Path | None = None,
    out_dir: Path | None = None,
    **kwargs: Any,
) -> RunReport:
    """``api.run_scene`` in a child process, stopped after ``timeout`` seconds.

    On a timeout or a crash, every output the child had started (its staged files) is removed
    and :class:`InputTimeout` / :class:`InputError` names the input. No progress callback
    crosses the process boundary: the child runs without one.
    """
    paths = OutputPaths.for_input(Path(src), output, out_dir)

    def cleanup(pid: int) -> None:
        raster_io.remove_partials(paths.all(), pid)

    try:
        return call_with_timeout(run_scene, src, settings, timeout=timeout, cleanup=cleanup,
                                 output=output, out_dir=out_dir, **kwargs)
    except InputTimeout as err:
        raise InputTimeout(f"{src}: {err}; stopped, nothing written") from None
    except WorkerDied as err:
        raise WorkerDied(f"{src}: {err}; nothing written") from None
