"""satconv.core.conv: correlation of a padded block at sample grids, against a numpy loop and
scipy.ndimage.correlate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satconv.core.conv import correlate_grid, correlate_separable_grid

from . import oracle


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
