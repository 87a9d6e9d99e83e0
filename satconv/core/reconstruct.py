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
