"""Run a function over tiles in worker threads, each with its own handle on the input.

GDAL dataset handles are not shared between threads: every worker opens the input once and
keeps it. The numba kernels release the GIL, so threads use every core. At most
``2 * workers`` tiles are in flight, which bounds memory whatever the scene size.
"""

from __future__ import annotations

import os
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


def map_tiles(
    path: str,
    items: Iterable[T],
    fn: Callable[[Any, T], R],
    workers: int | None = None,
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(dataset, item))`` in completion order.

    ``fn`` gets this thread's open dataset. An exception in any call is raised here, after
    which no further items are started.
    """
    workers = workers or default_workers()
    local = threading.local()
    handles: list[Any] = []
    lock = threading.Lock()

    def call(item: T) -> R:
        ds = getattr(local, "ds", None)
        if ds is None:
            ctx = raster_io.open_input(path)
            ds = ctx.__enter__()
            local.ds = ds
            with lock:
                handles.append(ctx)
        return fn(ds, item)

    it = iter(items)
    pending: dict[Future[R], T] = {}
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="satconv") as pool:
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
    finally:
        for fut in pending:
            fut.cancel()
        for ctx in handles:
            ctx.__exit__(None, None, None)
