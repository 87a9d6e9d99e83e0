"""Run a function over tiles in worker threads that share one handle on the input.

Every read goes through one GDAL dataset, one call at a time (a lock): its block cache then
decodes each input block once, although neighbouring tiles (and their halos) run on different
threads; with a handle per thread each block was decoded by every thread that touched it.
Reading is a small share of a run (decoding a 3-band uint16 DEFLATE scene runs at about 270
Mpx/s on one core), so the lock costs little; the numba kernels and GDAL's compression run
in parallel outside it. At most ``2 * workers`` tiles are in flight, which bounds memory
whatever the scene size.

The plan pass, whose tiles all cost about the same and where reading is a larger share, uses
:func:`map_shares` instead: one contiguous share of the tiles and one handle per worker.

Both are context managers: leaving the ``with`` block, by an error or a stop, returns only
once no worker is running a call, so the caller's ``with`` blocks around it (its outputs)
close with nothing left reading or writing beside them.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from . import raster_io

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker threads for one scene: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


class SerialDataset:
    """A dataset whose every attribute access and method call holds ``lock``: one GDAL handle
    used from several threads, one call at a time. (rasterio releases the GIL while GDAL
    decodes, so other threads compute meanwhile.)"""

    def __init__(self, ds: Any, lock: threading.Lock):
        self._ds = ds
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            attr = getattr(self._ds, name)
        if not callable(attr):
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return locked


class _Gate:
    """Admits calls into shared handles until closed; :meth:`close` then waits out the calls
    already admitted. (A Condition, not ``Thread.join``: in Python 3.11 a join interrupted by
    a signal can report a running thread as finished, and return early when called again.)"""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._closed = False

    def enter(self) -> bool:
        """Admit a call (False once closed: the call must not start)."""
        with self._cond:
            if self._closed:
                return False
            self._running += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def close(self) -> None:
        """Admit no more calls; return once every admitted call has left, even when a stop
        (a KeyboardInterrupt in this thread) interrupts the wait: it is raised after."""
        stopped: BaseException | None = None
        while True:
            try:
                with self._cond:
                    self._closed = True
                    self._cond.wait_for(lambda: self._running == 0)
                break
            except BaseException as err:  # noqa: BLE001 - raised below, after the wait
                stopped = stopped or err
        if stopped is not None:
            raise stopped


@contextlib.contextmanager
def map_tiles(
    path: str,
    items: Iterable[T],
    fn: Callable[[Any, T], R],
    workers: int | None = None,
) -> Iterator[Iterator[tuple[T, R]]]:
    """``with map_tiles(...) as results:`` iterates ``(item, fn(dataset, item))`` in
    completion order.

    ``fn`` gets the shared dataset (a :class:`SerialDataset`). An exception in any call is
    raised by the iteration, after which no further items are started. However the ``with``
    block is left (the consumer's own error or a stop included), queued calls are cancelled
    and running ones waited for before the handle closes: no worker outlives the block, so
    none is still reading while the caller closes its outputs.
    """
    workers = workers or default_workers()
    gate = _Gate()
    with raster_io.open_input(path) as ds:
        shared = SerialDataset(ds, threading.Lock())

        def call(item: T) -> R:
            if not gate.enter():
                raise CancelledError
            try:
                return fn(shared, item)
            finally:
                gate.leave()

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="satconv")
        try:
            yield _drain(pool, call, iter(items), workers)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            gate.close()
            pool.shutdown(wait=True)  # idle by now: the threads only exit


def _drain(pool: ThreadPoolExecutor, call: Callable[[T], R], it: Iterator[T],
           workers: int) -> Iterator[tuple[T, R]]:
    """Keep ``2 * workers`` calls in flight; yield each result as its call completes."""
    pending: dict[Future[R], T] = {}
    for item in it:
        pending[pool.submit(call, item)] = item
        if len(pending) >= 2 * workers:
            break
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            item = pending.pop(fut)
            result = fut.result()
            nxt = next(it, None)
            if nxt is not None:
                pending[pool.submit(call, nxt)] = nxt
            yield item, result


_DONE = object()


@contextlib.contextmanager
def map_shares(
    path: str,
    items: list[T],
    fn: Callable[[Any, T], R],
    workers: int | None = None,
) -> Iterator[Iterator[tuple[T, R]]]:
    """Like :func:`map_tiles`, for work of even cost per item (the plan pass): each worker
    takes one contiguous share of ``items`` with a handle of its own, so reads run in
    parallel and a block is decoded twice at most where two shares meet. Results come as
    they are ready; at most ``2 * workers`` wait to be taken. An exception in any call is
    raised by the iteration and stops every worker; leaving the ``with`` block stops them
    too, and waits until each has closed its handle."""
    workers = max(1, min(workers or default_workers(), len(items)))
    size = -(-len(items) // workers) if items else 1
    shares = [items[i:i + size] for i in range(0, len(items), size)]
    out: queue.Queue[Any] = queue.Queue(maxsize=2 * workers)
    stop = threading.Event()
    gate = _Gate()

    def put(value: Any) -> None:
        while not stop.is_set():
            try:
                out.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def work(share: list[T]) -> None:
        try:
            if not gate.enter():
                return
            try:
                with raster_io.open_input(path) as ds:
                    for item in share:
                        if stop.is_set():
                            return
                        put((item, fn(ds, item)))
            finally:
                gate.leave()
        except BaseException as err:  # handed to the consumer, raised there
            put(err)
        finally:
            put(_DONE)

    def results() -> Iterator[tuple[T, R]]:
        running = len(threads)
        while running:
            got = out.get()
            if got is _DONE:
                running -= 1
            elif isinstance(got, BaseException):
                raise got
            else:
                yield got

    threads = [threading.Thread(target=work, args=(s,), name="satconv-share", daemon=True)
               for s in shares]
    try:
        for t in threads:
            t.start()
        yield results()
    finally:
        stop.set()
        gate.close()
