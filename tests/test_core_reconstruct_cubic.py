"""Cubic (Catmull-Rom) reconstruction: exactness, the Catmull-Rom kernel, uneven edge cells,
and the quality it buys at a stride, against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from satconv import api, config, kernels
from satconv.core import reconstruct
from satconv.errors import ConfigError

try:
    from . import policy_support as ps
except ImportError:  # tests/ run as a plain folder
    import policy_support as ps


def keys(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -1/2 (Catmull-Rom), written out."""
    t = np.abs(t)
    a = -0.5
    return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                    np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))


def test_even_grid_interior_is_catmull_rom():
    rng = np.random.default_rng(0)
    step = 4
    pos = np.arange(0, 41, step)
    f = rng.normal(size=pos.size)
    out = reconstruct.cubic(np.outer(np.ones(3), f), np.array([0, 1, 2]), pos, 3, 41)[0]
    for x in range(step, 41 - 2 * step):       # cells with two samples on either side
        k = np.arange(pos.size)
        want = np.sum(f * keys((x - pos) / step))
        assert out[x] == pytest.approx(want, abs=1e-12), x
        assert np.all(k.size)


@pytest.mark.parametrize("rpos,cpos,h,w", [
    (np.arange(0, 33, 8), np.arange(0, 33, 8), 33, 33),       # even grid
    (np.array([0, 8, 16, 24, 30]), np.array([0, 4, 8, 11]), 31, 12),  # edge tile: short last cell
    (np.array([0, 2, 3]), np.array([0, 16, 32, 40]), 4, 41),
])
def test_reproduces_quadratics_on_any_grid(rpos, cpos, h, w):
    """A Hermite spline with parabola slopes is exact for quadratics, also next to the tile's
    ends and on the shorter last cell of an edge tile."""
    def f(r, c):
        return 3.0 + 0.5 * r - 0.25 * c + 0.03 * r * r - 0.02 * c * c + 0.01 * r * c

    rr, cc = np.meshgrid(rpos, cpos, indexing="ij")
    out = reconstruct.cubic(f(rr, cc).astype(np.float64), rpos, cpos, h, w)
    want = f(*np.mgrid[0:h, 0:w].astype(np.float64))
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-9)


def test_sample_positions_are_exact_and_nan_stays_local():
    rng = np.random.default_rng(1)
    rpos = np.arange(0, 49, 8)
    cpos = np.arange(0, 49, 8)
    s = rng.normal(size=(rpos.size, cpos.size))
    out = reconstruct.cubic(s, rpos, cpos, 49, 49)
    np.testing.assert_array_equal(out[np.ix_(rpos, cpos)], s)
    s[3, 3] = np.nan
    out = reconstruct.cubic(s, rpos, cpos, 49, 49)
    bad = np.isnan(out)
    # a NaN sample spoils only the pixels whose 4x4 support holds it: never two cells away
    assert bad[24, 24] and not bad[:8].any() and not bad[:, 41:].any()
    assert not np.isnan(out[np.ix_(rpos, cpos)][np.arange(7) != 3][:, np.arange(7) != 3]).any()


def test_taps_match_the_full_reconstruction():
    rng = np.random.default_rng(2)
    rpos, cpos = np.array([0, 4, 8, 12, 14]), np.array([0, 8, 16, 20])
    s = rng.normal(size=(rpos.size, cpos.size))
    full = reconstruct.cubic(s, rpos, cpos, 15, 21)
    qr, qc = np.array([1, 6, 13]), np.array([3, 17, 20])
    ri, rw = reconstruct.axis_taps(rpos, qr.astype(float), reconstruct.CUBIC)
    ci, cw = reconstruct.axis_taps(cpos, qc.astype(float), reconstruct.CUBIC)
    np.testing.assert_allclose(reconstruct.resample(s, ri, rw, ci, cw), full[np.ix_(qr, qc)],
                               atol=1e-12)


@pytest.mark.parametrize("stride,factor", [(2, 0.5), (4, 0.7), (8, 0.95)])
def test_cubic_beats_bilinear_at_a_stride(tmp_path, stride, factor):
    """The point of cubic: a smaller error than bilinear at the same stride on smooth data,
    measured against scipy's dense result; the samples themselves stay exact."""
    errors = ps.stride_errors(tmp_path, stride, ("bilinear", "cubic"))
    assert errors["cubic"] < factor * errors["bilinear"], errors


@pytest.mark.parametrize("method", ["cubic", "spline"])
def test_stride1_is_dense_and_no_nodata_bleeds(tmp_path, method):
    """Both cubic reconstructions next to a nodata hole: exact near it, nodata where the dense
    result has it; far from it, the interpolation is close to the dense result."""
    rng = np.random.default_rng(4)
    x = (ndimage.gaussian_filter(rng.normal(size=(96, 80)), 3) * 50 + 100).astype(np.float32)
    x[30:50, 20:45] = -9999
    path = ps.write_tif(tmp_path / "holes.tif", x, nodata=-9999)
    data, valid = ps.read_scene(path)
    k = kernels.gaussian(7, 1.5)
    ref = ps.dense(data, valid, k)
    for strides in ([1], [4]):
        s = config.from_dict({"tile_size": 32, "strides": strides, "max_stride": "none",
                              "kernel": {"size": 7, "sigma": 1.5}, "reconstruction": method,
                              "output": {"dtype": "float64"}})
        out_path = tmp_path / f"out{strides[0]}.tif"
        api.run_scene(path, s, output=out_path, overwrite=True)
        out = ps.read_output(out_path)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        # within a kernel radius (plus the cubic's reach) of the hole, pixels are exact
        near = ndimage.binary_dilation(~valid[0], iterations=3) & valid[0]
        np.testing.assert_allclose(out[0][near], ref[0][near], rtol=1e-9, atol=1e-6)
        if strides == [1]:
            np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-6, equal_nan=True)
        far = ~ndimage.binary_dilation(~valid[0], iterations=12) & valid[0]
        rmse = np.sqrt(np.mean((out[0][far] - ref[0][far]) ** 2))
        assert rmse < 0.02 * np.ptp(ref[0][far]), rmse


def test_config_accepts_cubic_and_spline_and_names_the_key_for_bad_values():
    assert config.from_dict({"reconstruction": "cubic"}).reconstruction == "cubic"
    assert config.from_dict({"reconstruction": "spline"}).reconstruction == "spline"
    with pytest.raises(ConfigError, match="reconstruction"):
        config.from_dict({"reconstruction": "lanczos"})
