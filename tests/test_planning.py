"""satconv.planning and satconv.core.stats: window variance, the allocation rule, the error
model and whole-scene plans on synthetic rasters with known statistics."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import scipy.ndimage as ndi
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import satconv
from satconv import api, config, kernels, planning
from satconv.core.stats import window_variance
from satconv.errors import PlanError
from satconv.planning import allocate, error_model, load_plan, variance
from satconv.planning.plan import Plan
from satconv.tiling import TileGrid

from . import oracle


def settings_with(**kw):
    return config.from_dict(kw)


def checkerboard(h, w, a, b):
    """Values a and b alternating: every even-sized window has population variance
    ((a - b) / 2) ** 2."""
    rr, cc = np.mgrid[0:h, 0:w]
    return np.where((rr + cc) % 2 == 0, a, b)


# ---------------------------------------------------------------- window_variance


def test_window_variance_hand_windows():
    x = np.zeros((4, 6))
    x[0:2, 0:2] = [[1, 2], [3, 4]]          # var of 1..4 = 1.25
    x[0:2, 2:4] = 7                          # constant: 0
    x[0:2, 4:6] = [[0, 10], [0, 10]]         # 25
    x[2:4, 0:2] = [[5, 5], [5, 100]]         # 100 is invalid below: 0
    x[2:4, 2:4] = [[1, 3], [1, 3]]           # only one valid pixel: NaN (min_count 2)
    x[2:4, 4:6] = 9                          # no valid pixel: NaN
    valid = np.ones(x.shape, dtype=bool)
    valid[3, 1] = False
    valid[2:4, 3] = False
    valid[3, 2] = False
    valid[2:4, 4:6] = False
    got = window_variance(x, valid, 2, 2)
    expected = np.array([[1.25, 0.0, 25.0], [0.0, np.nan, np.nan]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_window_variance_partial_edge_windows():
    x = np.arange(15, dtype=np.float64).reshape(3, 5)
    got = window_variance(x, np.ones(x.shape, dtype=bool), 4, 1)
    assert got.shape == (1, 2)
    np.testing.assert_allclose(got, [[np.var(x[:, :4]), np.var(x[:, 4:])]], rtol=1e-12)


def test_window_variance_large_offset_keeps_precision():
    """uint16-like values near 60000 with tiny spread: the naive sum-of-squares loses it."""
    rng = np.random.default_rng(1)
    x = 60000.0 + rng.integers(0, 3, size=(16, 16)).astype(np.float64)
    valid = np.ones(x.shape, dtype=bool)
    np.testing.assert_allclose(window_variance(x, valid, 8, 2),
                               oracle.window_variance(x, valid, 8, 2), rtol=1e-9, atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), win=st.integers(2, 9),
       min_count=st.integers(1, 20), p_valid=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**32 - 1))
def test_window_variance_matches_numpy(h, w, win, min_count, p_valid, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(h, w)) * 30 + 1000
    valid = rng.random((h, w)) < p_valid
    np.testing.assert_allclose(window_variance(x, valid, win, min_count),
                               oracle.window_variance(x, valid, win, min_count),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("statistic", ["max", "mean", "p90"])
def test_tile_stats_aggregates_window_variances(statistic):
    rng = np.random.default_rng(7)
    data = rng.normal(size=(2, 32, 24)) * np.array([1.0, 20.0])[:, None, None]
    data[1, :8, :8] *= 10
    valid = rng.random(data.shape) > 0.1
    ts = variance.tile_stats(data, valid, 8, statistic)
    for b in range(2):
        v = oracle.window_variance(data[b], valid[b], 8, 16)
        v = v[np.isfinite(v)]
        expected = {"max": v.max(), "mean": v.mean(),
                    "p90": max(np.percentile(v, 90), v.mean())}[statistic]
        assert ts.statistic[b] == pytest.approx(expected, rel=1e-9)
        assert ts.vmin[b] == data[b][valid[b]].min()
        assert ts.vmax[b] == data[b][valid[b]].max()
    assert ts.valid == int(valid.any(axis=0).sum())


def test_p90_of_a_tile_with_texture_in_few_windows_is_their_mean():
    """A short edge in a flat 32x32 tile, inside one of its 16 windows: the 90th percentile
    of the windows' variances is 0, which would call the tile flat; p90 is their mean."""
    data = np.zeros((1, 32, 32))
    data[0, :8, 3] = 100.0  # one 8x8 window holds the edge
    ts = variance.tile_stats(data, None, 8, "p90")
    v = oracle.window_variance(data[0], np.ones((32, 32), dtype=bool), 8, 16)
    assert np.percentile(v, 90) == 0.0
    # one window of 16 holds 8 pixels of 100 among 64: variance 100^2 * (1/8) * (7/8)
    assert ts.statistic[0] == pytest.approx(100.0**2 * (1 / 8) * (7 / 8) / 16, rel=1e-12)


def test_p90_plans_no_tile_coarser_than_mean(tmp_path):
    """Real scenes (a coastline mask, a Landsat subset): the auto plan with p90 gives no tile
    a coarser stride than with mean, and its output is within the target against the dense
    result (scipy), as documented ("max and p90 are more conservative")."""
    from . import policy_support as ps

    data = ps.shared_data()
    for name in ("world.byte.tif", "RGB.byte.tif"):
        scene = data / name
        strides = {}
        for statistic in ("mean", "p90"):
            s = config.from_dict({"policy": {"statistic": statistic}})
            out = tmp_path / f"{statistic}.{name}"
            report = api.run_scene(scene, s, output=out)
            strides[statistic] = ps.read_band(report.outputs["stride_map"])
        free = strides["mean"] > 0
        assert (strides["p90"][free] <= strides["mean"][free]).all(), name
        x, valid = ps.read_scene(scene)  # the default kernel's dense result (scipy)
        ref = ps.dense(np.where(valid, x, np.nan), valid, config.from_dict({}).kernel.array())
        assert ps.psnr(ps.read_output(tmp_path / f"p90.{name}"), ref) >= 40.0, name


# ---------------------------------------------------------------- allocation rule

REAL_GAINS = {
    name: {s: error_model.stride_gain(k, s) for s in (1, 2, 4, 8, 16)}
    for name, k in (("gaussian", kernels.gaussian(5, 1.0)),
                    ("sobel", kernels.make_kernel("sobel_x")),
                    ("box", kernels.box(3)))
}


@st.composite
def allocation_case(draw):
    strides = sorted(draw(st.sets(st.sampled_from([1, 2, 4, 8, 16]), min_size=1, max_size=5)))
    gains = REAL_GAINS[draw(st.sampled_from(sorted(REAL_GAINS)))]
    lam = 10 ** draw(st.floats(-3, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    return strides, {s: gains[s] for s in strides}, lam, seed


@settings(max_examples=150, deadline=None)
@given(case=allocation_case())
def test_choose_minimises_lagrangian(case):
    strides, gains, lam, seed = case
    u = 10 ** np.random.default_rng(seed).uniform(-4, 4, size=500)
    chosen = allocate.choose(u, allocate.thresholds(strides, gains, lam))
    assert set(np.unique(chosen)) <= set(strides)
    cost = np.array([[1 / s**2 + lam * ui * gains[s] for s in strides] for ui in u])
    got = np.array([1 / s**2 + lam * ui * gains[s] for ui, s in zip(u, chosen, strict=True)])
    np.testing.assert_array_less(got, cost.min(axis=1) * (1 + 1e-9) + 1e-15)


@settings(max_examples=100, deadline=None)
@given(case=allocation_case())
def test_choose_is_monotone(case):
    strides, gains, lam, seed = case
    u = np.sort(10 ** np.random.default_rng(seed).uniform(-4, 4, size=300))
    chosen = allocate.choose(u, allocate.thresholds(strides, gains, lam))
    # more variance never gets a coarser stride
    assert np.all(np.diff(chosen) <= 0)
    # a larger error price never gets a coarser stride anywhere
    finer = allocate.choose(u, allocate.thresholds(strides, gains, lam * 10))
    assert np.all(finer <= chosen)
    # the thresholds themselves: the finest stride is always allowed
    assert allocate.thresholds(strides, gains, lam)[strides[0]] == np.inf


@settings(max_examples=40, deadline=None)
@given(case=allocation_case(), target=st.floats(0.01, 10.0), fraction=st.floats(0.0, 1.0))
def test_error_and_budget_searches_meet_their_constraint(case, target, fraction):
    strides, gains, _, seed = case
    rng = np.random.default_rng(seed)
    u = 10 ** rng.uniform(-3, 3, size=200)
    weights = rng.integers(1, 100, size=200).astype(np.float64)

    def mse(chosen):
        return float((weights * u * np.array([gains[s] for s in chosen])).sum() / weights.sum())

    # feasible when everything at the finest stride meets the target (always with stride 1)
    if mse(np.full(u.shape, strides[0])) <= target:
        assert mse(allocate.choose(u, allocate.for_error(u, weights, strides, gains,
                                                           target))) <= target * (1 + 1e-6)
    assume(fraction >= 1 / strides[-1] ** 2)  # feasible: everything at the coarsest stride
    chosen = allocate.choose(u, allocate.for_budget(u, weights, strides, gains, fraction))
    spent = float((weights / chosen.astype(np.float64) ** 2).sum() / weights.sum())
    assert spent <= fraction * (1 + 1e-9)


# ---------------------------------------------------------------- error model


def test_stride_gain_zero_at_stride1_and_grows_for_gaussian():
    k = kernels.gaussian(5, 1.0)
    gains = [error_model.stride_gain(k, s) for s in (1, 2, 4, 8, 16)]
    assert gains[0] == 0.0
    assert all(b > a for a, b in zip(gains, gains[1:], strict=False))
    assert gains[1] > 0


def test_stride_gain_orders_kernels_and_methods_as_documented():
    narrow, wide = kernels.gaussian(5, 1.0), kernels.gaussian(9, 3.0)
    sobel = kernels.make_kernel("sobel_x")
    for s in (2, 4):
        assert error_model.stride_gain(wide, s) < error_model.stride_gain(narrow, s)
        assert error_model.stride_gain(sobel, s) > error_model.stride_gain(narrow, s)
        assert error_model.stride_gain(narrow, s, "nearest") > error_model.stride_gain(narrow, s)


def _power_law_field(n, seed):
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])
    f[0, 0] = np.inf
    spec = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / f
    return np.real(np.fft.ifft2(spec))


@pytest.mark.parametrize("stride", [2, 4])
def test_stride_gain_predicts_measured_error_on_a_natural_field(stride):
    """Independent measurement: a 1/f^2 field (another seed), scipy's periodic convolution,
    stride samples bilinearly interpolated by the oracle; MSE over mean window variance."""
    n = 256
    k = kernels.gaussian(5, 1.0)
    x = _power_law_field(n, seed=99)
    y = ndi.convolve(x, k, mode="wrap")
    pos = np.arange(0, n + 1, stride)
    samples = y[np.ix_(pos % n, pos % n)]
    recon = oracle.bilinear(samples, pos, pos, n, n)
    v = np.nanmean(oracle.window_variance(x, np.ones(x.shape, dtype=bool), 8, 2))
    measured = float(np.mean((recon - y) ** 2) / v)
    predicted = error_model.stride_gain(k, stride)
    assert predicted / 2 < measured < predicted * 2


def test_smoothing_width_hand_values():
    # a box of n: positions 0..n-1 with equal weight have variance (n^2 - 1) / 12
    for n in (1, 3, 15):
        assert error_model.smoothing_width(np.ones((n, n))) == pytest.approx(n)
    assert error_model.smoothing_width(np.ones((3, 9))) == pytest.approx(9)  # the wider axis
    # a Gaussian wide enough not to be cut: variance sigma^2
    assert error_model.smoothing_width(kernels.gaussian(41, 4.0)) == pytest.approx(
        np.sqrt(12 * 16 + 1), rel=1e-3)
    assert error_model.smoothing_width(kernels.make_kernel("sobel_x")) == 0.0


def test_output_scale():
    assert error_model.output_scale(kernels.gaussian(5, 1.0)) == pytest.approx(1.0)
    assert error_model.output_scale(kernels.make_kernel("sobel_x")) == pytest.approx(4.0)
    assert error_model.output_scale(np.array([[2.0, 1.0, 1.0]])) == pytest.approx(4.0)


# ---------------------------------------------------------------- plans of whole scenes


def test_constant_scene_gets_coarsest_stride(write_tif):
    path = write_tif(np.full((1, 100, 70), 1234, dtype=np.uint16))
    for strides in ([1, 2, 4], [1, 2, 4, 8], [2, 4]):
        _, plan = api.plan_scene(path, settings_with(tile_size=32, strides=strides))
        assert plan.strides.shape == (4, 3)
        assert np.all(plan.strides == max(strides))


def test_noisy_tile_gets_stride1_others_coarsest(write_tif):
    data = np.full((1, 64, 64), 30000, dtype=np.uint16)
    rng = np.random.default_rng(0)
    data[0, 32:, :32] = rng.integers(0, 65535, size=(32, 32), endpoint=True)
    path = write_tif(data)
    _, plan = api.plan_scene(path, settings_with(tile_size=32))
    assert plan.strides.tolist() == [[4, 4], [1, 4]]


def test_most_demanding_band_decides(write_tif):
    data = np.full((2, 64, 64), 30000, dtype=np.uint16)
    rng = np.random.default_rng(0)
    data[1, :32, 32:] = rng.integers(0, 65535, size=(32, 32), endpoint=True)
    _, plan = api.plan_scene(write_tif(data), settings_with(tile_size=32))
    assert plan.strides.tolist() == [[4, 1], [4, 4]]


def test_smaller_target_error_never_plans_coarser(write_tif):
    rng = np.random.default_rng(3)
    smooth = ndi.gaussian_filter(rng.normal(size=(128, 128)), 6) * 3000
    data = (smooth + rng.normal(size=smooth.shape) * np.linspace(0, 300, 128)[None, :] + 20000)
    path = write_tif(data.astype(np.float32)[None])
    fractions, previous = [], None
    for target in (0.2, 0.05, 0.01, 0.002, 0.0005):
        s = config.from_dict({"tile_size": 16, "policy": {"target_error": target}})
        _, plan = api.plan_scene(path, s)
        if previous is not None:
            assert np.all(plan.strides <= previous)
        previous = plan.strides
        fractions.append(plan.compute_fraction())
    assert fractions == sorted(fractions)
    assert fractions[0] < fractions[-1]  # the sweep actually changed the plan


@pytest.mark.parametrize(("kernel", "window", "policy"), [
    ({"type": "gaussian", "size": 5, "sigma": 1.0}, 8, None),
    ({"type": "gaussian", "size": 5, "sigma": 1.0}, 8, "budget"),
    ({"type": "gaussian", "size": 21, "sigma": 4.0}, 8, None),
    ({"type": "gaussian", "size": 21, "sigma": 4.0}, 4, None),
    ({"type": "box", "size": 15}, 4, None),
])
def test_target_error_is_a_share_of_the_output_range(write_tif, tmp_path, kernel, window,
                                                     policy):
    """``target_error: 0.01`` is 40 dB with peak = the dense output's range, also where
    smoothing narrows that range far below the input's: isolated hot and dead pixels (0 and
    2000) over a textured background, as on a sensor with bad pixels, and kernels that
    average over more than the variance windows. Measured against scipy over the whole
    scene. The budget policy, given the variance plan's compute, weighs errors on the same
    scale and does as well."""
    rng = np.random.default_rng(7)
    data = 1000.0 + ndi.gaussian_filter(rng.normal(size=(512, 512)), 3) * 600
    spikes = rng.random(data.shape) < 0.002
    data[spikes] = rng.choice([0.0, 2000.0], size=int(spikes.sum()))
    data = data.round()
    path = write_tif(data.astype(np.uint16)[None])
    base = {"kernel": kernel, "strides": [1, 2, 4, 8], "max_stride": "none",
            "policy": {"window": window}, "output": {"dtype": "float64"}}
    s = config.from_dict(base)
    ref = oracle.dense(data, s.kernel.array())
    peak = ref.max() - ref.min()
    assert peak < 0.5 * (data.max() - data.min())  # the case in point
    if policy:
        variance = api.run_scene(path, s, output=tmp_path / "v.tif")
        spent = variance.execute["evaluations_per_pixel"]
        s = config.from_dict({**base, "policy": {"type": policy, "window": window,
                                                 "fraction": round(spent, 6)}})
    api.run_scene(path, s, output=tmp_path / "o.tif")
    with rasterio.open(tmp_path / "o.tif") as ds:
        got = ds.read(1)
    psnr = 10 * np.log10(peak**2 / np.mean((got - ref) ** 2))
    assert psnr >= 40.0, psnr


def test_explicit_thresholds(write_tif):
    # tiles of 32 filled with checkerboards: window variance ((a - b) / 2) ** 2 everywhere
    data = np.zeros((1, 32, 160), dtype=np.float32)
    for tx, d in enumerate([0, 40, 100, 20, 10]):  # variances 0, 400, 2500, 100, 25
        data[0, :, 32 * tx:32 * (tx + 1)] = checkerboard(32, 32, 500, 500 + d)
    path = write_tif(data)
    s = config.from_dict({"tile_size": 32, "strides": [1, 2, 4],
                          "policy": {"thresholds": [1000, 100]}})
    _, plan = api.plan_scene(path, s)
    # stride 2 while the variance is below 1000, stride 4 while below 100 (100 is not below)
    assert plan.strides.tolist() == [[4, 2, 1, 2, 4]]


def _checkerboard_tiles(dtype: str, scale: int = 1) -> np.ndarray:
    """Tiles of 32 on a base of 100: window variances 0, 400, 2500, 100 and 25 (x scale**2),
    the scene's value range 100 (x scale)."""
    data = np.zeros((1, 32, 160), dtype=dtype)
    for tx, d in enumerate([0, 40, 100, 20, 10]):
        data[0, :, 32 * tx:32 * (tx + 1)] = checkerboard(32, 32, 100 * scale,
                                                         (100 + d) * scale)
    return data


@pytest.mark.parametrize("relative_to, scale", [("scene", 100.0 ** 2), ("dtype", 255.0 ** 2)])
def test_relative_thresholds_are_shares_of_the_squared_range(write_tif, relative_to, scale):
    """Absolute variances 1000 and 60, given as shares of the scene's range (100) or of
    uint8's (255), squared: the plan of those variances, and the report says what they were."""
    path = write_tif(_checkerboard_tiles("uint8"))
    s = config.from_dict({"tile_size": 32, "strides": [1, 2, 4],
                          "policy": {"thresholds": [1000 / scale, 60 / scale],
                                     "thresholds_relative_to": relative_to}})
    _, plan = api.plan_scene(path, s)
    assert plan.strides.tolist() == [[4, 2, 1, 2, 4]]
    assert plan.details["thresholds_relative_to"] == relative_to
    np.testing.assert_allclose(plan.details["thresholds_per_band"]["2"], [1000], rtol=1e-5)
    np.testing.assert_allclose(plan.details["thresholds_per_band"]["4"], [60], rtol=1e-5)


def test_dtype_relative_thresholds_fit_uint8_and_uint16_alike(tmp_path, write_tif):
    """One config, the same scene as uint8 and as uint16 (x 257, the full range of each): the
    same plan with thresholds relative to the data type, different plans with absolute ones."""
    p8 = write_tif(_checkerboard_tiles("uint8"), name="u8.tif")
    p16 = write_tif(_checkerboard_tiles("uint16", 257), name="u16.tif")
    plans = {}
    for relative_to, values in (("dtype", [1000 / 255**2, 60 / 255**2]),
                                ("absolute", [1000, 60])):
        s = config.from_dict({"tile_size": 32, "policy": {
            "thresholds": values, "thresholds_relative_to": relative_to}})
        plans[relative_to] = [api.plan_scene(p, s)[1].strides.tolist() for p in (p8, p16)]
    assert plans["dtype"] == [[[4, 2, 1, 2, 4]]] * 2
    assert plans["absolute"][0] != plans["absolute"][1]


def test_dtype_relative_thresholds_refuse_a_float_input(write_tif, monkeypatch):
    path = write_tif(_checkerboard_tiles("float32"))
    s = config.from_dict({"tile_size": 32, "policy": {
        "thresholds": [0.1, 0.01], "thresholds_relative_to": "dtype"}})
    scanned = []
    monkeypatch.setattr(planning, "scene_stats_many", lambda *a, **k: scanned.append(a))
    with pytest.raises(PlanError, match=r"scene\.tif: .*integer data type.*float32"):
        api.plan_scene(path, s)
    assert not scanned, "the scene was read before the config was found not to fit it"


def test_all_nodata_tiles_get_stride_0_and_nodata_is_excluded(write_tif):
    data = np.full((1, 64, 96), 5000, dtype=np.uint16)
    data[0, :, 32:64] = 0                       # tile column 1: all nodata
    data[0, 32:, 64:] = checkerboard(32, 32, 0, 9000)  # half nodata: valid part constant
    rng = np.random.default_rng(0)
    data[0, 32:, :32] = rng.integers(1, 65535, size=(32, 32))
    s = config.from_dict({"tile_size": 32, "policy": {"thresholds": [1.0, 0.5]}})
    _, plan = api.plan_scene(write_tif(data, nodata=0), s)
    assert plan.strides.tolist() == [[4, 0, 4], [1, 0, 4]]
    assert plan.histogram() == {0: 2, 1: 1, 4: 3}


def test_nan_pixels_are_excluded_like_nodata(write_tif):
    data = np.full((1, 32, 64), 7.0, dtype=np.float32)
    data[0, :, 32:] = np.nan
    data[0, ::2, :32] = np.nan  # NaN stripes across an otherwise constant tile
    s = config.from_dict({"tile_size": 32, "policy": {"thresholds": [1.0, 0.5]}})
    _, plan = api.plan_scene(write_tif(data), s)
    assert plan.strides.tolist() == [[4, 0]]


def test_plan_compute_fraction_and_histogram_by_hand():
    grid = TileGrid(height=40, width=50, size=32)  # tiles 32x32, 32x18, 8x32, 8x18
    plan = Plan(np.array([[1, 2], [4, 0]]), grid, "test")
    expected = (32 * 32 / 1 + 32 * 18 / 4 + 8 * 32 / 16 + 0) / (40 * 50)
    assert plan.compute_fraction() == pytest.approx(expected, rel=1e-12)
    assert plan.histogram() == {0: 1, 1: 1, 2: 1, 4: 1}
    assert plan.tile_pixels().tolist() == [[1024, 576], [256, 144]]


# ---------------------------------------------------------------- saved plans


def test_load_plan_checks_shape_and_allowed_strides(make_scene, write_stride_map):
    scene, _ = make_scene(70, 45)
    s = config.from_dict({"tile_size": 32, "strides": [1, 2, 4]})
    with api.raster_io.open_input(scene) as ds:
        info = api.raster_io.describe(ds)
    good = write_stride_map(np.array([[1, 2], [4, 0], [1, 1]]), scene, 32, name="good.tif")
    assert load_plan(str(good), info, s).strides.tolist() == [[1, 2], [4, 0], [1, 1]]
    wrong = write_stride_map(np.ones((2, 2)), scene, 32, name="wrong.tif")
    with pytest.raises(PlanError, match="3x2"):
        load_plan(str(wrong), info, s)
    bad = write_stride_map(np.array([[1, 8], [1, 1], [1, 1]]), scene, 32, name="bad.tif")
    with pytest.raises(PlanError, match=r"\[8\]"):
        load_plan(str(bad), info, s)
    frac = write_stride_map(np.full((3, 2), 1.5), scene, 32, name="frac.tif", dtype="float32")
    with pytest.raises(PlanError, match="whole numbers"):
        load_plan(str(frac), info, s)


@settings(max_examples=100, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), p_valid=st.sampled_from([0.0, 0.1, 0.7, 1.0]),
       dtype=st.sampled_from(["uint8", "uint16", "int16", "int32", "float32", "float64"]),
       seed=st.integers(0, 2**32 - 1))
def test_valid_range_and_variance_match_numpy(h, w, p_valid, dtype, seed):
    from satconv.core.stats import valid_range, valid_variance

    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo, hi = (info.min, info.max) if info else (-1e6, 1e6)
    x = rng.uniform(lo, hi, size=(h, w)).astype(dtype)
    valid = rng.random((h, w)) < p_valid
    if info is None:
        x[~valid & (rng.random((h, w)) < 0.5)] = np.nan  # invalid NaNs must not leak
    got_lo, got_hi = valid_range(x, valid)
    n, var = valid_variance(x, valid)
    vals = x[valid].astype(np.float64)
    assert n == vals.size
    if vals.size == 0:
        assert np.isnan(got_lo) and np.isnan(got_hi) and np.isnan(var)
        return
    assert got_lo == vals.min() and got_hi == vals.max()
    assert var == pytest.approx(np.var(vals), rel=1e-9, abs=1e-9 * (hi - lo))


# ---------------------------------------------------------------- the plan's cost model


@pytest.mark.parametrize("method", ["nearest", "bilinear", "cubic", "spline"])
@pytest.mark.parametrize("stride", [4, 8, 16])
def test_predicted_evaluations_are_what_the_executor_spends(method, stride, tmp_path):
    """The budget spends, and every plan reports, kernel evaluations predicted from the scan:
    samples plus the pixels computed exactly next to nodata: within a kernel's reach of it
    (around the tile too), or reading a nodata sample, as far as the reconstruction reaches
    (a spline's nodata sample spoils only the cells beside it). On a scene with a wide nodata
    collar (RGB.byte.tif), a uniform plan predicts within 4 % what the run counts. (Not
    exactly: a sample at a nodata pixel is taken as undefined, where normalised convolution
    may define it.)"""
    from . import policy_support as ps

    s = config.from_dict({"kernel": {"type": "gaussian", "size": 13, "sigma": 2.0},
                          "strides": [1, stride], "max_stride": 16, "tile_size": 128,
                          "policy": {"thresholds": [1e30]},  # every tile at ``stride``
                          "reconstruction": method,
                          "output": {"dtype": "float64", "compress": "none"}})
    rep = api.run_scene(ps.shared_data() / "RGB.byte.tif", s, output=tmp_path / "o.tif")
    assert set(rep.plan["tiles_per_stride"]) <= {"0", str(stride)}
    sc = rep.scene
    spent = rep.execute["kernel_evaluations"] / (sc["width"] * sc["height"]
                                                 * len(sc["data_bands"]))
    assert rep.plan["predicted_evaluations_fraction"] == pytest.approx(spent, rel=0.04)


@pytest.mark.parametrize("kernel", [[[1.0]], [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]],
                         ids=["1x1", "3x3"])
@pytest.mark.parametrize("first", [15, 16], ids=["last-row", "next-tiles-first-row"])
def test_predicted_evaluations_see_the_closing_samples_past_a_tile(write_tif, tmp_path,
                                                                   kernel, first):
    """Nodata on every tile's last row, or on the row just past it, where a tile's strided
    grid closes (its last sample is the next tile's first): the count, hand-checkable on this
    grid, is exact, for a 1x1 kernel too (whose convolution needs no halo)."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(64, 64)) * 10 + 100
    data[first::16, :] = -9999
    path = write_tif(data.astype(np.float32)[None], nodata=-9999)
    s = config.from_dict({"kernel": {"type": "custom", "weights": kernel}, "strides": [1, 4],
                          "max_stride": "none", "tile_size": 16,
                          "policy": {"thresholds": [1e30]},
                          "output": {"dtype": "float64", "compress": "none"}})
    rep = api.run_scene(path, s, output=tmp_path / "o.tif")
    assert rep.plan["tiles_per_stride"] == {"4": 16}
    assert rep.plan["predicted_evaluations_fraction"] == pytest.approx(
        rep.execute["kernel_evaluations"] / 64**2, abs=1e-6)  # (rounded to 6 places)


def test_estimate_takes_the_largest_term_with_the_margin_of_its_checks():
    """Hand-computed: each term is its surplus times the model's ratio; the largest counts,
    times SAFETY with cell-centre checks, UNCHECKED_SAFETY without, RECHECKED_SAFETY after a
    dense recheck at a well-sampled stride (which leaves the coarse surplus out)."""
    est = error_model.ErrorEstimator({4: 2.0}, {4: 3.0}, {4: 1.5}, well_sampled={4: True})
    centre, coarse, model = np.array([1.0, np.nan]), np.array([1.0, 0.5]), np.array([2.5, 1.0])
    got = est.estimate(4, centre, coarse, model)
    # band 0: max(2*1, 3*1, 2.5) = 3 with the checked margin; band 1: unchecked, max(1.5, 1)
    checked = [3.0 * error_model.SAFETY, 1.5 * error_model.UNCHECKED_SAFETY]
    np.testing.assert_allclose(got, checked)
    got = est.estimate(4, centre, coarse, model, rechecked=True)
    np.testing.assert_allclose(got, [2.5 * error_model.RECHECKED_SAFETY,
                                     1.5 * error_model.UNCHECKED_SAFETY])
    np.testing.assert_allclose(est.estimate(4, np.array([2.0]), np.array([0.1]),
                                            np.array([1.0]), full=True, rechecked=True),
                               [3.0 * error_model.RECHECKED_SAFETY])  # the half-stride ratio
    aliased = error_model.ErrorEstimator({4: 2.0}, {4: 3.0}, {4: 1.5}, well_sampled={4: False})
    np.testing.assert_allclose(aliased.estimate(4, centre, coarse, model, rechecked=True),
                               checked)
    assert not est.estimate(1, centre, coarse, model).any()  # stride 1 is exact


def test_dense_checks_are_trusted_where_the_stride_samples_the_output_well():
    """A 13x13 Gaussian of sigma 2 folds back 5% of its response energy at stride 4 and 47%
    at stride 8 (kernels.fold_back): a dense recheck replaces the coarse surplus at 2 and 4."""
    k = kernels.gaussian(13, 2.0)
    assert kernels.fold_back(k, 4) < error_model.WELL_SAMPLED < kernels.fold_back(k, 8)
    est = error_model.ErrorEstimator.for_kernel(k, [2, 4, 8, 16], "bilinear")
    assert est.well_sampled == {2: True, 4: True, 8: False, 16: False}


def test_a_plan_alone_says_nothing_was_executed(write_tif):
    """``satconv plan`` (and the library's plan_scene) read the scene once and execute
    nothing: the plan's ``read`` must not claim execution decoded it again."""
    path = write_tif(np.arange(64 * 64, dtype=np.float32).reshape(1, 64, 64))
    _, plan = api.plan_scene(path, settings_with(tile_size=32))
    assert plan.details["read"] == planning.READ_PLAN_ONLY
    assert "execut" not in plan.details["read"].replace("nothing executed", "")
    summary = satconv.plan(str(path), {"tile_size": 32}).summary
    assert summary["read"] == planning.READ_PLAN_ONLY
