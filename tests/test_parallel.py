"""Worker threads and the shared input handle (``satconv.parallel``)."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from satconv import raster_io
from satconv.parallel import SerialDataset, map_shares, map_tiles

from .conftest import write_geotiff


class _Probe:
    """A stand-in dataset that records how many calls run at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.guard = threading.Lock()
        self.name = "probe"

    def read(self, value: int) -> int:
        with self.guard:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.002)
        with self.guard:
            self.inside -= 1
        return value * 2


def test_serial_dataset_runs_one_call_at_a_time():
    probe = _Probe()
    shared = SerialDataset(probe, threading.Lock())
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(shared.read, range(40)))
    assert got == [2 * v for v in range(40)]
    assert probe.most == 1
    assert shared.name == "probe"  # plain attributes pass through


def _scene(tmp_path):
    data = np.arange(2 * 60 * 70, dtype=np.uint16).reshape(2, 60, 70)
    path = write_geotiff(tmp_path / "s.tif", data)
    with raster_io.gdal_env(), raster_io.open_input(path):  # vetted, as a run does first
        pass
    return data, str(path)


def _read_every_window(mapper, tmp_path) -> set[int]:
    """Map a 10x10 window read over a scene; check every window comes back once, right.
    Returns the ids of the dataset handles the calls got."""
    data, path = _scene(tmp_path)
    handles = set()
    kept = []  # every handle stays alive, so that no two can share an id

    def fn(ds, item):
        kept.append(ds)
        handles.add(id(ds))
        r0, c0 = item
        return raster_io.read_window(ds, r0, r0 + 10, c0, c0 + 10)

    items = [(r, c) for r in range(0, 60, 10) for c in range(0, 70, 10)]
    with raster_io.gdal_env(), mapper(path, items, fn, workers=3) as results:
        out = list(results)
    assert sorted(i for i, _ in out) == sorted(items) and len(out) == len(items)
    for (r0, c0), block in out:
        np.testing.assert_array_equal(block, data[:, r0:r0 + 10, c0:c0 + 10])
    return handles


def test_map_tiles_gives_every_worker_the_same_handle_and_every_item_once(tmp_path):
    assert len(_read_every_window(map_tiles, tmp_path)) == 1


def test_map_shares_yields_every_item_once_with_a_handle_per_share(tmp_path):
    assert len(_read_every_window(map_shares, tmp_path)) == 3


def test_map_shares_raises_a_workers_error_and_stops_the_others(tmp_path):
    _, path = _scene(tmp_path)
    calls = []

    def fn(ds, item):
        calls.append(item)
        if item == 3:
            raise ValueError("tile 3 is bad")
        time.sleep(0.001)
        return item

    with raster_io.gdal_env(), pytest.raises(ValueError, match="tile 3 is bad"):
        with map_shares(path, list(range(400)), fn, workers=2) as results:
            list(results)
    assert len(calls) < 100  # the other share (items 200-399) stopped early


def test_map_shares_consumer_may_stop_early(tmp_path):
    _, path = _scene(tmp_path)
    with raster_io.gdal_env():
        with map_shares(path, list(range(1000)), lambda ds, i: i, workers=2) as results:
            first = [next(results) for _ in range(5)]
        # leaving must not hang on workers blocked on a full queue
    assert len(first) == 5
    assert not [t for t in threading.enumerate() if t.name == "satconv-share"]


class _Calls:
    """``fn`` for the mappers: item 0 returns at once, the others take ``slow`` seconds;
    counts the calls started and finished."""

    def __init__(self, slow: float) -> None:
        self.slow = slow
        self.started = 0
        self.finished = 0
        self.guard = threading.Lock()

    def __call__(self, ds, item: int) -> int:
        with self.guard:
            self.started += 1
        if item:
            time.sleep(self.slow)
        with self.guard:
            self.finished += 1
        return item


def _no_satconv_threads_left() -> None:
    """Worker threads may take a moment to exit once idle; none may stay."""
    deadline = time.monotonic() + 5
    while [t for t in threading.enumerate() if t.name.startswith("satconv")]:
        assert time.monotonic() < deadline, "a worker thread is still alive"
        time.sleep(0.01)


@pytest.mark.parametrize("mapper", [map_tiles, map_shares])
def test_no_worker_outlives_the_block_when_the_consumer_fails(tmp_path, mapper):
    """The consumer's own error (a failed write, say) reaches the caller only once every
    running call has returned: the caller then closes its outputs with no thread reading."""
    _, path = _scene(tmp_path)
    calls = _Calls(slow=0.3)
    with raster_io.gdal_env(), pytest.raises(ValueError, match="write failed"):
        with mapper(path, list(range(8)), calls, workers=2) as results:
            for _ in results:
                raise ValueError("write failed")
    assert calls.started >= 2  # another call was running when the consumer failed
    assert calls.finished == calls.started
    _no_satconv_threads_left()


@pytest.mark.parametrize("mapper", [map_tiles, map_shares])
def test_a_stop_during_the_wait_still_waits_for_the_workers(tmp_path, mapper):
    """A stop (KeyboardInterrupt) raised while the block waits for its workers is raised
    after they are done, not in place of waiting for them."""
    _, path = _scene(tmp_path)
    calls = _Calls(slow=0.5)

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, stop)
    try:
        with raster_io.gdal_env(), pytest.raises(KeyboardInterrupt):
            with mapper(path, list(range(8)), calls, workers=2) as results:
                for _ in results:
                    signal.setitimer(signal.ITIMER_REAL, 0.1)  # lands in the wait
                    raise ValueError("write failed")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert calls.started >= 2
    assert calls.finished == calls.started
    _no_satconv_threads_left()
