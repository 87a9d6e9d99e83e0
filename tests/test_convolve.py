"""satconv.convolve: one tile at a stride, through an in-memory reader, against scipy's dense
convolution of the whole image."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satconv.convolve import PreparedKernel, convolve_tile
from satconv.tiling import TileGrid

from . import oracle

MODES = oracle.BOUNDARY_MODES
KERNEL_SHAPES = [(1, 1), (1, 3), (3, 1), (3, 3), (3, 5), (5, 3), (5, 5), (7, 1), (1, 7), (7, 7)]


def array_reader(x: np.ndarray, cval: float):
    """read(rows, cols) over an in-memory (bands, h, w) image; index -1 reads ``cval``."""
    x = x.astype(np.float64)

    def read(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, None]:
        out = np.full((x.shape[0], rows.size, cols.size), cval, dtype=np.float64)
        ri, ci = np.flatnonzero(rows >= 0), np.flatnonzero(cols >= 0)
        out[np.ix_(np.arange(x.shape[0]), ri, ci)] = x[np.ix_(np.arange(x.shape[0]),
                                                              rows[ri], cols[ci])]
        return out, None

    return read


def run_tiles(x, kernel, mode, cval, tile_size, strides, method="bilinear"):
    """Assemble the whole output from convolve_tile; ``strides`` is an int or a per-tile map."""
    bands, h, w = x.shape
    grid = TileGrid(h, w, tile_size)
    pk = PreparedKernel.from_kernel(kernel)
    read = array_reader(x, cval)
    smap = np.broadcast_to(np.asarray(strides), grid.shape)
    out = np.full(x.shape, np.nan)
    for t in grid.tiles():
        vals = convolve_tile(read, t, int(smap[t.ty, t.tx]), h, w, pk, mode, method).values
        assert vals.shape == (bands, t.height, t.width)
        out[:, t.row0:t.row1, t.col0:t.col1] = vals
    return out


def asym_kernel(rng, shape):
    k = rng.normal(size=shape)
    k[0, 0] += 3.0  # make sure it is far from symmetric: a missing flip must show
    return k


# ---------------------------------------------------------------- hand-sized cases


def test_prepared_kernel_flips_for_scipy_convention():
    k = np.arange(15, dtype=np.float64).reshape(3, 5)
    pk = PreparedKernel.from_kernel(k)
    np.testing.assert_array_equal(pk.weights, k[::-1, ::-1])
    assert (pk.ry, pk.rx) == (1, 2)


@pytest.mark.parametrize("shape", [(2, 3), (3, 4), (3,)])
def test_prepared_kernel_rejects_even_or_1d(shape):
    with pytest.raises(ValueError, match="odd"):
        PreparedKernel.from_kernel(np.ones(shape))


def test_single_impulse_gives_the_kernel():
    """Convolving an impulse reproduces the (unflipped) kernel around it: hand-checkable."""
    x = np.zeros((1, 9, 9))
    x[0, 4, 4] = 1.0
    k = np.arange(1, 10, dtype=np.float64).reshape(3, 3)
    out = run_tiles(x, k, "constant", 0.0, 4, 1)
    expected = np.zeros((9, 9))
    expected[3:6, 3:6] = k
    np.testing.assert_allclose(out[0], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("separable", [False, True])
def test_stride1_every_tile_equals_dense(mode, separable):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 37, 29)) * 100
    k = np.outer(rng.normal(size=5), rng.normal(size=3)) if separable else asym_kernel(rng, (5, 3))
    out = run_tiles(x, k, mode, -7.5, 8, 1)
    np.testing.assert_allclose(out, oracle.dense(x, k, mode, -7.5), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("stride", [2, 4, 8])
@pytest.mark.parametrize("method", ["bilinear", "nearest", "spline"])
def test_strided_tiles_match_interpolated_dense(stride, method):
    rng = np.random.default_rng(stride)
    x = rng.normal(size=(1, 45, 38)) * 10
    k = asym_kernel(rng, (3, 5))
    out = run_tiles(x, k, "reflect", 0.0, 16, stride, method)
    d = oracle.dense(x, k, "reflect")[0]
    grid = oracle.grid_mask(45, 38, stride)
    np.testing.assert_allclose(out[0][grid], d[grid], rtol=1e-10, atol=1e-9)
    expected = oracle.strided_image(d, np.full((3, 3), stride), 16, method)
    np.testing.assert_allclose(out[0], expected, rtol=1e-10, atol=1e-9)


def test_nearest_differs_from_bilinear():
    """The reconstruction option is honoured (guards against one path silently used)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 16, 16))
    k = asym_kernel(rng, (3, 3))
    a = run_tiles(x, k, "reflect", 0.0, 16, 4, "bilinear")
    b = run_tiles(x, k, "reflect", 0.0, 16, 4, "nearest")
    grid = oracle.grid_mask(16, 16, 4)
    np.testing.assert_allclose(a[0][grid], b[0][grid], rtol=1e-12, atol=1e-12)
    assert not np.allclose(a[0][~grid], b[0][~grid])


# ---------------------------------------------------------------- properties


@st.composite
def scene(draw):
    kh, kw = draw(st.sampled_from(KERNEL_SHAPES))
    # each side at least the kernel side (scipy's own extension is unreliable on tiny axes)
    h = draw(st.integers(max(5, kh), 70))
    w = draw(st.integers(max(5, kw), 70))
    allowed = sorted(draw(st.sets(st.sampled_from([1, 2, 4, 8]), min_size=1)))
    tile = allowed[-1] * draw(st.integers(1, 8))
    tile = max(tile, allowed[-1] * -(-4 // allowed[-1]))  # at least 4 pixels: keeps it fast
    mode = draw(st.sampled_from(MODES))
    cval = draw(st.floats(-500, 500, allow_nan=False)) if mode == "constant" else 0.0
    separable = draw(st.booleans())
    bands = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(kshape=(kh, kw), h=h, w=w, allowed=allowed, tile=tile, mode=mode, cval=cval,
                separable=separable, bands=bands, seed=seed)


def _make(case):
    rng = np.random.default_rng(case["seed"])
    kh, kw = case["kshape"]
    if case["separable"]:
        k = np.outer(rng.normal(size=kh) + 0.5, rng.normal(size=kw) - 0.5)
    else:
        k = asym_kernel(rng, (kh, kw))
    x = rng.normal(size=(case["bands"], case["h"], case["w"])) * 100 + 20
    g = TileGrid(case["h"], case["w"], case["tile"])
    strides = rng.choice(case["allowed"], size=g.shape)
    return rng, k, x, strides


@settings(max_examples=300, deadline=None)
@given(case=scene())
def test_property_stride1_equals_dense(case):
    _, k, x, _ = _make(case)
    out = run_tiles(x, k, case["mode"], case["cval"], case["tile"], 1)
    np.testing.assert_allclose(out, oracle.dense(x, k, case["mode"], case["cval"]),
                               rtol=1e-9, atol=1e-8)


@settings(max_examples=300, deadline=None)
@given(case=scene(), method=st.sampled_from(["bilinear", "nearest", "spline"]))
def test_property_mixed_strides_grid_samples_equal_dense(case, method):
    _, k, x, strides = _make(case)
    h, w, tile = case["h"], case["w"], case["tile"]
    out = run_tiles(x, k, case["mode"], case["cval"], tile, strides, method)
    d = oracle.dense(x, k, case["mode"], case["cval"])
    grid = oracle.stride_grid_mask(strides, h, w, tile)
    for b in range(x.shape[0]):
        # every grid sample (global row and column multiples of the tile's stride) is exact
        np.testing.assert_allclose(out[b][grid], d[b][grid], rtol=1e-9, atol=1e-8)
        # and every other pixel is the interpolation of the exact samples: no seams
        np.testing.assert_allclose(out[b], oracle.strided_image(d[b], strides, tile, method),
                                   rtol=1e-9, atol=1e-8)


@settings(max_examples=150, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 6), kh=st.sampled_from([1, 3, 5, 7, 9, 11]),
       kw=st.sampled_from([1, 3, 5, 9]), mode=st.sampled_from(MODES),
       stride=st.sampled_from([1, 2, 4]), seed=st.integers(0, 2**32 - 1))
def test_property_images_smaller_than_the_kernel(h, w, kh, kw, mode, stride, seed):
    """Tiny images: the boundary is extended several times; numpy.pad is the oracle here."""
    rng = np.random.default_rng(seed)
    k = asym_kernel(rng, (kh, kw))
    x = rng.normal(size=(1, h, w)) * 10
    out = run_tiles(x, k, mode, 2.5, stride * 2, stride)
    d = oracle.dense_padded(x, k, mode, 2.5)[0]
    np.testing.assert_allclose(out[0], oracle.strided_image(d, np.full((3, 3), stride),
                                                            stride * 2), rtol=1e-9, atol=1e-8)


def test_dense_padded_oracle_agrees_with_scipy():
    """The two oracles agree where scipy is reliable (each side at least the kernel side)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 12))
    k = asym_kernel(rng, (5, 7))
    for mode in MODES:
        np.testing.assert_allclose(oracle.dense_padded(x, k, mode, 3.0),
                                   oracle.dense(x, k, mode, 3.0), rtol=1e-12, atol=1e-12)


def test_separable_shift_that_overflows_keeps_rows_apart():
    """A separable kernel on float32 pixels near 3e38: the band is shifted by its centre before
    the two passes, and one pixel at -3e38 overflows to an infinity there. The vertical pass
    (15 taps: consecutive rows would share their passes) must still keep it in its own
    windows: every sample whose window does not hold it is finite."""
    from satconv import kernels
    from satconv.convolve import _band_samples
    from satconv.core.conv import shift_offset

    rng = np.random.default_rng(1)
    band = (3e38 * (1 + 1e-6 * rng.standard_normal((80, 60)))).astype(np.float32)
    band[31, 30] = -3e38  # on a row shift_offset skips (it reads every third of 66)
    pk = PreparedKernel.from_kernel(kernels.gaussian(15, 3.0))
    assert pk.column is not None
    pos_r, pos_c = np.arange(66, dtype=np.int64), np.arange(46, dtype=np.int64)
    assert shift_offset(band, pos_r) != 0
    got = _band_samples(band, pk, pos_r, pos_c)
    holds = np.zeros(got.shape, dtype=bool)
    holds[17:32, 16:31] = True
    assert np.isfinite(got[~holds]).all()
