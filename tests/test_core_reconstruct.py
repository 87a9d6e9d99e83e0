"""satconv.core.reconstruct: bilinear and nearest interpolation of a sample grid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satconv.core.reconstruct import bilinear, nearest

from . import oracle


def _pos(values):
    return np.asarray(values, dtype=np.int64)


def test_bilinear_hand_case_2x2_samples():
    samples = np.array([[0.0, 10.0], [20.0, 30.0]])
    out = bilinear(samples, _pos([0, 2]), _pos([0, 2]), 3, 3)
    expected = [[0, 5, 10], [10, 15, 20], [20, 25, 30]]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_bilinear_closing_sample_beyond_tile():
    # samples at 0 and 4 (the next tile's first pixel); the tile is pixels 0..3
    samples = np.array([[0.0, 8.0]])
    out = bilinear(samples, _pos([0]), _pos([0, 4]), 1, 4)
    np.testing.assert_allclose(out, [[0.0, 2.0, 4.0, 6.0]], rtol=0, atol=1e-12)


def test_bilinear_uneven_grid():
    # stride 4 with an edge tile closed by the last pixel: positions 0, 4, 5
    samples = np.array([[0.0], [4.0], [100.0]])
    out = bilinear(samples, _pos([0, 4, 5]), _pos([0]), 6, 1)
    np.testing.assert_allclose(out[:, 0], [0, 1, 2, 3, 4, 100], rtol=0, atol=1e-12)


def test_nearest_hand_case_and_tie_rule():
    samples = np.array([[1.0, 2.0, 3.0]])
    # positions 0, 2, 5: pixel 1 ties (0 vs 2) -> earlier; pixel 3 -> 2; pixel 4 -> 5
    out = nearest(samples, _pos([0]), _pos([0, 2, 5]), 1, 6)
    assert out.tolist() == [[1.0, 1.0, 2.0, 2.0, 3.0, 3.0]]


@st.composite
def grid(draw):
    """Tile-local sample positions as the executor builds them: a regular grid from 0 closed
    either by the next grid point (beyond the tile) or by the tile's last pixel."""
    stride = draw(st.sampled_from([1, 2, 3, 4, 8]))
    n = draw(st.integers(1, 40))
    pos = list(range(0, n, stride))
    if pos[-1] != n - 1:
        pos.append(pos[-1] + stride if draw(st.booleans()) else n - 1)
    return _pos(pos), n


@settings(max_examples=150, deadline=None)
@given(r=grid(), c=grid(), seed=st.integers(0, 2**32 - 1))
def test_bilinear_and_nearest_match_oracle(r, c, seed):
    (rpos, h), (cpos, w) = r, c
    samples = np.random.default_rng(seed).normal(size=(rpos.size, cpos.size)) * 50
    np.testing.assert_allclose(bilinear(samples, rpos, cpos, h, w),
                               oracle.bilinear(samples, rpos, cpos, h, w), rtol=1e-12,
                               atol=1e-9)
    np.testing.assert_array_equal(nearest(samples, rpos, cpos, h, w),
                                  oracle.nearest(samples, rpos, cpos, h, w))


@pytest.mark.parametrize("fn", [bilinear, nearest])
@settings(max_examples=60, deadline=None)
@given(r=grid(), c=grid(), seed=st.integers(0, 2**32 - 1))
def test_exact_at_sample_positions(fn, r, c, seed):
    (rpos, h), (cpos, w) = r, c
    samples = np.random.default_rng(seed).normal(size=(rpos.size, cpos.size))
    out = fn(samples, rpos, cpos, h, w)
    ri = np.flatnonzero(rpos < h)
    ci = np.flatnonzero(cpos < w)
    np.testing.assert_array_equal(out[np.ix_(rpos[ri], cpos[ci])], samples[np.ix_(ri, ci)])


@settings(max_examples=80, deadline=None)
@given(r=grid(), c=grid(), a=st.floats(-100, 100), b=st.floats(-100, 100),
       d=st.floats(-1000, 1000))
def test_bilinear_reproduces_linear_functions(r, c, a, b, d):
    (rpos, h), (cpos, w) = r, c
    samples = a * rpos[:, None] + b * cpos[None, :] + d
    out = bilinear(samples.astype(np.float64), rpos, cpos, h, w)
    rr, cc = np.mgrid[0:h, 0:w]
    np.testing.assert_allclose(out, a * rr + b * cc + d, rtol=1e-12, atol=1e-9)
