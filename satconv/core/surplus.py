"""Hierarchical surpluses: how far a grid of samples is from what interpolating every other
sample predicts. Arrays in, arrays out."""

from __future__ import annotations

import numpy as np
from numba import njit

from .reconstruct import interpolate


@njit(cache=True, nogil=True)
def _coarse_index(n: int) -> np.ndarray:
    """Indices of the coarse grid among ``n`` samples: 0, 2, 4, ... and always the last."""
    out = np.empty((n + 1) // 2 + 1, dtype=np.int64)
    k = 0
    for i in range(0, n, 2):
        out[k] = i
        k += 1
    if out[k - 1] != n - 1:
        out[k] = n - 1
        k += 1
    return out[:k]


@njit(cache=True, nogil=True)
def coarse_sums(samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, nr: int, nc: int,
                method: int, centre: np.ndarray, served: np.ndarray) -> tuple[float, int]:
    """Sum of squared surpluses of ``samples`` (at ``rpos`` x ``cpos``) over the grid of every
    other sample (indices 0, 2, 4, ... and always the last), and how many points count.

    Only the first ``nr`` rows and ``nc`` columns are scored (those inside the tile), and of
    them only the points off the coarse grid. With masks (``centre``: valid output pixels,
    ``served``: pixels interpolation serves, tile-local; empty arrays = all valid), a point
    counts when its pixel is valid output and adds its surplus only when interpolation would
    serve it (others are computed exactly: no error). NaN samples and predictions add
    nothing. ``method`` is a ``reconstruct`` method code.
    """
    n_r, n_c = samples.shape
    ir = _coarse_index(n_r)
    ic = _coarse_index(n_c)
    on_r = np.zeros(n_r, dtype=np.bool_)
    on_r[ir] = True
    on_c = np.zeros(n_c, dtype=np.bool_)
    on_c[ic] = True
    coarse = np.empty((ir.size, ic.size))
    for a in range(ir.size):
        for b in range(ic.size):
            coarse[a, b] = samples[ir[a], ic[b]]
    predicted = interpolate(coarse, rpos[ir], cpos[ic], rpos[:nr], cpos[:nc], method)
    masked = centre.shape[0] > 0
    total = 0.0
    count = 0
    for r in range(nr):
        for c in range(nc):
            if on_r[r] and on_c[c]:
                continue
            value = samples[r, c]
            if np.isnan(value):
                continue
            if masked and not centre[rpos[r], cpos[c]]:
                continue
            count += 1
            if masked and not served[rpos[r], cpos[c]]:
                continue
            pred = predicted[r, c]
            if np.isnan(pred):
                continue
            d = value - pred
            total += d * d
    return total, count
