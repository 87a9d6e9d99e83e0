"""Output encoding (``pipeline.to_output``) and tile extents against plain numpy rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satconv.pipeline import extents, to_output

INT_TYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32"]


def _expected_int(values: np.ndarray, dtype: str, nodata: float | None) -> np.ndarray:
    lim = np.iinfo(dtype)
    out = np.zeros(values.shape, dtype=dtype)
    for i, v in np.ndenumerate(values):
        if np.isnan(v):
            out[i] = 0 if nodata is None else nodata
            continue
        r = min(max(round(float(v)), lim.min), lim.max)  # Python's round: half to even
        if nodata is not None and r == nodata:
            r = nodata + 1 if nodata < lim.max else nodata - 1
        out[i] = r
    return out


@settings(max_examples=80, deadline=None)
@given(dtype=st.sampled_from(INT_TYPES), seed=st.integers(0, 2**32 - 1),
       use_nodata=st.booleans(), nodata_at=st.sampled_from(["min", "max", "mid"]))
def test_integer_outputs_round_clip_and_avoid_nodata(dtype, seed, use_nodata, nodata_at):
    rng = np.random.default_rng(seed)
    lim = np.iinfo(dtype)
    nodata = {"min": lim.min, "max": lim.max, "mid": (int(lim.min) + int(lim.max)) // 2}[nodata_at]
    values = rng.uniform(float(lim.min) - 5, float(lim.max) + 5, size=(2, 5, 7))
    values[0, 0, :3] = [nodata, nodata + 0.4, nodata - 0.5]
    values[1, 2, 2] = 2.5  # half to even: 2
    values[rng.random(values.shape) < 0.2] = np.nan
    nd = nodata if use_nodata else None
    got = to_output(values, dtype, nd)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, _expected_int(values, dtype, nd))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("nodata", [0.0, -9999.0, 3.0e38, -3.4028234663852886e38, 1e-30])
def test_float_outputs_keep_valid_values_off_nodata(dtype, nodata):
    rng = np.random.default_rng(3)
    values = rng.normal(size=(3, 6, 9)) * 10
    typed = float(np.dtype(dtype).type(nodata))
    step = max(abs(typed) * 2.0**-20, float(np.finfo(dtype).tiny))
    values[0, 0, 0] = nodata                      # exactly nodata
    values[0, 0, 1] = typed + step / 4            # within GDAL's tolerance
    values[0, 0, 2] = typed + 4 * step            # far enough: kept
    values[1] = np.nan
    got = to_output(values, dtype, nodata)
    assert got.dtype == np.dtype(dtype)
    assert np.all(got[1] == np.dtype(dtype).type(nodata))
    valid = ~np.isnan(values)
    assert not np.any(np.abs(got[valid].astype(np.float64) - typed) < step)
    cast = values.astype(dtype)
    moved = np.abs(cast.astype(np.float64) - typed) < step
    keep = valid & ~moved
    np.testing.assert_array_equal(got[keep], cast[keep])
    assert moved[0, 0, 0] and moved[0, 0, 1] and not moved[0, 0, 2]


@pytest.mark.parametrize("nodata", [None, float("nan")])
def test_float_outputs_with_nan_nodata_pass_values_through(nodata):
    values = np.array([[[1.5, np.nan], [np.inf, -2.0]]], dtype=np.float32)
    got = to_output(values, "float32", nodata)
    np.testing.assert_array_equal(got, values)
    got64 = to_output(values, "float64", nodata)
    assert got64.dtype == np.float64
    np.testing.assert_array_equal(got64, values.astype(np.float64))


@settings(max_examples=80, deadline=None)
@given(bands=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9),
       p_nan=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(["float32", "float64"]))
def test_extents_match_numpy(bands, h, w, p_nan, seed, dtype):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(bands, h, w)).astype(dtype)
    values[rng.random(values.shape) < p_nan] = np.nan
    count, lo, hi, anyv = extents(values)
    finite = ~np.isnan(values)
    np.testing.assert_array_equal(count, finite.sum(axis=(1, 2)))
    np.testing.assert_array_equal(anyv, finite.any(axis=0))
    for b in range(bands):
        if finite[b].any():
            assert lo[b] == values[b][finite[b]].min()
            assert hi[b] == values[b][finite[b]].max()
        else:
            assert np.isnan(lo[b]) and np.isnan(hi[b])


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_64_bit_outputs_clip_huge_values_to_the_types_ends(dtype):
    lim = np.iinfo(dtype)
    got = to_output(np.array([[[1e30, -1e30, 7.0]]]), dtype, None)
    assert lim.max - 2048 <= int(got[0, 0, 0]) <= lim.max
    assert int(got[0, 0, 1]) == lim.min
    assert int(got[0, 0, 2]) == 7
