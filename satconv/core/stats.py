"""Per-window statistics the planner uses: variance of valid pixels in square windows."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def window_moments(x: np.ndarray, valid: np.ndarray, win: int,
                   min_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance of the valid pixels in each non-overlapping ``win`` x
    ``win`` window.

    Windows are anchored at (0, 0); the last row and column of windows may be partial.
    A window with fewer than ``min_count`` valid pixels gets NaN. Sums are centred on the
    window's first valid value so large offsets (uint16 scenes) lose no precision.
    """
    h, w = x.shape
    ny = (h + win - 1) // win
    nx = (w + win - 1) // win
    mean = np.full((ny, nx), np.nan)
    out = np.full((ny, nx), np.nan)
    for by in range(ny):
        r0 = by * win
        r1 = min(r0 + win, h)
        for bx in range(nx):
            c0 = bx * win
            c1 = min(c0 + win, w)
            n = 0
            ref = 0.0
            s1 = 0.0
            s2 = 0.0
            for r in range(r0, r1):
                for c in range(c0, c1):
                    if valid[r, c]:
                        v = x[r, c]
                        if n == 0:
                            ref = v
                        d = v - ref
                        s1 += d
                        s2 += d * d
                        n += 1
            if n >= min_count and n > 0:
                m = s1 / n
                var = s2 / n - m * m
                out[by, bx] = var if var > 0.0 else 0.0
                mean[by, bx] = ref + m
    return mean, out


@njit(cache=True, nogil=True)
def window_variance(x: np.ndarray, valid: np.ndarray, win: int, min_count: int) -> np.ndarray:
    """Population variance of the valid pixels in each non-overlapping ``win`` x ``win`` window
    (``window_moments``' second half)."""
    return window_moments(x, valid, win, min_count)[1]
