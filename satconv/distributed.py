"""Running a batch on an existing Dask distributed cluster (``satconv run --scheduler``).

Optional: ``dask`` and ``distributed`` are imported only here, only when a scheduler is given
(``pip install satconv[dask]``). Workers must be able to import satconv and to read the inputs
and write the outputs at the same paths as the client (a shared file system).

Two ways to cut the work (``--distribute``):

``scenes``  every input is one task, :func:`satconv.batch.run_one` on a worker: the same lock,
            skip, resume and outputs as a local run. Progress events travel back through
            Dask's event log (``Worker.log_event`` / ``Client.subscribe_topic``).
``bands``   one huge scene at a time: the client plans and holds the output's lock; each row
            band of tiles (a part, ``satconv.parts``) is a task that writes its part file on
            the shared file system; the client assembles the parts into the output. Part files
            rather than one writer fed by the tasks' arrays: a band of a 20000-pixel-wide,
            4-band float32 scene is ~80 MB, which would all flow through the scheduler to one
            process; a part file is written where it is computed, a retried task just rewrites
            its part, and the parts are the same checkpoint ``--resume`` continues from.
``auto``    ``bands`` for a single input, ``scenes`` for several.

Results are identical to a local run: the same code computes every tile with the same plan.
"""

from __future__ import annotations

import contextlib
import os
import queue as queue_mod
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import raster_io, tile_cache
from .api import input_policy
from .batch import Outcome, RunOptions, run_one
from .config import Settings
from .errors import ClusterError, StoppedByClient, UsageError
from .events import Emit, Event
from .parallel import default_workers
from .parts import PartLayout, PartsEngine, write_parts
from .pipeline import ExecuteOptions
from .planning import Plan
from .raster_io import RasterInfo, first_line

#: Seconds to wait for the scheduler to answer.
CONNECT_TIMEOUT = 15
#: How often a scene task asks whether its command was stopped (seconds; it asks at a tile).
STOP_POLL = 0.5
#: Seconds a stopped command waits for its running scene tasks to stop and remove what they
#: staged, so that "nothing written" is true when it exits.
STOP_WAIT = 30
#: Seconds to wait for the workers' warm-up (a cold compile takes one to two minutes; a
#: worker that leaves meanwhile would otherwise be waited for forever).
WARMUP_TIMEOUT = 900


def _absolute(src: str) -> str:
    """A local input as an absolute name, as this process sees it, whether it exists here or
    not (a worker would look for a relative one in its own folder); a URL or /vsi name as
    it is."""
    return src if "://" in src or src.startswith("/vsi") else os.path.abspath(src)


def _short(err: BaseException, limit: int = 160) -> str:
    """An exception from the cluster in a few words: its type and first line, cut."""
    text = first_line(err)
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(err).__name__}: {text}"


def _import() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError("--scheduler needs Dask distributed: pip install 'satconv[dask]'"
                         ) from None
    return distributed


def connect(address: str) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` (``[tcp://]host:port``), or
    :class:`UsageError`."""
    if not re.fullmatch(r"([a-z]+://)?\[?[^/\s]+\]?:\d+/?", address):
        # (dask would guess a port, wait its own 30 s and leave a traceback behind)
        raise UsageError(f"{address}: not a Dask scheduler address; give host:port, as "
                         "tcp://scheduler-host:8786")
    distributed = _import()
    _probe(address)
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise UsageError(f"{address}: cannot reach the Dask scheduler ({err})") from None


def _probe(address: str) -> None:
    """Ask ``address`` who it is, within ``CONNECT_TIMEOUT``, before a ``Client`` connects:
    a client handed an HTTP port (the dashboard's) waits forever, and one handed a server that
    greets in text (ssh) reads the greeting as a message length and fails with a traceback.
    :class:`UsageError` unless a Dask scheduler answers."""
    import asyncio

    from distributed.core import rpc

    async def identity() -> Any:
        r = rpc(address, timeout=CONNECT_TIMEOUT)
        try:
            return await r.identity()
        finally:
            await r.close_rpc()

    try:
        ident = asyncio.run(asyncio.wait_for(identity(), CONNECT_TIMEOUT))
    except TimeoutError:
        raise UsageError(f"{address}: no Dask scheduler answered within {CONNECT_TIMEOUT} s "
                         "(not a scheduler's port, or unreachable)") from None
    except Exception as err:  # noqa: BLE001 - comm, parse and memory errors of a non-scheduler
        raise UsageError(f"{address}: cannot reach a Dask scheduler there ({_short(err)})"
                         ) from None
    kind = ident.get("type") if isinstance(ident, dict) else None
    if kind != "Scheduler":
        raise UsageError(f"{address}: answers, but is a Dask {kind or 'service'}, not the "
                         "scheduler")


def _slots() -> int:
    """How many tasks this worker runs at once (its threads)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def _worker_threads(opts: RunOptions) -> int:
    """Threads for one task on this worker: ``--threads``, else the worker's CPUs shared
    between the tasks it runs at once."""
    if opts.threads:
        return opts.threads
    return max(1, default_workers() // _slots())


def _scene_task(src: str, settings: Settings, opts: RunOptions, topic: str,
                stop: str | None = None) -> Outcome:
    """One input on a worker; its events go back through Dask's event log. The scenes the
    worker runs at once share its memory for their kept tiles (``satconv.tile_cache``). When
    the Dask ``Event`` named ``stop`` is set (the command was stopped), the input stops at its
    next tile and removes what it staged."""
    from distributed import get_worker

    worker = get_worker()
    tile_cache.SCENES_AT_ONCE = _slots()

    def emit(ev: Event) -> None:
        with contextlib.suppress(Exception):
            worker.log_event(topic, {**ev.to_dict(), "_t": ev.time})

    check = None if stop is None else _stop_check(stop)
    if check is not None:
        try:
            check()  # a task that starts after the stop does nothing
        except StoppedByClient as err:
            return Outcome(src, "stopped", f"{src}: {err}", 1, type(err).__name__)
    return run_one(src, settings, replace(opts, threads=_worker_threads(opts)), emit,
                   check=check)


def _stop_check(name: str) -> Callable[[], None]:
    """A tile callback that raises :class:`StoppedByClient` once the Dask ``Event`` ``name``
    is set; it asks the scheduler at most every ``STOP_POLL`` seconds (and not when it cannot
    be reached: the task then runs on, as before)."""
    from distributed import Event as DaskEvent

    flag = DaskEvent(name)
    last = -float("inf")

    def check() -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < STOP_POLL:
            return
        last = now
        try:
            stopped = flag.is_set()
        except Exception:  # noqa: BLE001 - the scheduler is out of reach
            return
        if stopped:
            raise StoppedByClient("the command that ran it was stopped")

    return check


def _part_task(src: str, settings: Settings, info: RasterInfo, plan: Plan,
               opts: ExecuteOptions, raster: str, layout: PartLayout, k: int,
               run_opts: RunOptions) -> tuple[int, int, dict[str, Any]]:
    """One row band of one scene on a worker: write its part file; ``(k, evaluations,
    record)`` (``parts.part_record``: what its tiles did)."""
    with raster_io.gdal_env():
        # vet the input with the run's policy, so this worker's reader threads may reopen it
        with raster_io.open_input(src, input_policy(settings)):
            pass
        done: list[tuple[int, dict[str, Any]]] = []
        write_parts(info, plan, opts, layout, Path(raster), [k], _worker_threads(run_opts),
                    on_part=lambda _k, n, record: done.append((n, record)))
    return k, done[0][0], done[0][1]


class DaskPartRunner:
    """A ``parts.PartRunner`` that computes each missing part as a task on the cluster."""

    def __init__(self, client: Any, src: str, settings: Settings, run_opts: RunOptions,
                 emit: Emit):
        self.client = client
        self.src = src
        self.settings = settings
        self.run_opts = run_opts
        self.emit = emit

    def run(self, engine: PartsEngine, info: RasterInfo, plan: Plan, opts: ExecuteOptions,
            parts: list[int], workers: int | None, progress: Callable[[int], None]) -> None:
        layout = engine.layout
        # workers resolve relative names against their own folder: send absolute ones
        futures = [self.client.submit(_part_task, _absolute(self.src), self.settings, info,
                                      plan, opts, os.path.abspath(engine.raster), layout, k,
                                      self.run_opts,
                                      pure=False, key=f"satconv-part-{k}-{uuid.uuid4().hex}")
                   for k in parts]
        pending = list(futures)
        try:
            while pending:
                done = [f for f in pending if f.done()]
                if not done:
                    time.sleep(0.05)
                    continue
                for fut in done:
                    pending.remove(fut)
                    try:
                        k, evaluations, record = fut.result()
                    except Exception as err:
                        raise ClusterError(
                            f"{self.src}: a row band failed on the Dask cluster "
                            f"({_short(err)}); finished row bands kept for --resume"
                        ) from err
                    engine.part_done(k, evaluations, record)
                    progress(len(layout.tiles(k)))
        except BaseException:
            self.client.cancel(futures)
            raise


def run_batch(address: str, sources: list[str], settings: Settings, opts: RunOptions,
              emit: Emit, finish: Callable[[Outcome], None], distribute: str = "auto") -> None:
    """Run ``sources`` on the cluster at ``address``; ``finish`` gets each outcome."""
    if distribute not in ("auto", "scenes", "bands"):
        raise UsageError(f"--distribute: {distribute} is not one of auto, scenes, bands")
    client = connect(address)
    try:
        if settings.steps and distribute == "bands":
            raise UsageError("--distribute bands runs single-kernel configs only (no steps:)")
        if sources:
            warm_up(client, settings, emit)
        if distribute == "bands" or (distribute == "auto" and len(sources) == 1
                                     and not settings.steps):
            for src in sources:
                runner = DaskPartRunner(client, src, settings, opts, emit)
                finish(run_one(src, settings, opts, emit, runner=runner))
        else:
            _run_scenes(client, sources, settings, opts, emit, finish)
    finally:
        with contextlib.suppress(Exception):
            client.close()


def warm_up(client: Any, settings: Settings, emit: Emit) -> None:
    """Compile the kernels ``settings`` needs here, then on one worker of each host, then on
    the others, before any task: no task spends its time compiling, and no two processes of
    one machine (which share numba's cache) compile the same kernel at once. A warm-up runs
    as a task, so a worker's event loop stays free. A failure is reported and the batch goes
    on (each worker then compiles what it needs)."""
    from . import warmup

    def work() -> dict[str, Any]:
        t0 = time.monotonic()
        # the client plans; a LocalCluster shares its cache
        slowest, compiled = warmup.warm_up_counting(settings)
        hosts: dict[str, list[str]] = {}
        for addr, info in client.scheduler_info()["workers"].items():
            hosts.setdefault(str(info.get("host", addr)), []).append(addr)
        waves = [[addrs[0] for addrs in hosts.values()],
                 [a for addrs in hosts.values() for a in addrs[1:]]]
        for wave in waves:
            futures = [client.submit(warmup.warm_up_counting, settings, workers=[addr],
                                     pure=False, key=f"satconv-warmup-{uuid.uuid4().hex}")
                       for addr in wave]
            deadline = time.monotonic() + WARMUP_TIMEOUT
            try:
                for fut in futures:
                    seconds, n = fut.result(timeout=max(0.1, deadline - time.monotonic()))
                    slowest = max(slowest, seconds)
                    compiled += n
            except TimeoutError:
                raise TimeoutError(f"workers still compiling after {WARMUP_TIMEOUT} s; "
                                   "going on without waiting") from None
            finally:
                client.cancel(futures)
        return {"seconds": round(time.monotonic() - t0, 2), "workers": sum(map(len, waves)),
                "slowest": round(slowest, 2), "compiled": compiled}

    warmup.report(emit, work)


def _outcome(fut: Any, src: str) -> Outcome:
    """What became of the input ``src`` (as the user named it) of a finished scene task."""
    try:
        outcome = fut.result()
    except Exception as err:  # noqa: BLE001 - a worker died, a task was lost
        return Outcome(src, "failed", f"{src}: lost on the Dask cluster ({_short(err)})", 1,
                       type(err).__name__)
    absolute = _absolute(src)
    message = outcome.message
    if message.startswith(absolute):  # as the user named it
        message = src + message[len(absolute):]
    return replace(outcome, input=src, message=message)


def _stop_tasks(client: Any, stop: str, pending: dict[Any, str]) -> list[Outcome]:
    """Stop the scenes handed to the cluster (``pending``: future -> input as named). Dask
    cannot interrupt a running task (cancelling one only forgets it), so the ``stop`` event
    tells the running ones to stop at their next tile and the queued ones not to start; wait
    (at most ``STOP_WAIT`` s) until they have all ended, having removed what they staged.
    Returns what became of the inputs whose task ended otherwise than stopped (done before it
    saw the stop, or failed), then cancels what is left."""
    from distributed import Event as DaskEvent

    with contextlib.suppress(Exception):
        DaskEvent(stop, client=client).set()
        deadline = time.monotonic() + STOP_WAIT
        while any(f.status == "pending" for f in pending) and time.monotonic() < deadline:
            time.sleep(0.1)
    ended = [_outcome(f, src) for f, src in pending.items() if f.status == "finished"]
    client.cancel(list(pending))
    return [o for o in ended if o.status != "stopped"
            and o.error_type != StoppedByClient.__name__]


def _run_scenes(client: Any, sources: list[str], settings: Settings, opts: RunOptions,
                emit: Emit, finish: Callable[[Outcome], None]) -> None:
    topic = f"satconv-{uuid.uuid4().hex}"
    events: queue_mod.Queue[dict[str, Any]] = queue_mod.Queue()
    client.subscribe_topic(topic, lambda ev: events.put(ev[1]))
    finished: set[str] = set()

    def drain() -> None:
        while True:
            try:
                ev = Event.from_dict(events.get_nowait())
            except queue_mod.Empty:
                return
            ev = replace(ev, input=given.get(ev.input, ev.input))
            if ev.input not in finished:
                emit(ev)

    # workers resolve relative names against their own folder: send absolute ones, and show
    # the names as given
    given = {_absolute(src): src for src in sources}
    remote_opts = replace(
        opts, **{k: Path(os.path.abspath(v)) for k in ("output", "out_dir", "plan_path")
                 if (v := getattr(opts, k)) is not None})
    stop = f"satconv-stop-{uuid.uuid4().hex}"
    futures = {client.submit(_scene_task, _absolute(src), settings, remote_opts, topic, stop,
                             pure=False, key=f"satconv-scene-{i}-{uuid.uuid4().hex}"): src
               for i, src in enumerate(sources)}
    pending = dict(futures)
    try:
        while pending:
            drain()
            done = [f for f in pending if f.done()]
            if not done:
                time.sleep(0.1)
                continue
            for fut in done:
                src = pending.pop(fut)
                finished.add(src)
                finish(_outcome(fut, src))
        drain()
    except BaseException:
        for outcome in _stop_tasks(client, stop, pending):
            finished.add(outcome.input)
            finish(outcome)
        raise
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(topic)
