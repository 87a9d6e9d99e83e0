"""Many inputs: batches, idempotent reruns, locks, and each input in a child process when
asked (``--jobs``, ``--timeout``).

A GDAL call that hangs on a pathological file cannot be interrupted from another thread, so a
time limit needs a process of its own: a :class:`Worker` runs inputs in a fresh child (the
``spawn`` start method: no threads or GDAL handles inherited), kills it when an input's time is
up or the batch is interrupted, and removes what the killed child left (its
``.NAME.<pid>.partial`` outputs).

A batch (:func:`run_batch`) runs :func:`run_one` for every input: in this process one after
the other, in ``--jobs`` worker processes at once (:class:`Worker`: input after input, and a
fresh process after a crash in a C library or a hang, which cost that input only), or on a Dask
cluster (``satconv.distributed``). :func:`run_one` holds the output's lock
(``satconv.locks``), skips an input whose outputs are complete and current
(``--skip-existing``), continues an interrupted run (``--resume``, ``satconv.parts``) and
turns every failure into an :class:`Outcome`: one bad input never stops the others.

Nothing here prints: what happens goes to an ``emit`` callback as ``satconv.events.Event``.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import multiprocessing
import os
import queue as queue_mod
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

from . import fingerprint, locks, parts, raster_io, tile_cache
from .api import OutputPaths, RunReport, input_policy, interrupted_commit, run_scene
from .config import Settings
from .core import cache_dir
from .errors import InputError, InputTimeout, OutputError, SatconvError, UsageError
from .events import Emit, Event, ignore, progress_factory
from .parallel import default_workers
from .planning import plan_warnings
from .stopping import STOP_SIGNALS, Stops

_CONTEXT = "spawn"
#: Seconds a child that has answered gets to exit on its own before it is killed.
_EXIT_GRACE = 10.0
#: Seconds a new worker process may take to start (imports, then loading the kernels from
#: numba's cache: about a second) before it is given up and its input failed; no input's
#: ``--timeout`` counts them.
START_LIMIT = 300.0
#: What stops a child (``_on_interrupt_stop``).
_STOP_SIGNALS = set(STOP_SIGNALS)
#: Children running now (so an interrupted batch can interrupt them).
_LIVE: set[Any] = set()
_LIVE_LOCK = threading.Lock()


def _start_tracker() -> None:
    """Start multiprocessing's resource tracker (shared by the children) with SIGHUP ignored,
    which it inherits: it ignores SIGINT and SIGTERM itself, and a closed terminal must not
    kill it under the batch either (its children would then print tracebacks of a lost
    tracker). From the main thread only; elsewhere the first child starts it as it is."""
    with contextlib.suppress(ValueError):  # not the main thread (embedded use)
        hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            resource_tracker.ensure_running()
        finally:
            signal.signal(signal.SIGHUP, hup)


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this child when its parent dies (Linux; best effort), and stop
    now if the parent already died while this process was starting."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _on_interrupt_stop() -> None:
    """In a child: SIGINT, SIGTERM and SIGHUP stop the work, once, as they stop a command
    (:class:`satconv.stopping.Stops`), even where the parent's shell ignores Ctrl-C."""
    Stops().install(force=True)


class WorkerDied(InputError):
    """The child process ended without an answer (killed, or a crash in a C library)."""


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


# ---------------------------------------------------------------- inputs


_MAGIC = set("*?[")
#: What satconv writes: never picked up by a pattern (a rerun of ``'scenes/*.tif'`` with the
#: outputs beside the inputs must not convolve last night's outputs).
OUTPUT_SUFFIXES = (".satconv.tif", ".stride.tif", ".error.tif", ".satconv.json",
                   ".quicklook.png")
#: Files GDAL reads beside a raster, never rasters to convolve on their own: masks,
#: overviews, auxiliary metadata, world files (compared in lower case).
SIDE_SUFFIXES = (".msk", ".ovr", ".aux.xml", ".aux", ".rrd", ".tfw", ".tifw", ".tiffw",
                 ".wld", ".prj")


def _picked_by_pattern(path: str, skip: set[str]) -> bool:
    """Whether a file a pattern matched is an input: not a folder, not satconv's own output,
    not a raster's side file, not one of ``skip``."""
    return (not os.path.isdir(path) and not path.endswith(OUTPUT_SUFFIXES)
            and not path.lower().endswith(SIDE_SUFFIXES) and os.path.abspath(path) not in skip)


def expand_inputs(args: Sequence[str], lists: Sequence[str] = (),
                  exclude: Sequence[str] = ()) -> list[str]:
    """The inputs of a batch, in order, each once (``a.tif``, ``./a.tif`` and ``/data/a.tif``
    are one input, the first name kept): ``args`` (a name that is not an existing file but
    holds ``* ? [`` is a glob pattern, ``**`` recursive; quote it in the shell) and the lines
    of each ``--from-list`` file (``-``: standard input; blank lines and lines starting with
    ``#`` skipped; relative paths are relative to the current folder).

    Files a pattern matches that are satconv's own outputs (``*.satconv.tif``,
    ``*.stride.tif``, ``*.error.tif``, ``*.satconv.json``, ``*.quicklook.png``), side files
    GDAL reads beside a raster (``SIDE_SUFFIXES``: ``.msk`` masks, ``.ovr`` overviews,
    ``.aux.xml``, world files) or one of ``exclude`` (the batch's summary file) are left out;
    name them explicitly to use them as inputs. A pattern that matches nothing stays as it
    is, so it fails as a missing input, named.
    A list that cannot be read is a :class:`UsageError`.
    """
    names: list[str] = []
    for lst in lists:
        try:
            text = sys.stdin.read() if lst == "-" else Path(lst).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            why = getattr(err, "strerror", None) or str(err)
            raise UsageError(f"{lst}: cannot read the list of inputs ({why})") from None
        names += [ln.strip() for ln in text.splitlines()
                  if ln.strip() and not ln.lstrip().startswith("#")]
    out: list[str] = []
    seen: set[object] = set()
    skip = {os.path.abspath(e) for e in exclude}
    for name in [*args, *names]:
        matches = [name]
        if _MAGIC & set(name) and not os.path.lexists(name):
            found = sorted(glob.glob(name, recursive=True))
            matches = [m for m in found if _picked_by_pattern(m, skip)] or [name]
        for m in matches:
            # ./a.tif and /data/a.tif: one file, one input (a link of another name is another)
            key = (os.path.realpath(m), os.path.basename(m)) if os.path.isfile(m) else m
            if key not in seen:
                seen.add(key)
                out.append(m)
    return out


# ---------------------------------------------------------------- one input


@dataclass(frozen=True)
class RunOptions:
    """Everything about how to run an input, besides the config (plain, picklable)."""

    output: Path | None = None
    out_dir: Path | None = None
    plan_path: Path | None = None
    overwrite: bool = False
    skip_existing: bool = False
    resume: bool = False
    threads: int | None = None
    on_lock: str = "fail"  # fail | wait
    lock_timeout: float | None = None
    progress_every: int = 0
    debug: bool = False
    error_map: bool = False

    def paths(self, src: str) -> OutputPaths:
        paths = OutputPaths.for_input(Path(src), self.output, self.out_dir)
        return paths.with_error_map() if self.error_map else paths


@dataclass(frozen=True)
class Outcome:
    """What became of one input: ``done``, ``skipped`` or ``failed``, with the one line that
    says why (a failure's message names the input or the file at fault)."""

    input: str
    status: str
    message: str = ""
    exit_code: int = 0
    error_type: str | None = None
    report: str | None = None
    seconds: float = 0.0
    traceback: str | None = None

    def event(self) -> Event:
        fields: dict[str, Any] = {"seconds": round(self.seconds, 3)}
        if self.status == "done":
            fields.update(summary=self.message, report=self.report)
        elif self.status == "skipped":
            fields.update(reason=self.message, report=self.report)
        else:
            fields.update(error=self.message, error_type=self.error_type,
                          exit_code=self.exit_code)
            if self.traceback:
                fields["traceback"] = self.traceback
        return Event(self.status, self.input, fields)


def failure(src: str, err: BaseException, seconds: float = 0.0, debug: bool = False,
            ) -> Outcome:
    """An :class:`Outcome` for an exception: a satconv error's own line (after the input's
    name when the line names another file, an output say), anything else as an unexpected
    error naming the input."""
    tb = "".join(traceback.format_exception(err)) if debug else None
    if isinstance(err, SatconvError):
        text = str(err)
        if src not in text:  # an output's or a side file's message: the input first
            text = f"{src}: {text}"
        return Outcome(src, "failed", text, err.exit_code, type(err).__name__,
                       seconds=seconds, traceback=tb)
    text = " ".join(str(err).split()) or "(no message)"  # one line
    if cache_dir.damaged(err):
        text += f" ({cache_dir.DAMAGED})"
    return Outcome(src, "failed", f"{src}: unexpected error: {type(err).__name__}: {text}", 1,
                   type(err).__name__, seconds=seconds, traceback=tb)


def outputs_state(src: str, settings: Settings, paths: OutputPaths,
                  plan_path: Path | None) -> str:
    """``absent`` (no output exists), ``current`` (all exist, every raster is complete, and
    the report records the fingerprint this run would have), ``redo`` (this run's own outputs
    but not a finished result: a run killed while renaming them into place, a current set
    with a damaged raster, or one with a raster deleted since) or ``stale`` (something else
    is there)."""
    present = [p.exists() for p in paths.all()]
    if not any(present):
        return "absent"
    recorded = fingerprint.recorded(paths.report)
    if recorded is None:  # no report, or a damaged one, beside this run's rasters is redone
        return "redo" if interrupted_commit(paths, settings) else "stale"
    with raster_io.gdal_env(), raster_io.open_input(src, input_policy(settings)) as ds:
        info = raster_io.describe(ds)
    if recorded != fingerprint.of_run(info, settings, plan_path):
        return "stale"
    if not all(present):  # this run's report: what is left of its rasters is redone too
        return "redo" if _own_rasters(paths, settings) else "stale"
    for p in paths.all():
        if p != paths.report:
            try:
                raster_io.verify_output(p)
            except OutputError:
                return "redo"
    return "current"


def _own_rasters(paths: OutputPaths, settings: Settings) -> bool:
    """Whether every raster output present beside a report of this run is this run's own (its
    config and report tags), or damaged past reading: never another run's finished file."""
    config = settings.to_json()
    for p in paths.all():
        if p == paths.report or not p.exists():
            continue
        try:
            tags = raster_io.tags(p)
        except (SatconvError, OSError):
            continue  # unreadable: nothing of value is lost by redoing it
        if tags.get("SATCONV_CONFIG") != config or \
                tags.get("SATCONV_REPORT", paths.report.name) != paths.report.name:
            return False
    return True


def units(src: str, settings: Settings, opts: RunOptions,
          ) -> list[tuple[Settings, OutputPaths]]:
    """What one input produces: its settings and outputs, or, with ``steps:`` in the config,
    each step's."""
    if not settings.steps:
        return [(settings, opts.paths(src))]
    from . import steps

    return [(st.settings, st.paths)
            for st in steps.plan_steps(src, settings, opts.output, opts.out_dir)]


def _steps_line(src: str, reports: list[RunReport], seconds: float) -> str:
    parts_ = []
    for r in reports:
        frac = 100 * r.compute_spent()
        parts_.append(f"{r.execute.get('step')} (compute {frac:.1f}%)")
    tiles = reports[0].execute.get("tiles", 0)
    return f"{src}: {tiles} tiles, steps {', '.join(parts_)}, {seconds:.1f} s"


def run_one(src: str, settings: Settings, opts: RunOptions, emit: Emit = ignore,
            runner: parts.PartRunner | None = None,
            check: Callable[[], None] | None = None) -> Outcome:
    """Run one input under its outputs' locks and return what became of it; never raises for
    a failure of the input (``KeyboardInterrupt`` goes through).

    ``runner``: compute the scene as part files with this runner (a Dask cluster); parts are
    also used, locally, with ``opts.resume``. With ``steps:`` in the config every step runs
    over the input in one pass of reading (``satconv.steps``). ``check`` is called at every
    tile and raises to stop the input (a Dask task whose command was stopped).
    """
    t0 = time.monotonic()
    try:
        if settings.steps and (opts.resume or runner is not None or opts.plan_path):
            raise UsageError("steps: --resume, --plan and Dask row bands run single-kernel "
                             "configs only")
        todo = units(src, settings, opts)
        paths = todo[0][1]
        raster_io.input_path(src, input_policy(settings))  # a missing input is named first
        for _, p in todo:
            raster_io.check_output_dir(p.raster)
        with contextlib.ExitStack() as held:
            # the raster's name and the stride map's (whose stem the report shares): two
            # runs whose output names overlap in any way meet at one of them; taken in one
            # order of the names alone (rasters' first), so that waiting runs never wait on
            # each other in a circle
            targets = {t: p for _, p in todo for t in (p.raster, p.stride_map)}
            for target in sorted(targets, key=lambda t: (t.name.endswith(".stride.tif"),
                                                         str(t))):
                _lock(held, src, target, targets[target], opts, emit)
            emit(Event("start", src, {"outputs": {k: str(v) for k, v in
                                                  asdict(paths).items() if v is not None}}))
            overwrite = opts.overwrite
            if opts.skip_existing:
                states = [outputs_state(src, ss, p, opts.plan_path) for ss, p in todo]
                if all(st == "current" for st in states):
                    for _, p in todo:  # a resumable run killed after committing its outputs
                        if parts.leftovers(p.raster):
                            emit(Event("checkpoint", src, {
                                "action": "discard",
                                "reason": "its outputs were already complete"}))
                            parts.discard(p.raster)
                    return Outcome(src, "skipped", "outputs are complete and current "
                                   "(same input and config)", report=str(paths.report),
                                   seconds=time.monotonic() - t0)
                stale = [p for st, (_, p) in zip(states, todo, strict=True) if st == "stale"]
                overwrite = overwrite or "redo" in states
                if stale and not opts.overwrite:
                    raise OutputError(f"{stale[0].report}: outputs exist but were not made "
                                      "from this input and config, or are incomplete (use "
                                      "--overwrite to replace them)")
            progress = progress_factory(emit, src, opts.progress_every, check)
            if settings.steps:
                from . import steps

                reports = steps.run_steps(src, settings, output=opts.output,
                                          out_dir=opts.out_dir, overwrite=overwrite,
                                          workers=opts.threads, progress=progress)
                _warn(emit, src, reports)
                line = _steps_line(src, reports, time.monotonic() - t0)
                return Outcome(src, "done", line, report=str(paths.report),
                               seconds=time.monotonic() - t0)
            engine = None
            if opts.resume or runner is not None:
                engine = parts.PartsEngine(paths.raster, settings.tile_size, resume=opts.resume,
                                           runner=runner, emit=emit, src=src)
            elif parts.leftovers(paths.raster):
                emit(Event("checkpoint", src, {"action": "discard",
                                               "reason": "--resume not given"}))
                parts.discard(paths.raster)
            report = run_scene(src, settings, output=opts.output, out_dir=opts.out_dir,
                               plan_path=opts.plan_path, overwrite=overwrite,
                               workers=opts.threads, progress=progress, engine=engine,
                               error_map=opts.error_map)
            if engine is not None:
                engine.cleanup()
            _warn(emit, src, [report])
        return Outcome(src, "done", report.summary_line(), report=str(paths.report),
                       seconds=time.monotonic() - t0)
    except Exception as err:  # noqa: BLE001 - one outcome per input, never a crash
        return failure(src, err, time.monotonic() - t0, opts.debug)


def _warn(emit: Emit, src: str, reports: list[RunReport]) -> None:
    """A ``warning`` event for each distinct warning of the reports' plans
    (``planning.plan_warnings``), before the input's ``done``."""
    seen: list[str] = []
    for r in reports:
        for message in plan_warnings(r.plan):
            if message not in seen:
                seen.append(message)
                emit(Event("warning", src, {"message": message}))


def _lock(held: contextlib.ExitStack, src: str, target: Path, paths: OutputPaths,
          opts: RunOptions, emit: Emit) -> None:
    """Take the lock of ``target`` (one of ``paths``) into ``held``; clean up after a killed
    holder."""

    def waiting(holder: locks.Holder | None) -> None:
        emit(Event("lock_wait", src, {"output": str(target),
                                      **(holder.as_fields() if holder else {})}))

    lock = held.enter_context(locks.OutputLock(target, wait=opts.on_lock == "wait",
                                               timeout=opts.lock_timeout, on_wait=waiting))
    if lock.previous is not None:
        emit(Event("lock_takeover", src, {"output": str(target),
                                          **lock.previous.as_fields()}))
        raster_io.remove_partials(paths.all(), lock.previous.pid)


def _child_run_one(src: str, settings: Settings, opts: RunOptions, events: Any) -> Outcome:
    """:func:`run_one` in a child process: events go to the parent through ``events``."""

    def emit(ev: Event) -> None:
        with contextlib.suppress(Exception):
            events.put(ev)

    return run_one(src, settings, opts, emit)


def load_kernels(settings: Settings) -> None:
    """Load the kernels a run of ``settings`` uses from numba's cache into this process (the
    batch compiled them before its children started), so that the first input's time limit
    does not pay for it. Best effort: what is not loaded here loads when the input needs it,
    and a damaged cache is not repaired here (other workers may be loading from it)."""
    from . import warmup

    with contextlib.suppress(Exception):
        warmup.load(settings)


def prepare_worker(settings: Settings, scenes: int = 1) -> None:
    """A batch worker's start: it shares the machine's memory with the other ``scenes`` - 1
    running at once (the decoded tiles it keeps, ``satconv.tile_cache``), then loads the
    kernels (:func:`load_kernels`)."""
    tile_cache.SCENES_AT_ONCE = scenes
    load_kernels(settings)


def _serve(conn: Any, parent: int, events: Any, settings: Settings,
           prepare: Callable[[Settings], None]) -> None:
    """A worker process's loop: ``prepare(settings)``, answer ``("ready", None)``, then run
    each ``(src, settings, opts)`` it is sent with :func:`run_one` and answer with the
    outcome, until told to stop (``None``) or interrupted. Interrupted while it prepares, it
    answers ``("error", KeyboardInterrupt())``, as it would for an input."""
    _die_with_parent(parent)
    try:
        _on_interrupt_stop()
        try:
            # blocked by Worker._start; one that came meanwhile is raised here
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            prepare(settings)
        except KeyboardInterrupt as err:
            conn.send(("error", err))
            return
        conn.send(("ready", None))
        while True:
            task = conn.recv()
            if task is None:
                return
            try:
                message: tuple[str, Any] = ("ok", _child_run_one(*task, events))
            except BaseException as err:  # noqa: BLE001 - KeyboardInterrupt included
                message = ("error", err if isinstance(err, KeyboardInterrupt)
                           else RuntimeError(f"{type(err).__name__}: {err}"))
            conn.send(message)
            if message[0] == "error":
                return
    except (EOFError, OSError, KeyboardInterrupt):
        return
    finally:
        conn.close()


class Worker:
    """A child process that runs inputs one after the other (no interpreter, numba or GDAL
    start-up per input). An input that takes longer than the time limit, or kills the process,
    costs that input only: the process is killed, what it had staged and its lock removed, and
    the next input gets a fresh process.

    A time limit counts from the moment the process has started and loaded the kernels
    (``prepare``, :func:`load_kernels` by default; a module-level function, as the process is
    spawned): an input is not failed for the second or so a fresh interpreter takes."""

    def __init__(self, events: Any, prepare: Callable[[Settings], None] = load_kernels):
        self.events = events
        self.prepare = prepare
        self.proc: Any = None
        self.conn: Any = None

    def _start(self, settings: Settings) -> str | None:
        """Start the process; None once it says it is ready, else why it did not start.
        Raises ``KeyboardInterrupt`` when it was interrupted while starting (the batch is
        being stopped)."""
        ctx = multiprocessing.get_context(_CONTEXT)
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_serve, daemon=True,
                                args=(child, os.getpid(), self.events, settings, self.prepare))
        # The child inherits these signals blocked, and unblocks them once its handlers are in
        # place (``_serve``): a Ctrl-C to the process group in the child's first half second
        # would otherwise print a traceback from the interpreter's start-up.
        # (multiprocessing's resource tracker unblocks every signal when it starts: before;
        # started by _start_tracker already, unless it died since)
        resource_tracker.ensure_running()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self.proc.start()
        except OSError as err:  # out of processes or memory: nothing was started
            self.proc = None
            self.conn.close()
            self.conn = None
            return f"{type(err).__name__}: {err}"
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            child.close()
        with _LIVE_LOCK:
            _LIVE.add(self.proc)
        answer = None
        try:
            if not self.conn.poll(START_LIMIT):
                return f"no answer in {START_LIMIT:g} s"
            answer = self.conn.recv()
        except (EOFError, OSError):
            pass
        if answer == ("ready", None):
            return None
        if answer is not None and answer[0] == "error":
            self._end(kill=False)
            raise answer[1]
        self.proc.join(_EXIT_GRACE)
        return _describe_exit(self.proc.exitcode)

    def _end(self, kill: bool) -> int | None:
        """Stop the process (kill it, or let it exit); return its pid."""
        if self.proc is None:
            return None
        proc, conn = self.proc, self.conn
        self.proc = self.conn = None
        if not kill:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
            proc.join(_EXIT_GRACE)
        proc.kill()
        proc.join()
        conn.close()
        with _LIVE_LOCK:
            _LIVE.discard(proc)
        return proc.pid

    def close(self) -> None:
        self._end(kill=False)

    def run(self, src: str, settings: Settings, opts: RunOptions,
            timeout: float | None = None) -> Outcome:
        """:func:`run_one` in this worker's process, within ``timeout`` seconds."""
        t0 = time.monotonic()
        if self.proc is None or not self.proc.is_alive():
            self._end(kill=True)
            why = self._start(settings)
            if why is not None:
                self._end(kill=True)
                return failure(src, WorkerDied(f"{src}: the worker process did not start "
                                               f"({why}); nothing written"),
                               time.monotonic() - t0)
            t0 = time.monotonic()
        try:
            paths = [p for _, p in units(src, settings, opts)]
        except Exception:  # noqa: BLE001 - the child reports a bad config itself
            paths = [opts.paths(src)]
        answer: tuple[str, Any] | None = None
        timed_out = False
        try:
            self.conn.send((src, settings, opts))
            if self.conn.poll(timeout):
                with contextlib.suppress(EOFError, OSError):
                    answer = self.conn.recv()
            else:
                timed_out = True
        except BaseException:
            self._cleanup(self._end(kill=True), paths)
            raise
        if answer is not None:
            status, value = answer
            if status == "ok":
                return value
            self._end(kill=False)
            raise value
        if not timed_out:
            self.proc.join(_EXIT_GRACE)  # died: reap it, for its exit status
        code = self.proc.exitcode
        pid = self._end(kill=True)
        self._cleanup(pid, paths)
        kept = ("finished parts kept for --resume"
                if opts.resume and any(parts.finished_parts(p.raster) for p in paths)
                else "nothing written")
        if timed_out:
            err: InputError = InputTimeout(f"{src}: timed out after {timeout:g} s; stopped, "
                                           f"{kept}")
        else:
            err = WorkerDied(f"{src}: the worker process died ({_describe_exit(code)}); {kept}")
        return failure(src, err, time.monotonic() - t0)

    @staticmethod
    def _cleanup(pid: int | None, paths: list[OutputPaths]) -> None:
        if pid is not None:
            for p in paths:
                raster_io.remove_partials(p.all(), pid)
                parts.remove_unfinished(p.raster, pid)
                locks.clear_if_held_by(p.raster, pid)
                locks.clear_if_held_by(p.stride_map, pid)


# ---------------------------------------------------------------- a batch


@dataclass
class BatchSummary:
    """Every input's outcome, in input order, and what they add up to."""

    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    backend: str = "local"

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        return max([o.exit_code for o in self.outcomes if o.status in ("failed", "stopped")],
                   default=0)

    def to_dict(self) -> dict[str, Any]:
        counts = {"done": self.count("done"), "skipped": self.count("skipped"),
                  "failed": self.count("failed")}
        if self.count("stopped"):  # an interrupted batch (BatchInterrupted)
            counts["stopped"] = self.count("stopped")
        return {
            "inputs": len(self.outcomes), **counts,
            "exit_code": self.exit_code, "seconds": round(self.seconds, 3),
            "backend": self.backend,
            "results": [{k: v for k, v in asdict(o).items() if v is not None}
                        for o in self.outcomes],
        }

    def event(self) -> Event:
        d = self.to_dict()
        d["failures"] = [{"input": o.input, "error": o.message} for o in self.outcomes
                         if o.status == "failed"]
        del d["results"]
        return Event("batch_done", None, d)

    def write(self, path: Path) -> None:
        """The batch summary JSON, written atomically."""
        parts._write_json(Path(path), self.to_dict())


def not_run(sources: Sequence[str], err: SatconvError, backend: str) -> BatchSummary:
    """The summary of a batch that ended before any input ran (its Dask scheduler could not
    be reached): every input failed, for that reason."""
    return BatchSummary([Outcome(src, "failed", f"{src}: not run: {err}", err.exit_code,
                                 type(err).__name__) for src in sources], backend=backend)


class BatchInterrupted(KeyboardInterrupt):
    """A batch stopped by Ctrl-C or SIGTERM, with what became of each input: the outcomes of
    those that ended, and ``stopped`` for the rest (``exit_code``: 130, or 143 for SIGTERM,
    set by whoever knows which signal it was)."""

    def __init__(self, summary: BatchSummary):
        super().__init__()
        self.summary = summary

    def stopped(self, exit_code: int, how: str) -> BatchSummary:
        """The summary, with the inputs that did not end marked ``how`` (``interrupted``,
        ``terminated``) and ``exit_code``."""
        outcomes = [replace(o, message=f"{o.input}: {how}, not finished", exit_code=exit_code)
                    if o.status == "stopped" else o for o in self.summary.outcomes]
        return replace(self.summary, outcomes=outcomes)


def same_output_conflicts(sources: Sequence[str], settings: Settings,
                          opts: RunOptions) -> dict[str, Outcome]:
    """Inputs that would write the same output (of any step) as an earlier one: they fail
    before running."""
    first: dict[str, str] = {}
    out: dict[str, Outcome] = {}
    for src in sources:
        if not os.path.isfile(src):  # fails on its own, with its own reason
            continue
        for _, paths in units(src, settings, opts):
            key = os.path.abspath(paths.raster)
            if key in first and first[key] != src:
                out[src] = Outcome(src, "failed", f"{src}: would write the same output as "
                                   f"{first[key]} ({key}); not run", 1, "OutputError")
                break
            first[key] = src
    return out


def run_batch(
    sources: Sequence[str],
    settings: Settings,
    opts: RunOptions,
    emit: Emit = ignore,
    jobs: int = 1,
    timeout: float | None = None,
    scheduler: str | None = None,
    distribute: str = "auto",
) -> BatchSummary:
    """Run every input and return the summary; never stops at a failed input.

    ``jobs`` > 1 or a ``timeout`` run each input in a child process (``jobs`` at a time, each
    with ``opts.threads`` or its share of the CPUs); ``scheduler`` runs them on a Dask cluster
    (``satconv.distributed``; ``distribute``: ``scenes``, ``bands`` or ``auto``).
    """
    t0 = time.monotonic()
    sources = list(sources)
    backend = "dask" if scheduler else ("processes" if jobs > 1 or timeout else "local")
    emit(Event("batch_start", None, {"inputs": len(sources), "jobs": jobs, "backend": backend}))
    results: dict[str, Outcome] = {}
    conflicts = same_output_conflicts(sources, settings, opts)
    todo = [s for s in sources if s not in conflicts]

    def finish(o: Outcome) -> None:
        results[o.input] = o
        emit(o.event())

    try:
        if backend == "local":  # in input order, conflicts included
            for src in sources:
                finish(conflicts[src] if src in conflicts
                       else run_one(src, settings, opts, emit))
        else:
            for o in conflicts.values():
                finish(o)
        if scheduler:
            from . import distributed

            distributed.run_batch(scheduler, todo, settings, opts, emit, finish, distribute)
        elif backend != "local":
            if todo:
                _warm_up(settings, emit)
            _run_processes(todo, settings, opts, emit, finish, jobs, timeout)
    except KeyboardInterrupt:
        raise BatchInterrupted(BatchSummary(
            [results.get(s) or Outcome(s, "stopped") for s in sources],
            time.monotonic() - t0, backend)) from None
    summary = BatchSummary([results[s] for s in sources], time.monotonic() - t0, backend)
    emit(summary.event())
    return summary


def _warm_up(settings: Settings, emit: Emit) -> None:
    """Compile the kernels ``settings`` needs in this process before any child starts, so
    that no child spends its ``--timeout`` compiling and no two compile the same kernel at
    once. A failure is reported and the batch goes on: each child then compiles for itself."""
    from . import warmup

    def work() -> dict[str, Any]:
        seconds, compiled = warmup.warm_up_counting(settings)
        return {"seconds": round(seconds, 2), "compiled": compiled}

    warmup.report(emit, work)


def _run_processes(sources: list[str], settings: Settings, opts: RunOptions, emit: Emit,
                   finish: Callable[[Outcome], None], jobs: int, timeout: float | None) -> None:
    """Inputs in ``jobs`` worker processes (:class:`Worker`), one input at a time each; their
    events are forwarded from this thread, in order, and dropped once the input's outcome is
    in."""
    if opts.threads is None:
        opts = replace(opts, threads=max(1, default_workers() // max(1, jobs)))
    ctx = multiprocessing.get_context(_CONTEXT)
    _start_tracker()  # (a queue's semaphores would start it as it is)
    events = ctx.Queue()
    finished: set[str] = set()

    def drain() -> None:
        while True:
            try:
                ev = events.get_nowait()
            except (queue_mod.Empty, OSError, EOFError):
                return
            if ev.input not in finished:
                emit(ev)

    local = threading.local()
    workers: list[Worker] = []
    workers_lock = threading.Lock()

    def run_in_worker(src: str) -> Outcome:
        worker = getattr(local, "worker", None)
        if worker is None:
            worker = local.worker = Worker(events, functools.partial(prepare_worker,
                                                                     scenes=max(1, jobs)))
            with workers_lock:
                workers.append(worker)
        return worker.run(src, settings, opts, timeout)

    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="satconv-job")
    futures: dict[Future[Outcome], str] = {
        pool.submit(run_in_worker, src): src for src in sources}
    pending = set(futures)
    interrupted = False

    def stop() -> None:
        """Start nothing more; have each running child stop and clean up (SIGTERM, which a
        child turns into KeyboardInterrupt even where SIGINT is ignored)."""
        for fut in pending:
            fut.cancel()
        with _LIVE_LOCK:
            live = list(_LIVE)
        for proc in live:
            with contextlib.suppress(OSError, ValueError, TypeError):
                os.kill(proc.pid, signal.SIGTERM)

    try:
        while pending:
            try:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                interrupted = True
                stop()
                continue
            drain()
            for fut in done:
                if fut.cancelled():
                    continue
                src = futures[fut]
                exc = fut.exception()
                if isinstance(exc, KeyboardInterrupt):  # stopped: no outcome, still "active"
                    if not interrupted:
                        interrupted = True
                        stop()
                    continue
                outcome = fut.result() if exc is None else failure(src, exc)
                if interrupted and outcome.error_type == WorkerDied.__name__:
                    continue  # ended by the stop this batch sent it: stays "stopped"
                finished.add(src)
                finish(outcome)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for worker in workers:
            worker.close()
        drain()
        events.close()
    if interrupted:
        raise KeyboardInterrupt

