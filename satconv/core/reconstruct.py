"""Reconstruction of a full-resolution tile from samples on a (possibly uneven) grid.

Sample positions are tile-local, strictly increasing, start at 0 and end at or beyond the
tile's last pixel. A pixel that is a sample position gets the sample's value exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _linear_weights(pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel 0..n-1: index of the sample at or before it, and the weight of the next."""
    lo = np.zeros(n, dtype=np.int64)
    t = np.zeros(n, dtype=np.float64)
    k = 0
    for p in range(n):
        while k + 1 < pos.shape[0] and pos[k + 1] <= p:
            k += 1
        lo[p] = k
        if pos[k] == p or k + 1 >= pos.shape[0]:
            t[p] = 0.0
        else:
            t[p] = (p - pos[k]) / (pos[k + 1] - pos[k])
    return lo, t


@njit(cache=True, nogil=True)
def bilinear(samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear interpolation of ``samples`` (at ``rpos`` x ``cpos``) onto an h x w tile."""
    rlo, rt = _linear_weights(rpos, h)
    clo, ct = _linear_weights(cpos, w)
    nr = samples.shape[0]
    horiz = np.empty((nr, w), dtype=samples.dtype)
    for i in range(nr):
        for c in range(w):
            k = clo[c]
            f = ct[c]
            v = samples[i, k]
            if f != 0.0:
                v = v + f * (samples[i, k + 1] - v)
            horiz[i, c] = v
    out = np.empty((h, w), dtype=samples.dtype)
    for r in range(h):
        k = rlo[r]
        f = rt[r]
        if f == 0.0:
            for c in range(w):
                out[r, c] = horiz[k, c]
        else:
            for c in range(w):
                a = horiz[k, c]
                out[r, c] = a + f * (horiz[k + 1, c] - a)
    return out


@njit(cache=True, nogil=True)
def _nearest_index(pos: np.ndarray, n: int) -> np.ndarray:
    """Index of the nearest sample for each pixel; a tie goes to the earlier sample."""
    idx = np.zeros(n, dtype=np.int64)
    k = 0
    for p in range(n):
        while k + 1 < pos.shape[0] and pos[k + 1] <= p:
            k += 1
        if k + 1 < pos.shape[0] and (pos[k + 1] - p) < (p - pos[k]):
            idx[p] = k + 1
        else:
            idx[p] = k
    return idx


@njit(cache=True, nogil=True)
def nearest(samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-sample reconstruction of ``samples`` onto an h x w tile."""
    ri = _nearest_index(rpos, h)
    ci = _nearest_index(cpos, w)
    out = np.empty((h, w), dtype=samples.dtype)
    for r in range(h):
        src = samples[ri[r]]
        for c in range(w):
            out[r, c] = src[ci[c]]
    return out


# ------------------------------------------------------------------ separable taps
#
# Every reconstruction is separable: along each axis a pixel is a weighted sum of a few
# samples. ``axis_taps`` gives those samples and weights for any query positions, so the same
# numbers serve a whole tile (``cubic``) or a few check points (``resample``).

NEAREST = 0
LINEAR = 1
CUBIC = 2
METHOD_CODES = {"nearest": NEAREST, "bilinear": LINEAR, "cubic": CUBIC}


@njit(cache=True, nogil=True)
def _tangent(pos: np.ndarray, f: int, coef: np.ndarray, base: int) -> None:
    """Add to ``coef`` (weights of samples ``base..base+3``) the weights of the slope at
    sample ``f``: the derivative of the parabola through it and its two neighbours (one-sided
    at the ends). On an even grid this is the Catmull-Rom tangent ``(f[k+1] - f[k-1]) / 2h``
    inside and Keys' third-order end condition at the ends."""
    n = pos.shape[0]
    if n == 2:
        inv = 1.0 / (pos[1] - pos[0])
        coef[0 - base] -= inv
        coef[1 - base] += inv
        return
    a = min(max(f - 1, 0), n - 3)
    x0, x1, x2 = float(pos[a]), float(pos[a + 1]), float(pos[a + 2])
    x = float(pos[f])
    # derivative at x of the Lagrange parabola through x0, x1, x2
    coef[a - base] += ((x - x1) + (x - x2)) / ((x0 - x1) * (x0 - x2))
    coef[a + 1 - base] += ((x - x0) + (x - x2)) / ((x1 - x0) * (x1 - x2))
    coef[a + 2 - base] += ((x - x0) + (x - x1)) / ((x2 - x0) * (x2 - x1))


@njit(cache=True, nogil=True)
def axis_taps(pos: np.ndarray, query: np.ndarray, method: int) -> tuple[np.ndarray, np.ndarray]:
    """For each query position: four sample indices and their weights along one axis.

    ``pos`` are the sample positions (strictly increasing), ``query`` any positions (outside
    ``[pos[0], pos[-1]]`` the end sample is used). Unused taps have weight 0. ``method``:
    ``NEAREST`` (ties to the earlier sample), ``LINEAR``, or ``CUBIC``: a cubic Hermite
    spline whose slope at each sample is that of the parabola through it and its neighbours.
    On an even grid that is the Catmull-Rom spline (Keys' cubic convolution, a = -1/2) with
    Keys' third-order end condition; on the shorter last cell of an edge tile it stays
    third-order accurate. A query at a sample position gets exactly that sample.
    """
    n = pos.shape[0]
    m = query.shape[0]
    idx = np.zeros((m, 4), dtype=np.int64)
    wts = np.zeros((m, 4), dtype=np.float64)
    coef = np.zeros(4, dtype=np.float64)
    slope = np.zeros(4, dtype=np.float64)
    k = 0
    for q in range(m):
        p = query[q]
        if p < pos[k]:
            k = 0
        while k + 1 < n and pos[k + 1] <= p:
            k += 1
        base = min(max(k - 1, 0), max(n - 4, 0))
        for j in range(4):
            idx[q, j] = min(base + j, n - 1)
        if k + 1 >= n or p <= pos[k]:
            wts[q, k - base] = 1.0
            continue
        h = float(pos[k + 1] - pos[k])
        t = (p - pos[k]) / h
        if method == NEAREST:
            wts[q, k + 1 - base if (pos[k + 1] - p) < (p - pos[k]) else k - base] = 1.0
        elif method == LINEAR or n == 2:
            wts[q, k - base] = 1.0 - t
            wts[q, k + 1 - base] = t
        else:
            t2 = t * t
            t3 = t2 * t
            coef[:] = 0.0
            coef[k - base] += 2.0 * t3 - 3.0 * t2 + 1.0
            coef[k + 1 - base] += -2.0 * t3 + 3.0 * t2
            slope[:] = 0.0
            _tangent(pos, k, slope, base)
            coef += ((t3 - 2.0 * t2 + t) * h) * slope
            slope[:] = 0.0
            _tangent(pos, k + 1, slope, base)
            coef += ((t3 - t2) * h) * slope
            wts[q] = coef
    return idx, wts


@njit(cache=True, nogil=True)
def resample(samples: np.ndarray, ridx: np.ndarray, rw: np.ndarray, cidx: np.ndarray,
             cw: np.ndarray) -> np.ndarray:
    """Apply row taps and column taps (from ``axis_taps``) to a grid of samples.

    Returns ``(len(ridx), len(cidx))``. Zero weights are skipped, so a NaN sample only spoils
    the pixels that use it.
    """
    nr = samples.shape[0]
    nq_r = ridx.shape[0]
    nq_c = cidx.shape[0]
    horiz = np.zeros((nr, nq_c), dtype=np.float64)
    for i in range(nr):
        row = samples[i]
        for c in range(nq_c):
            acc = 0.0
            for j in range(4):
                w = cw[c, j]
                if w != 0.0:
                    acc += w * row[cidx[c, j]]
            horiz[i, c] = acc
    out = np.zeros((nq_r, nq_c), dtype=np.float64)
    for r in range(nq_r):
        for j in range(4):
            w = rw[r, j]
            if w == 0.0:
                continue
            src = horiz[ridx[r, j]]
            for c in range(nq_c):
                out[r, c] += w * src[c]
    return out


@njit(cache=True, nogil=True)
def cubic(samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, h: int, w: int) -> np.ndarray:
    """Cubic (Catmull-Rom) reconstruction of ``samples`` onto an h x w tile."""
    ridx, rw = axis_taps(rpos, np.arange(h).astype(np.float64), CUBIC)
    cidx, cw = axis_taps(cpos, np.arange(w).astype(np.float64), CUBIC)
    return resample(samples, ridx, rw, cidx, cw)
