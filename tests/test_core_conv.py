"""satconv.core.conv: correlation of a padded block at sample grids, against a numpy loop and
scipy.ndimage.correlate."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satconv.core.conv import (
    SHIFT_ROWS,
    correlate_samples,
    correlate_separable_samples,
    separable_columns,
    shift_offset,
)

from . import oracle


def correlate_grid(block, weights, rows, col0, step, ncols):
    """Direct correlation at ``rows`` x the regular grid ``col0 + step * arange(ncols)``."""
    cols = col0 + step * np.arange(ncols, dtype=np.int64)
    return correlate_samples(block, np.asarray(weights, np.float64),
                             np.asarray(rows, np.int64), cols, False, True)


def correlate_separable_grid(block, col_w, row_w, rows, col0, step, ncols):
    """Separable correlation at ``rows`` x ``col0 + step * arange(ncols)``."""
    return correlate_separable_samples(block, col_w, row_w, rows,
                                       col0 + step * np.arange(ncols, dtype=np.int64))


def test_correlate_grid_hand_case():
    block = np.arange(16, dtype=np.float64).reshape(4, 4)
    w = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    # window at (r, c): block[r, c] + 2 * block[r + 2, c + 2]
    out = correlate_grid(block, w, np.array([0, 1]), 0, 1, 2)
    assert out.tolist() == [[0 + 2 * 10, 1 + 2 * 11], [4 + 2 * 14, 5 + 2 * 15]]


def test_correlate_grid_is_not_a_convolution():
    """The core correlates (no flip): an asymmetric kernel must pick its own orientation."""
    block = np.zeros((3, 3))
    block[0, 0] = 1.0
    w = np.arange(9, dtype=np.float64).reshape(3, 3)
    assert correlate_grid(block, w, np.array([0]), 0, 1, 1)[0, 0] == w[0, 0]


def test_correlate_grid_strided_columns_hand_case():
    block = np.arange(30, dtype=np.float64).reshape(3, 10)
    w = np.array([[1.0, -1.0, 0.5]])
    out = correlate_grid(block, w, np.array([2, 0]), 1, 3, 3)
    cols = [1, 4, 7]
    expected = [[block[r, c] - block[r, c + 1] + 0.5 * block[r, c + 2] for c in cols]
                for r in (2, 0)]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


@st.composite
def grid_case(draw):
    kh = draw(st.sampled_from([1, 3, 5, 7]))
    kw = draw(st.sampled_from([1, 3, 5, 7]))
    step = draw(st.sampled_from([1, 2, 3, 4, 8]))
    ncols = draw(st.integers(1, 9))
    col0 = draw(st.integers(0, 5))
    nrows_block = draw(st.integers(kh, kh + 20))
    width = col0 + (ncols - 1) * step + kw + draw(st.integers(0, 4))
    rows = draw(st.lists(st.integers(0, nrows_block - kh), min_size=1, max_size=8))
    seed = draw(st.integers(0, 2**32 - 1))
    return kh, kw, step, ncols, col0, nrows_block, width, np.asarray(rows, np.int64), seed


@settings(max_examples=200, deadline=None)
@given(case=grid_case())
def test_correlate_grid_matches_loop_and_scipy(case):
    kh, kw, step, ncols, col0, nrows_block, width, rows, seed = case
    rng = np.random.default_rng(seed)
    block = rng.normal(size=(nrows_block, width)) * 100
    w = rng.normal(size=(kh, kw))
    w[rng.random((kh, kw)) < 0.2] = 0.0  # zero weights are skipped: must not matter
    cols = col0 + step * np.arange(ncols)
    got = correlate_grid(block, w, rows, col0, step, ncols)
    assert got.shape == (rows.size, ncols)
    np.testing.assert_allclose(got, oracle.correlate_loop(block, w, rows, cols),
                               rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got, oracle.correlate_scipy_at(block, w, rows, cols),
                               rtol=1e-12, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(case=grid_case())
def test_correlate_separable_grid_matches_direct(case):
    kh, kw, step, ncols, col0, nrows_block, width, rows, seed = case
    rng = np.random.default_rng(seed)
    block = rng.normal(size=(nrows_block, width)) * 100
    col_w = rng.normal(size=kh)
    row_w = rng.normal(size=kw)
    cols = col0 + step * np.arange(ncols)
    got = correlate_separable_grid(block, col_w, row_w, rows, col0, step, ncols)
    assert got.shape == (rows.size, ncols)
    expected = oracle.correlate_loop(block, np.outer(col_w, row_w), rows, cols)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("fn", ["direct", "separable"])
def test_block_wider_than_needed_is_ignored(fn):
    """Columns to the right of the last window must not leak into any sample."""
    rng = np.random.default_rng(3)
    block = rng.normal(size=(5, 12))
    poisoned = block.copy()
    poisoned[:, 9:] = 1e9  # windows below end at column 8
    rows = np.array([0, 2])
    col_w, row_w = rng.normal(size=3), rng.normal(size=3)
    if fn == "direct":
        a = correlate_grid(block, np.outer(col_w, row_w), rows, 1, 2, 3)
        b = correlate_grid(poisoned, np.outer(col_w, row_w), rows, 1, 2, 3)
    else:
        a = correlate_separable_grid(block, col_w, row_w, rows, 1, 2, 3)
        b = correlate_separable_grid(poisoned, col_w, row_w, rows, 1, 2, 3)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    expected = oracle.correlate_loop(block, np.outer(col_w, row_w), rows, [1, 3, 5])
    np.testing.assert_allclose(a, expected, rtol=1e-10, atol=1e-9)


# ---------------------------------------------------------------- correlate_samples
#
# Every path of the compiled core: kernels of 1 to 17 taps a side (so every mix of the 8-, 4-,
# 2- and 1-tap groups), column steps 1 to 9 (the de-interleaving copies written for steps 2, 4
# and 8 and the generic one), several runs of columns in one call (a closing column, irregular
# check columns), rows in any order, float32 with and without the centre shift (blocks near 50
# rarely take it, blocks near 10000 always do) and float64; blocks vouched finite or not (only
# the first let consecutive rows share their passes).


@st.composite
def samples_case(draw):
    kh = draw(st.integers(1, 17))
    kw = draw(st.integers(1, 17))
    step = draw(st.integers(1, 9))
    ncols = draw(st.integers(1, 12))
    col0 = draw(st.integers(0, 4))
    cols = col0 + step * np.arange(ncols)
    extra = draw(st.lists(st.integers(1, 5), max_size=3))  # further runs: closing, irregular
    cols = np.concatenate([cols, cols[-1] + np.cumsum(np.asarray(extra, np.int64))])
    width = int(cols[-1]) + kw + draw(st.integers(0, 3))
    height = kh + draw(st.integers(0, 12))
    rows = draw(st.lists(st.integers(0, height - kh), min_size=1, max_size=9))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    shift = draw(st.booleans())
    base = draw(st.sampled_from([50.0, 10000.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    return kh, kw, cols.astype(np.int64), height, width, np.asarray(rows, np.int64), dtype, \
        shift, base, seed


@settings(max_examples=400, deadline=None)
@given(case=samples_case(), finite=st.booleans())
def test_correlate_samples_matches_loop_and_scipy(case, finite):
    check_samples_case(case, finite)


def check_samples_case(case, finite):
    """correlate_samples on the case's random block and kernel equals the loop within
    rounding, and the loop equals scipy."""
    kh, kw, cols, height, width, rows, dtype, shift, base, seed = case
    rng = np.random.default_rng(seed)
    block = (rng.normal(size=(height, width)) * 100 + base).astype(dtype)
    w = rng.normal(size=(kh, kw))
    got = correlate_samples(block, w, rows, cols, shift, finite)
    assert got.shape == (rows.size, cols.size) and got.dtype == block.dtype
    expected = assert_close_to_loop(got, block, w, rows, cols)
    np.testing.assert_allclose(expected, oracle.correlate_scipy_at(block, w.astype(dtype), rows,
                                                                  cols), rtol=1e-12, atol=1e-9)


def assert_close_to_loop(got, block, w, rows, cols):
    """``got`` equals the loop's correlation within rounding: a few ulps (of float32 or
    float64, the block's type) of the sum of the magnitudes. Returns the loop's values."""
    expected = oracle.correlate_loop(block, w.astype(block.dtype), rows, cols)
    scale = oracle.correlate_loop(np.abs(block), np.abs(w), rows, cols)
    tol = (1e-5 if block.dtype == np.float32 else 1e-13) * (scale + 100 * np.abs(w).sum())
    assert np.all(np.abs(got - expected) <= tol)
    return expected


def test_separable_columns_hand_case():
    """Runs [0, 2, 4] (step 2) and [20] with a 3-tap row: the vertical pass covers 0-6 and
    20-22, and the samples' windows start at indices 0, 2, 4 and 7 of those columns."""
    need, at = separable_columns(np.array([0, 2, 4, 20], dtype=np.int64), 3)
    assert need.tolist() == [0, 1, 2, 3, 4, 5, 6, 20, 21, 22]
    assert at.tolist() == [0, 2, 4, 7]
    need, at = separable_columns(np.array([3, 4, 6], dtype=np.int64), 2)  # runs [3, 4], [6]
    assert need.tolist() == [3, 4, 5, 6, 7] and at.tolist() == [0, 1, 3]


@settings(max_examples=300, deadline=None)
@given(case=samples_case(), gaps=st.lists(st.integers(1, 40), max_size=3))
def test_correlate_separable_samples_matches_loop(case, gaps):
    """Any increasing columns (a grid, a closing column, irregular checks, gaps wider than
    the kernel), against the loop; columns no window covers may hold anything."""
    kh, kw, cols, height, width, rows, dtype, _, base, seed = case
    cols = np.concatenate([cols, cols[-1] + np.cumsum(np.asarray(gaps, np.int64))])
    width = max(width, int(cols[-1]) + kw)
    rng = np.random.default_rng(seed)
    block = (rng.normal(size=(height, width)) * 100 + base).astype(dtype)
    col_w, row_w = rng.normal(size=kh), rng.normal(size=kw)
    read = np.zeros(width, dtype=bool)
    for c in cols:
        read[c:c + kw] = True
    poisoned = block.copy()
    poisoned[:, ~read] = np.nan
    got = correlate_separable_samples(poisoned, col_w, row_w, rows, cols, False)
    assert got.shape == (rows.size, cols.size) and got.dtype == block.dtype
    w = np.outer(col_w, row_w)
    expected = oracle.correlate_loop(block, w, rows, cols)
    scale = oracle.correlate_loop(np.abs(block), np.abs(w), rows, cols)
    tol = (1e-5 if dtype == "float32" else 1e-12) * (scale + 100 * np.abs(w).sum())
    assert np.all(np.abs(got - expected) <= tol)


def test_correlate_samples_non_contiguous_block():
    rng = np.random.default_rng(5)
    big = rng.normal(size=(30, 40)).astype(np.float32)
    view = big[2:25, 3:37:2]  # strided columns
    w = rng.normal(size=(5, 3))
    rows, cols = np.array([0, 4, 8]), np.array([0, 3, 6, 9, 13])
    got = correlate_samples(view, w, rows, cols, True, True)
    np.testing.assert_allclose(got, oracle.correlate_loop(view, w, rows, cols), rtol=0,
                               atol=1e-4)


@pytest.mark.parametrize("step", [1, 2, 4, 8])
def test_correlate_samples_shift_keeps_float32_precision(step):
    """An offset-heavy float32 block (values near 10000): with the centre shift the error is
    that of one rounding of the result, without it the sum of every tap's rounding."""
    rng = np.random.default_rng(7)
    block = (10000 + rng.normal(size=(80, 80))).astype(np.float32)
    w = rng.normal(size=(15, 15))
    rows = np.arange(0, 60, step)
    cols = np.arange(0, 60, step)
    expected = oracle.correlate_loop(block, w.astype(np.float32), rows, cols)
    shifted = np.abs(correlate_samples(block, w, rows, cols, True, True) - expected).max()
    plain = np.abs(correlate_samples(block, w, rows, cols, False, True) - expected).max()
    ulp = np.spacing(np.float32(np.abs(expected).max()))
    assert shifted <= 2 * ulp
    assert plain > 2 * shifted


@pytest.mark.parametrize("step", [1, 4])
def test_shift_only_where_the_offset_dominates(step):
    """Zero-centred data gains nothing from a shift: none is made (the result is bit for bit
    the unshifted one, read in place at stride 1); offset-heavy data is shifted by its centre."""
    rng = np.random.default_rng(3)
    centred = rng.normal(size=(40, 40)).astype(np.float32)
    centred[20, 20] = 0.5
    w = rng.normal(size=(7, 7))
    pos = np.arange(0, 34, step)
    every = np.arange(40)
    assert shift_offset(centred, every) == 0
    np.testing.assert_array_equal(correlate_samples(centred, w, pos, pos, True, True),
                                  correlate_samples(centred, w, pos, pos, False, True))
    heavy = centred + np.float32(10000)
    assert shift_offset(heavy, every) == heavy[20, 20]
    # centre 1, half the pixels 1 and half -1.1 / -0.9: a mean absolute deviation from the
    # centre of 1.05 / 0.95, just above / below the centre's magnitude
    spread = np.full((40, 40), 1.0, dtype=np.float32)
    spread[:, 1::2] = -1.1
    assert shift_offset(spread, every) == 0
    spread[:, 1::2] = -0.9
    assert shift_offset(spread, every) == 1.0
    # only the rows given count, at most SHIFT_ROWS of them evenly spread: here the even rows,
    # all 1 (the centre's value) where the odd ones are spread out
    spread = np.full((80, 40), 1.0, dtype=np.float32)
    spread[1::2] = -1.1
    assert shift_offset(spread, np.arange(1, 80, 2)) == 0
    assert shift_offset(spread, np.arange(0, 80, 2)) == 1.0
    assert shift_offset(spread, np.arange(2 * SHIFT_ROWS)) == 1.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("step", [3, 4, 8])
@pytest.mark.parametrize("shift", [False, True])
def test_strided_samples_never_see_past_their_window(dtype, step, shift):
    """At strides of 3 and more a sample reads its window's rows as 8-lane vectors: the lanes
    past a 5- or 7-wide kernel hold the next columns, and an infinity or NaN there must not
    reach the sample (0 * inf is NaN). Every sample whose window holds no such pixel stays
    finite and equals the loop's value."""
    rng = np.random.default_rng(step)
    for kw in (5, 7):
        block = (rng.normal(size=(30, 110)) + (10000 if shift else 0)).astype(dtype)
        block[rng.integers(0, 30, 12), rng.integers(0, 110, 12)] = np.inf
        block[rng.integers(0, 30, 12), rng.integers(0, 110, 12)] = np.nan
        w = rng.normal(size=(6, kw))
        rows = np.arange(0, 25, 2)
        cols = np.arange(0, 110 - kw + 1, step)
        got = correlate_samples(block, w, rows, cols, shift, False)
        assert_non_finite_stay_in_their_windows(got, block, w, rows, cols, atol=1e-2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kh", [5, 7, 8])
@pytest.mark.parametrize("shift", [False, True])
def test_paired_strided_rows_never_see_past_their_windows(dtype, kh, shift):
    """Sample rows 4 apart at stride 4 (the default grid's finest strided level) share the
    loads of their common window rows, and a load there holds two samples' windows: an
    infinity or NaN in a row only one of the two windows holds, or in a column past one
    window, must reach no sample whose window does not hold it."""
    rng = np.random.default_rng(kh)
    block = (rng.normal(size=(60, 140)) + (10000 if shift else 0)).astype(dtype)
    block[rng.integers(0, 60, 10), rng.integers(0, 140, 10)] = np.inf
    block[rng.integers(0, 60, 10), rng.integers(0, 140, 10)] = np.nan
    w = rng.normal(size=(kh, 7))
    rows = np.arange(0, 60 - kh + 1, 4)
    cols = np.arange(0, 140 - 7 + 1, 4)
    got = correlate_samples(block, w, rows, cols, shift, False)
    assert_non_finite_stay_in_their_windows(got, block, w, rows, cols, atol=1e-2)


@st.composite
def strided_rows_case(draw):
    """Strided samples as tiles take them, near the block's end: sample rows mostly 4 apart
    (so that pairs form, and break where another gap comes), 8 to 40 columns at steps of 3
    to 8, kernels up to 8x8, the block no wider or taller than the windows need (give or
    take a few columns)."""
    kh = draw(st.integers(1, 8))
    kw = draw(st.integers(1, 8))
    step = draw(st.sampled_from([3, 4, 4, 5, 8]))
    count = draw(st.integers(8, 40))
    gaps = draw(st.lists(st.sampled_from([4, 4, 4, 1, 3, 5, 8]), min_size=0, max_size=12))
    rows = np.concatenate([[0], np.cumsum(np.asarray(gaps, np.int64))]).astype(np.int64)
    cols = step * np.arange(count, dtype=np.int64)
    width = int(cols[-1]) + kw + draw(st.integers(0, 3))
    height = int(rows[-1]) + kh + draw(st.integers(0, 2))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    shift = draw(st.booleans())
    base = draw(st.sampled_from([50.0, 10000.0]))
    return kh, kw, cols, height, width, rows, dtype, shift, base, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=300, deadline=None)
@given(case=strided_rows_case(), finite=st.booleans())
def test_strided_rows_match_loop(case, finite):
    check_samples_case(case, finite)


def assert_non_finite_stay_in_their_windows(got, block, w, rows, cols, atol):
    """Every sample whose window holds no NaN or infinity is finite and equals the loop's
    value; every other is not finite (and there are enough of both to tell)."""
    kh, kw = w.shape
    expected = oracle.correlate_loop(block, w.astype(block.dtype), rows, cols)
    clean = np.array([[np.isfinite(block[r:r + kh, c:c + kw]).all() for c in cols]
                      for r in rows])
    assert clean.sum() > 20 and (~clean).sum() > 20
    assert np.isfinite(got[clean]).all()
    np.testing.assert_allclose(got[clean], expected[clean],
                               rtol=1e-4 if block.dtype == np.float32 else 1e-12, atol=atol)
    assert not np.isfinite(got[~clean]).any()


@settings(max_examples=150, deadline=None)
@given(kh=st.integers(2, 17), kw=st.integers(1, 17), runs=st.lists(st.integers(1, 7),
       min_size=1, max_size=4), gap=st.integers(2, 4), dtype=st.sampled_from(
       ["float32", "float64"]), shift=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_consecutive_rows_matches_loop(kh, kw, runs, gap, dtype, shift, seed):
    """Consecutive sample rows at stride 1 (dense tiles: two rows share a pass over their
    common window rows), in runs of odd and even length split by gaps, every kernel shape of
    2 to 17 rows: equal to the loop."""
    rows, r = [], 0
    for n in runs:
        rows.extend(range(r, r + n))
        r += n + gap
    rows = np.asarray(rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    width = kw + 40
    block = (rng.normal(size=(r + kh, width)) * 100 + (10000 if shift else 50)).astype(dtype)
    w = rng.normal(size=(kh, kw))
    cols = np.arange(width - kw + 1, dtype=np.int64)
    assert_close_to_loop(correlate_samples(block, w, rows, cols, shift, True), block, w, rows,
                         cols)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kh,kw", [(2, 5), (7, 7), (15, 3)])
def test_unvouched_rows_never_see_the_next_rows_window(dtype, kh, kw):
    """Consecutive rows share their passes only on blocks vouched finite (a tap weighted 0 for
    the row whose window does not hold it would turn an infinity or NaN there into a NaN):
    without ``finite``, every sample whose window holds no such pixel stays finite and equals
    the loop's value, and every other is not finite."""
    rng = np.random.default_rng(kh)
    block = rng.normal(size=(40, 60)).astype(dtype)
    block[rng.integers(0, 40, 6), rng.integers(0, 60, 6)] = np.inf
    block[rng.integers(0, 40, 6), rng.integers(0, 60, 6)] = np.nan
    w = rng.normal(size=(kh, kw))
    rows = np.arange(40 - kh + 1, dtype=np.int64)
    cols = np.arange(60 - kw + 1, dtype=np.int64)
    got = correlate_samples(block, w, rows, cols, False, False)
    assert_non_finite_stay_in_their_windows(got, block, w, rows, cols, atol=1e-3)


def test_a_shift_that_overflows_keeps_rows_apart():
    """float32 pixels near 3e38 (the shift subtracts the centre) and one at -3e38: shifted, that
    pixel overflows to an infinity inside the core's copy. Even with the block vouched finite,
    no sample whose window does not hold it is touched by it: the same as without the vouch."""
    rng = np.random.default_rng(0)
    block = (3e38 * (1 + 1e-6 * rng.standard_normal((40, 40)))).astype(np.float32)
    block[31, 20] = -3e38  # on a row shift_offset does not look at (it reads every other)
    w = rng.random((7, 7)) / 100
    rows = np.arange(34, dtype=np.int64)
    cols = np.arange(34, dtype=np.int64)
    assert shift_offset(block, rows) != 0
    vouched = correlate_samples(block, w, rows, cols, True, True)
    plain = correlate_samples(block, w, rows, cols, True, False)
    holds = np.zeros(vouched.shape, dtype=bool)
    holds[25:32, 14:21] = True  # the windows holding (31, 20)
    np.testing.assert_array_equal(vouched[~holds], plain[~holds])
    assert np.isfinite(vouched[~holds]).all()


_GUARDED = textwrap.dedent("""
    import ctypes, mmap, sys
    import numpy as np
    from satconv.core.conv import correlate_samples
    page = mmap.PAGESIZE
    for case in sys.argv[1:]:
        dtype, kh, kw, step, row_step = case.split(",")
        kh, kw, step, row_step = int(kh), int(kw), int(step), int(row_step)
        buf = mmap.mmap(-1, 2 * page)
        start = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        assert ctypes.CDLL(None).mprotect(ctypes.c_void_p(start + page), page, 0) == 0
        width = 15 * step + kw  # 16 samples a row, the last window ending at the last column
        shape = (page // np.dtype(dtype).itemsize // width, width)
        n = shape[0] * shape[1]
        block = np.frombuffer(buf, dtype, n, page - n * np.dtype(dtype).itemsize)
        block = block.reshape(shape)
        block[:] = np.arange(n).reshape(shape) % 7
        rows = np.arange(shape[0] - kh, -1, -row_step)[::-1]  # the last ending at the end
        if row_step > 1:  # an even number of rows: the last two a pair
            rows = rows[len(rows) % 2:]
        cols = np.arange(16) * step
        got = correlate_samples(block, np.ones((kh, kw)), rows, cols, False, True)
        want = [[block[r:r + kh, c:c + kw].sum() for c in cols] for r in rows]
        assert np.allclose(got, want), (case, got, want)
""")


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 code generation")
def test_strided_samples_stay_inside_the_block():
    """Blocks that end right before an unreadable page: the last samples of their last rows,
    whose vector loads would run past the end, must be summed without reading there (that
    would crash); so must those of the last pair of rows 4 apart, which load together.
    Compiled for AVX2 without AVX-512, so that LLVM cannot turn a load into a fault-suppressing
    masked one and hide a read past the end."""
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell",
           "NUMBA_CPU_FEATURES": "+avx,+avx2,+fma,+sse4.2,-avx512f,-avx512vl,-avx512bw"}
    run = subprocess.run([sys.executable, "-c", _GUARDED, "float32,7,7,4,1", "float64,3,5,3,1",
                          "float32,8,1,8,1", "float64,2,7,5,1", "float32,7,7,4,4",
                          "float32,5,3,4,4", "float32,6,8,4,4"], env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]


def test_correlate_samples_skips_shift_on_infinite_centre():
    block = np.ones((5, 5), dtype=np.float32)
    block[2, 2] = np.inf
    got = correlate_samples(block, np.ones((1, 1)), np.arange(5), np.arange(5), True, False)
    np.testing.assert_array_equal(got, block)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
@pytest.mark.parametrize("step", [1, 2, 4])
def test_correlate_samples_with_no_taps_is_zero(shape, step):
    """A kernel without taps sums nothing: every sample is 0 (at strides of 3 and more the
    dot-product loops have no case for a kernel without rows, and used to leave the output
    as allocated)."""
    block = np.ones((40, 120), dtype=np.float32)
    rows, cols = np.arange(0, 16, 4), np.arange(0, 100, step)
    got = correlate_samples(block, np.zeros(shape), rows, cols, False, True)
    assert got.shape == (rows.size, cols.size)
    assert (got == 0).all()
