"""Spline reconstruction (not-a-knot cubic spline per tile): against scipy's CubicSpline, exact
for cubics, exact at its samples, NaN kept to the cells beside it, and the quality it buys
over Catmull-Rom at a stride, measured against scipy's dense result. (Next to nodata, with the
cubic's test in test_core_reconstruct_cubic.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from satconv.core import reconstruct, surplus

try:
    from . import oracle
    from . import policy_support as ps
except ImportError:  # tests/ run as a plain folder
    import oracle
    import policy_support as ps


@st.composite
def grids(draw):
    """Increasing sample positions from 0 (steps 1-6) and values on them."""
    nr, nc = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    rpos = np.cumsum([0] + draw(st.lists(st.integers(1, 6), min_size=nr - 1, max_size=nr - 1)))
    cpos = np.cumsum([0] + draw(st.lists(st.integers(1, 6), min_size=nc - 1, max_size=nc - 1)))
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).normal(size=(nr, nc)) * 50
    return rpos.astype(np.int64), cpos.astype(np.int64), values


@settings(max_examples=200, deadline=None)
@given(g=grids())
def test_matches_scipy_cubic_spline(g):
    rpos, cpos, s = g
    h, w = int(rpos[-1]) + 1, int(cpos[-1]) + 1
    out = reconstruct.spline(s, rpos, cpos, h, w)
    np.testing.assert_allclose(out, oracle.spline(s, rpos, cpos, h, w), rtol=1e-9, atol=1e-9)
    # a pixel on a sample is that sample, bit for bit
    np.testing.assert_array_equal(out[np.ix_(rpos, cpos)], s)


@settings(max_examples=100, deadline=None)
@given(g=grids(), data=st.data())
def test_any_query_points_match_the_full_tile(g, data):
    """``interpolate`` at scattered points (check samples) is the full reconstruction there,
    also past the last sample, where the end sample holds."""
    rpos, cpos, s = g
    h, w = int(rpos[-1]) + 1, int(cpos[-1]) + 1
    full = reconstruct.spline(s, rpos, cpos, h + 3, w + 3)
    qr = np.array(sorted(data.draw(st.sets(st.integers(0, h + 2), min_size=1))))
    qc = np.array(sorted(data.draw(st.sets(st.integers(0, w + 2), min_size=1))))
    got = reconstruct.interpolate(s, rpos, cpos, qr, qc, reconstruct.SPLINE)
    np.testing.assert_allclose(got, full[np.ix_(qr, qc)], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(full[h:, :w], np.repeat(full[h - 1:h, :w], 3, axis=0))


def test_reproduces_cubics_on_uneven_grids():
    """Not-a-knot ends keep the spline exact for any cubic polynomial (Catmull-Rom is exact
    only up to quadratics), also on the shorter last cell of an edge tile."""
    rpos, cpos = np.array([0, 8, 16, 24, 30]), np.array([0, 4, 8, 12, 16, 19])

    def f(r, c):
        return 2.0 + 0.3 * r - 0.01 * r**3 + 0.002 * c**3 - 0.04 * c * c + 0.001 * r * r * c

    rr, cc = np.meshgrid(rpos, cpos, indexing="ij")
    out = reconstruct.spline(f(rr, cc), rpos, cpos, 31, 20)
    want = f(*np.mgrid[0:31, 0:20].astype(np.float64))
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-9)
    catmull_rom = reconstruct.cubic(f(rr, cc), rpos, cpos, 31, 20)
    assert np.abs(catmull_rom - want).max() > 1e-3


def test_nan_splits_the_line_and_spoils_only_its_cells():
    rng = np.random.default_rng(1)
    pos = np.arange(0, 57, 8)
    s = rng.normal(size=(pos.size, pos.size))
    s[3, 4] = np.nan
    out = reconstruct.spline(s, pos, pos, 57, 57)
    bad = np.isnan(out)
    # only the cells with the NaN sample as a corner: rows 16..32 x cols 24..40, open ends
    want = np.zeros_like(bad)
    want[17:32, 25:40] = True
    want[24, 25:40] = want[17:32, 32] = True
    np.testing.assert_array_equal(bad, want)
    # row 24 (a sample row) is two independent splines: the runs left and right of the NaN
    left = oracle.spline(s[3:4, :4], np.array([0]), pos[:4], 1, 25)[0]
    right = oracle.spline(s[3:4, 5:], np.array([0]), pos[5:] - 40, 1, 17)[0]
    np.testing.assert_allclose(out[24, :25], left, atol=1e-12)
    np.testing.assert_allclose(out[24, 40:], right, atol=1e-12)


def test_coarse_surplus_uses_the_spline():
    """The free error estimate of a grid (surplus over every other sample) predicts with the
    spline when the run reconstructs with it: checked against scipy's spline."""
    rng = np.random.default_rng(2)
    pos = np.arange(0, 65, 4)
    s = ndimage.gaussian_filter(rng.normal(size=(pos.size, pos.size)), 1.5)
    sq, n = surplus.coarse_sums(s, pos, pos, pos.size, pos.size, reconstruct.SPLINE,
                                np.zeros((0, 0), dtype=bool), np.zeros((0, 0), dtype=bool))
    coarse = np.arange(0, pos.size, 2)
    pred = oracle.spline(s[np.ix_(coarse, coarse)], pos[coarse], pos[coarse], 65, 65)
    off = np.ones((pos.size, pos.size), dtype=bool)
    off[np.ix_(coarse, coarse)] = False
    diff = (s - pred[np.ix_(pos, pos)])[off]
    assert n == off.sum()
    assert sq == pytest.approx(float(np.sum(diff**2)), rel=1e-9)


@pytest.mark.parametrize("stride", [2, 4])
def test_spline_beats_catmull_rom_at_a_stride(tmp_path, stride):
    """The point of spline: a smaller error than cubic at the same stride on smooth data, run
    end to end and measured against scipy's dense result; the samples stay exact. (Where the
    stride aliases the data, here stride 8 on a blur of sigma 4, the spline rings more than
    Catmull-Rom: it is for strides the data is sampled well at, which refine measures.)"""
    errors = ps.stride_errors(tmp_path, stride, ("cubic", "spline"))
    assert errors["spline"] < 0.8 * errors["cubic"], errors
