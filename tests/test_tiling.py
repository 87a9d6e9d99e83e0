"""satconv.tiling: sample positions, boundary index maps (against scipy), the tile grid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satconv.tiling import TileGrid, boundary_index, contiguous_runs, sample_positions

from . import oracle

MODES = oracle.BOUNDARY_MODES


# ---------------------------------------------------------------- sample_positions


@pytest.mark.parametrize(
    ("start", "stop", "n", "stride", "expected"),
    [
        (0, 8, 20, 4, [0, 4, 8]),        # inner tile: closed by the next tile's first sample
        (0, 8, 8, 4, [0, 4, 7]),         # whole axis: closed by the last pixel
        (8, 11, 11, 4, [8, 10]),         # partial edge tile
        (8, 9, 9, 4, [8]),               # one-pixel edge tile needs no closing sample
        (0, 5, 5, 1, [0, 1, 2, 3, 4]),   # stride 1: every pixel, nothing extra
        (16, 32, 40, 8, [16, 24, 32]),
        (32, 40, 40, 8, [32, 39]),
        (0, 4, 4, 2, [0, 2, 3]),
        (0, 3, 3, 2, [0, 2]),            # the last grid point is the last pixel
    ],
)
def test_sample_positions_hand_cases(start, stop, n, stride, expected):
    assert sample_positions(start, stop, n, stride).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 200),
    stride=st.sampled_from([1, 2, 4, 8, 16]),
    mult=st.integers(1, 6),
    data=st.data(),
)
def test_sample_positions_property(n, stride, mult, data):
    size = stride * mult
    starts = list(range(0, n, size))
    start = data.draw(st.sampled_from(starts))
    stop = min(start + size, n)
    pos = sample_positions(start, stop, n, stride)
    assert pos.tolist() == oracle.expected_positions(start, stop, n, stride).tolist()
    # strictly increasing, first is the tile start, every tile pixel lies between two samples
    assert pos[0] == start
    assert np.all(np.diff(pos) > 0)
    assert pos[-1] >= stop - 1
    assert pos[-1] <= n - 1
    # every position but the closing one is on the global grid
    assert np.all(pos[:-1] % stride == 0)
    # a closing sample past the tile is the next tile's first sample (no seam)
    if pos[-1] >= stop:
        assert stop < n
        nxt = sample_positions(stop, min(stop + size, n), n, stride)
        assert pos[-1] == nxt[0]


# ---------------------------------------------------------------- boundary_index


@pytest.mark.parametrize("mode", MODES)
def test_boundary_index_hand_cases(mode):
    # axis 0 1 2 3 (n = 4), global indices -3 .. 6
    expected = {
        "reflect": [2, 1, 0, 0, 1, 2, 3, 3, 2, 1],
        "mirror": [3, 2, 1, 0, 1, 2, 3, 2, 1, 0],
        "nearest": [0, 0, 0, 0, 1, 2, 3, 3, 3, 3],
        "constant": [-1, -1, -1, 0, 1, 2, 3, -1, -1, -1],
        "wrap": [1, 2, 3, 0, 1, 2, 3, 0, 1, 2],
    }[mode]
    assert boundary_index(-3, 7, 4, mode).tolist() == expected


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 40), mode=st.sampled_from(MODES), data=st.data())
def test_boundary_index_matches_scipy(n, mode, data):
    # extensions up to twice the axis length (scipy's 1-D extension is reliable there)
    lo = data.draw(st.integers(-2 * n, n - 1))
    hi = data.draw(st.integers(lo + 1, 3 * n))
    got = boundary_index(lo, hi, n, mode)
    assert got.tolist() == oracle.extended_index(n, lo, hi, mode).tolist()


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 12), mode=st.sampled_from(MODES), data=st.data())
def test_boundary_index_far_outside_matches_numpy_pad(n, mode, data):
    # many periods away from a short axis: numpy.pad is the oracle here
    lo = data.draw(st.integers(-15 * n - 5, 0))
    hi = data.draw(st.integers(n, 16 * n + 5))
    got = boundary_index(lo, hi, n, mode)
    assert got.tolist() == oracle.extended_index_numpy(n, lo, hi, mode).tolist()


def test_boundary_index_length_one_axis():
    for mode in ("reflect", "mirror", "nearest", "wrap"):
        assert boundary_index(-5, 6, 1, mode).tolist() == [0] * 11
    assert boundary_index(-2, 3, 1, "constant").tolist() == [-1, -1, 0, -1, -1]


def test_boundary_index_unknown_mode():
    with pytest.raises(ValueError, match="grid-wrap"):
        boundary_index(0, 3, 3, "grid-wrap")


# ---------------------------------------------------------------- TileGrid


def test_tilegrid_partial_edge_tiles():
    g = TileGrid(height=70, width=45, size=32)
    assert g.shape == (3, 2)
    tiles = g.tiles()
    assert [(t.ty, t.tx) for t in tiles] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    last = g.tile(2, 1)
    assert (last.row0, last.row1, last.col0, last.col1) == (64, 70, 32, 45)
    assert (last.height, last.width) == (6, 13)
    assert (g.tile(0, 0).height, g.tile(0, 0).width) == (32, 32)


@pytest.mark.parametrize(("h", "w", "size"), [(64, 64, 32), (1, 1, 256), (257, 3, 256),
                                               (100, 300, 7)])
def test_tilegrid_covers_image_exactly_once(h, w, size):
    g = TileGrid(h, w, size)
    cover = np.zeros((h, w), dtype=int)
    for t in g.tiles():
        assert 0 < t.height <= size and 0 < t.width <= size
        assert t.row0 == t.ty * size and t.col0 == t.tx * size
        cover[t.row0:t.row1, t.col0:t.col1] += 1
    assert np.all(cover == 1)
    assert len(g.tiles()) == g.shape[0] * g.shape[1] == (-(-h // size)) * (-(-w // size))


def test_contiguous_runs():
    idx = np.array([3, 4, -1, 5, 9, 10, 0, 0, 1, -1])
    assert contiguous_runs(idx) == [(0, 2), (3, 6), (9, 11)]
    assert contiguous_runs(np.array([-1, -1])) == []
