"""Named convolution kernels as arrays, and the facts about them the planner needs.

Every kernel is a 2-D float64 array with odd height and width. Kernels follow
``scipy.ndimage.convolve`` semantics: they are flipped when applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

KERNEL_TYPES = ("gaussian", "box", "sobel_x", "sobel_y", "laplacian", "sharpen", "custom")

_FIXED = {
    "sobel_x": [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
    "sobel_y": [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]],
    "laplacian": [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
    "sharpen": [[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]],
}


def gaussian(size: int, sigma: float) -> np.ndarray:
    """A normalised ``size`` x ``size`` Gaussian (weights sum to 1)."""
    r = size // 2
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    return np.outer(g, g)


def box(size: int) -> np.ndarray:
    """A normalised ``size`` x ``size`` mean filter."""
    return np.full((size, size), 1.0 / (size * size))


def make_kernel(
    kind: str, size: int = 3, sigma: float = 1.0, weights: list[list[float]] | None = None
) -> np.ndarray:
    """Build the kernel array for a kernel type; fixed kernels ignore ``size``."""
    if kind == "gaussian":
        return gaussian(size, sigma)
    if kind == "box":
        return box(size)
    if kind == "custom":
        if weights is None:
            raise ValueError("custom kernel needs weights")
        return np.asarray(weights, dtype=np.float64)
    if kind in _FIXED:
        return np.asarray(_FIXED[kind], dtype=np.float64)
    raise ValueError(f"unknown kernel type {kind!r}")


@dataclass(frozen=True)
class Separable:
    """A rank-1 kernel ``K = outer(column, row)``."""

    column: np.ndarray
    row: np.ndarray


def separate(kernel: np.ndarray, rtol: float = 1e-10) -> Separable | None:
    """Split a rank-1 kernel into a column and a row vector, or return None.

    The product of the returned vectors reproduces ``kernel`` to ``rtol`` of its largest
    weight, so the separable path gives the same result as the direct one within float error.
    """
    k = np.asarray(kernel, dtype=np.float64)
    u, s, vt = np.linalg.svd(k)
    scale = np.abs(k).max()
    if scale == 0 or s.size < 1:
        return None
    col = u[:, 0] * np.sqrt(s[0])
    row = vt[0] * np.sqrt(s[0])
    if np.abs(np.outer(col, row) - k).max() > rtol * scale:
        return None
    return Separable(col, row)



#: ``safe_stride``: the share of a kernel's response energy a stride may fold back.
FOLD_LIMIT = 0.5


def fold_back(kernel: np.ndarray, stride: int, n: int = 1024) -> float:
    """Share of the kernel's frequency-response energy (``|K(f)|^2`` over the whole band, the
    response to white input) outside the band a stride-``stride`` grid can represent
    (``|fx|, |fy| < 1 / (2 * stride)``): what sampling at that stride folds back (aliases).
    Cached per kernel and stride: every plan's error estimator asks."""
    if stride <= 1:
        return 0.0
    k = np.ascontiguousarray(kernel, dtype=np.float64)
    return _fold_back(k.tobytes(), k.shape, int(stride), n)


@lru_cache(maxsize=128)
def _fold_back(kbytes: bytes, shape: tuple[int, int], stride: int, n: int) -> float:
    k = np.frombuffer(kbytes, dtype=np.float64).reshape(shape)
    power = np.abs(np.fft.fft2(k, s=(n, n))) ** 2
    total = power.sum()
    if total == 0:
        return 0.0
    f = np.abs(np.fft.fftfreq(n))
    inside = (f[:, None] < 0.5 / stride) & (f[None, :] < 0.5 / stride)
    return float(power[~inside].sum() / total)


def safe_stride(kernel: np.ndarray, limit: int = 128) -> int:
    """The largest power-of-two stride (up to ``limit``) that folds back at most
    ``FOLD_LIMIT`` of the kernel's response energy: beyond it, striding a textured tile keeps
    less of the filtered signal than it aliases. A Gaussian of sigma s is safe up to about
    4 s (it folds back under 1% up to stride s); derivative kernels (Sobel, Laplacian,
    sharpen) respond mostly at high frequencies and are not safe at any stride above 1."""
    k = np.ascontiguousarray(kernel, dtype=np.float64)
    return _safe_stride(k.tobytes(), k.shape, limit)


@lru_cache(maxsize=32)
def _safe_stride(kbytes: bytes, shape: tuple[int, int], limit: int) -> int:
    kernel = np.frombuffer(kbytes, dtype=np.float64).reshape(shape)
    s = 1
    while 2 * s <= limit and fold_back(kernel, 2 * s) <= FOLD_LIMIT:
        s *= 2
    return s
