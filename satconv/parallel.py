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
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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


def map_tiles(
    path: str,
    items: Iterable[T],
    fn: Callable[[Any, T], R],
    workers: int | None = None,
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(dataset, item))`` in completion order.

    ``fn`` gets the shared dataset (a :class:`SerialDataset`). An exception in any call is
    raised here, after which no further items are started.
    """
    workers = workers or default_workers()
    ctx = raster_io.open_input(path)
    shared = SerialDataset(ctx.__enter__(), threading.Lock())

    def call(item: T) -> R:
        return fn(shared, item)

    it = iter(items)
    pending: dict[Future[R], T] = {}
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="satconv") as pool:
            try:
                yield from _drain(pool, call, it, pending, workers)
            finally:
                for fut in pending:  # queued calls never start; running ones finish
                    fut.cancel()
    finally:
        ctx.__exit__(None, None, None)


def _drain(pool: ThreadPoolExecutor, call: Callable[[T], R], it: Iterator[T],
           pending: dict[Future[R], T], workers: int) -> Iterator[tuple[T, R]]:
    """Keep ``2 * workers`` calls in flight; yield each result as its call completes."""
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


def map_shares(
    path: str,
    items: list[T],
    fn: Callable[[Any, T], R],
    workers: int | None = None,
) -> Iterator[tuple[T, R]]:
    """Like :func:`map_tiles`, for work of even cost per item (the plan pass): each worker
    takes one contiguous share of ``items`` with a handle of its own, so reads run in
    parallel and a block is decoded twice at most where two shares meet. Results are yielded
    as they come; at most ``2 * workers`` wait to be taken. An exception in any call is raised
    here and stops every worker."""
    workers = max(1, min(workers or default_workers(), len(items)))
    if not items:
        return
    size = -(-len(items) // workers)
    shares = [items[i:i + size] for i in range(0, len(items), size)]
    out: queue.Queue[Any] = queue.Queue(maxsize=2 * workers)
    stop = threading.Event()

    def put(value: Any) -> None:
        while not stop.is_set():
            try:
                out.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def work(share: list[T]) -> None:
        try:
            with raster_io.open_input(path) as ds:
                for item in share:
                    if stop.is_set():
                        return
                    put((item, fn(ds, item)))
        except BaseException as err:  # handed to the consumer, raised there
            put(err)
        finally:
            put(_DONE)

    threads = [threading.Thread(target=work, args=(s,), name="satconv-share", daemon=True)
               for s in shares]
    for t in threads:
        t.start()
    running = len(threads)
    try:
        while running:
            got = out.get()
            if got is _DONE:
                running -= 1
            elif isinstance(got, BaseException):
                raise got
            else:
                yield got
    finally:
        stop.set()
        for t in threads:
            t.join()
