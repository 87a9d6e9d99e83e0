"""How large an error striding a tile is predicted to cause.

Model: a tile's pixels behave like a natural image, a random field whose power spectrum falls
as ``1/f^2`` (the well-known statistics of natural scenes), scaled so that its mean windowed
variance equals the tile's statistic ``v``. For such a field, reconstructing ``Y = K * X``
from its stride-``s`` samples has a mean squared error ``v * g_s``, where the *stride gain*
``g_s`` depends only on the kernel, the stride, the reconstruction and the variance window.
The gain is measured once per run on a synthetic field (deterministic: a fixed seed, periodic,
so there are no edge effects) with the same numba reconstruction the executor uses.

What follows from it: a wide Gaussian has a small gain (it removes the frequencies striding
would alias), derivative kernels such as Sobel and Laplacian a large one (they keep exactly
those frequencies), and nearest reconstruction costs more than bilinear. With the ``mean``
statistic the prediction tracks the measured error of real scenes closely; ``max`` and ``p90``
overstate it, which makes them conservative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..core.reconstruct import METHOD_CODES, interpolate
from ..core.stats import window_variance
from ..kernels import fold_back

FIELD_SIZE = 512
SPECTRAL_SLOPE = 2.0
_SEED = 20261126


def _field(n: int) -> np.ndarray:
    """A periodic random field with a ``1/f^SPECTRAL_SLOPE`` power spectrum."""
    rng = np.random.default_rng(_SEED)
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(n)[None, :]
    f2 = fy * fy + fx * fx
    f2[0, 0] = np.inf
    amp = f2 ** (-SPECTRAL_SLOPE / 4)
    spec = amp * (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))
    return np.real(np.fft.ifft2(spec))


def _circular_convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    kh, kw = kernel.shape
    kp = np.zeros_like(x)
    kp[:kh, :kw] = kernel
    kp = np.roll(kp, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.real(np.fft.ifft2(np.fft.fft2(x) * np.fft.fft2(kp)))


@dataclass(frozen=True)
class StrideModel:
    """What the natural-image model predicts for one kernel, reconstruction and stride.

    ``gain``: mean squared error per unit of mean windowed input variance (``g_s``).
    ``centre_ratio``: RMS error over all pixels over the RMS error at the cell centres (the
    points halfway between samples in both directions, where interpolation errs most).
    ``half_ratio``: the same over the RMS error at every half-stride point off the sample grid
    (cell centres and edge midpoints).
    ``coarse_ratio``: RMS error at stride ``s`` over the RMS *surplus* at stride ``2s``: the
    difference between the stride-``s`` samples that are not on the ``2s`` grid and what
    interpolating the ``2s`` grid predicts there.
    The two ratios turn surpluses measured on a tile into unbiased estimates of its error.
    """

    gain: float
    centre_ratio: float
    coarse_ratio: float
    half_ratio: float = 1.0


def _reconstruct_at(samples: np.ndarray, pos: np.ndarray, query: np.ndarray,
                    method: str) -> np.ndarray:
    return interpolate(samples, pos, pos, query, query, METHOD_CODES[method])


@lru_cache(maxsize=128)
def _model(kbytes: bytes, shape: tuple[int, int], stride: int, method: str,
           window: int) -> StrideModel:
    kernel = np.frombuffer(kbytes, dtype=np.float64).reshape(shape)
    n = max(FIELD_SIZE, 16 * stride, 4 * max(shape))
    n = -(-n // (2 * stride)) * 2 * stride
    x = _field(n)
    y = _circular_convolve(x, kernel)
    v = window_variance(x, np.ones(x.shape, dtype=np.bool_), window, 2).mean()
    every = np.arange(n, dtype=np.int64)

    def error(s: int) -> np.ndarray:
        pos = np.arange(0, n + 1, s, dtype=np.int64)
        return _reconstruct_at(y[np.ix_(pos % n, pos % n)], pos, every, method) - y

    err = error(stride)
    mse = float(np.mean(err**2))
    half = stride // 2
    centre = float(np.mean(err[half::stride, half::stride] ** 2)) if half else 0.0
    on_half = np.zeros((n, n), dtype=bool)
    if half:
        on_half[::half, ::half] = True
        on_half[::stride, ::stride] = False
    halfway = float(np.mean(err[on_half] ** 2)) if half else 0.0
    coarse = error(2 * stride)
    on_fine = np.zeros((n, n), dtype=bool)
    on_fine[::stride, ::stride] = True
    on_fine[:: 2 * stride, :: 2 * stride] = False
    surplus = float(np.mean(coarse[on_fine] ** 2))
    return StrideModel(
        gain=mse / v,
        centre_ratio=float(np.sqrt(mse / centre)) if centre > 0 else 1.0,
        coarse_ratio=float(np.sqrt(mse / surplus)) if surplus > 0 else 1.0,
        half_ratio=float(np.sqrt(mse / halfway)) if halfway > 0 else 1.0,
    )


def stride_model(kernel: np.ndarray, stride: int, method: str = "bilinear",
                 window: int = 8) -> StrideModel:
    """The model's figures for ``kernel`` at ``stride`` (cached; stride 1 is exact)."""
    if stride == 1:
        return StrideModel(0.0, 1.0, 0.0)
    k = np.ascontiguousarray(kernel, dtype=np.float64)
    return _model(k.tobytes(), k.shape, int(stride), method, int(window))


def stride_gain(kernel: np.ndarray, stride: int, method: str = "bilinear",
                window: int = 8) -> float:
    """Mean squared reconstruction error per unit of mean windowed input variance."""
    return stride_model(kernel, stride, method, window).gain


def output_scale(kernel: np.ndarray) -> float:
    """How much a kernel scales its input's value range: ``|sum K|``, or for zero-sum kernels
    the sum of the positive weights (the response to a step as tall as the range)."""
    k = np.asarray(kernel, dtype=np.float64)
    total = abs(float(k.sum()))
    if total > 1e-12 * float(np.abs(k).sum()):
        return total
    return float(k[k > 0].sum())


def smoothing_width(kernel: np.ndarray) -> float:
    """The side of the box filter that spreads as far as ``kernel`` (the same variance of the
    weights' positions, along its wider axis): about 3.5 sigma for a Gaussian. 0 for a kernel
    with negative weights, which does not average."""
    k = np.asarray(kernel, dtype=np.float64)
    if (k < 0).any() or k.sum() <= 0:
        return 0.0
    w = k / k.sum()
    spread = 0.0
    for axis in range(2):
        pos = np.indices(k.shape)[axis]
        centre = float((w * pos).sum())
        spread = max(spread, float((w * (pos - centre) ** 2).sum()))
    return float(np.sqrt(12.0 * spread + 1.0))


# ---------------------------------------------------------------- estimates from samples

#: Estimates are multiplied by this margin: the surpluses are measured on a sample of the
#: tile's pixels, and an estimate is meant to stay at or above the error it estimates.
SAFETY = 1.1
#: The plan's prediction (window variance x stride gain) counts in full beside the surpluses:
#: it sees every input pixel, so a feature that falls between all samples and checks (small
#: islands, an edge just outside the tile) is not missed. Measured on the reference scenes it
#: scatters least around the measured error of the three, though low by ~10% on the median;
#: the surpluses, closer on the median, scatter more. Taking the largest of the three is what
#: lets the margin stay small.
MODEL_SHARE = 1.0
#: After a dense recheck (``convolve.RECHECK_WITHIN``: hundreds of cell centres in a tile of
#: 128 at stride 4) at a stride that samples the output well (it folds back at most
#: ``WELL_SAMPLED`` of the kernel's response energy, ``kernels.fold_back``), the check samples
#: measure the error where interpolation errs most almost exactly: all the cell centres of a
#: tile estimate its error at 0.92-1.02 times (5th to 95th percentile, world.byte.tif and the
#: sample scene, 13x13 Gaussian of sigma 2 at stride 4, every reconstruction). The estimate is
#: then the larger of their term and the model's, with a smaller margin. The coarse surplus
#: is left out: it is measured a level coarser and scaled by the natural-image ratio, which
#: overstates the error of sharp coastlines by 1.2-1.5 times. Where the stride folds back
#: more (the same kernel at stride 8: 47%) the cell centres alone miss features between them
#: (0.80-0.93 times at the 5th percentile) and every term counts, as without a recheck.
WELL_SAMPLED = 0.1
RECHECKED_SAFETY = 1.05
#: Without check samples (tiles of the variance and budget policies, or of a saved plan) the
#: estimate rests on the coarse surplus and the model alone: both count in full, with a wider
#: margin. (Measured on the reference scenes: at or above the error in over 90% of tiles.)
UNCHECKED_SAFETY = 1.5


@dataclass(frozen=True)
class ErrorEstimator:
    """Turns what a tile's samples say into an estimate of its RMS error, per band.

    Inputs per band: the RMS surplus at the cell centres (refinement checks, halfway between
    samples), the RMS surplus of the samples over the grid of twice the stride (free), and the
    plan's model prediction. Each is turned into an estimate of the error over all pixels with
    the ratios the natural-image model gives for the kernel and the reconstruction
    (``StrideModel``), and the largest counts, times ``SAFETY`` (``UNCHECKED_SAFETY`` for a
    band without check samples). After a dense recheck at a stride that samples the output
    well (``well_sampled``) the check samples and the model count, times
    ``RECHECKED_SAFETY``.
    """

    centre_ratio: dict[int, float]
    coarse_ratio: dict[int, float]
    half_ratio: dict[int, float]
    safety: float = SAFETY
    model_share: float = MODEL_SHARE
    unchecked_safety: float = UNCHECKED_SAFETY
    rechecked_safety: float = RECHECKED_SAFETY
    #: per stride, whether a dense recheck there replaces the coarse surplus
    well_sampled: dict[int, bool] = field(default_factory=dict)

    @classmethod
    def for_kernel(cls, kernel: np.ndarray, strides: list[int], method: str,
                   window: int = 8) -> ErrorEstimator:
        models = {s: stride_model(kernel, s, method, window) for s in strides}
        return cls({s: m.centre_ratio for s, m in models.items()},
                   {s: m.coarse_ratio for s, m in models.items()},
                   {s: m.half_ratio for s, m in models.items()},
                   well_sampled={s: fold_back(kernel, s) <= WELL_SAMPLED for s in strides})

    def estimate(self, stride: int, centre: np.ndarray, coarse: np.ndarray,
                 predicted: np.ndarray | None = None, full: bool = False,
                 rechecked: bool = False) -> np.ndarray:
        """Estimated RMS error per band at ``stride`` (0 at stride 1: exact) from the RMS
        surplus at the check points (``full``: every half-stride point, else cell centres;
        ``rechecked``: a dense lattice of them), the coarse surplus and the model's
        prediction. NaN inputs are ignored; with nothing to go on the estimate is 0."""
        centre = np.asarray(centre, dtype=np.float64)
        if stride == 1:
            return np.zeros(centre.shape)
        checked = np.isfinite(centre)
        dense = checked & (rechecked and self.well_sampled.get(stride, False))
        ratio = (self.half_ratio if full else self.centre_ratio)[stride]
        coarse = np.where(dense, np.nan, np.asarray(coarse, dtype=np.float64))
        parts = [ratio * centre, self.coarse_ratio[stride] * coarse]
        if predicted is not None:
            share = np.where(checked, self.model_share, 1.0)
            parts.append(share * np.asarray(predicted, dtype=np.float64))
        stack = np.stack([np.where(np.isfinite(p), p, 0.0) for p in parts])
        margin = np.where(dense, self.rechecked_safety,
                          np.where(checked, self.safety, self.unchecked_safety))
        return margin * stack.max(axis=0)
