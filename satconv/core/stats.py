"""Per-window statistics the planner uses: variance of valid pixels in square windows.

Inputs come in their own type (integers are not copied to float first); sums are float64.
Window variances take two passes (sums, then squared deviations from each window's mean); the
whole-array variance is centred on the first valid value, so large offsets (uint16 scenes) lose
no precision. The inner loops are branch-free selects over contiguous rows, which LLVM
vectorises.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Reassociation lets the sums vectorise; NaN semantics are kept (invalid NaNs are selected out).
_FAST = {"contract", "reassoc", "nsz", "arcp"}


@njit(cache=True, nogil=True)
def _first_valid(valid: np.ndarray) -> tuple[bool, int, int]:
    """Whether any pixel is valid, and the first one in row-major order."""
    for r in range(valid.shape[0]):
        for c in range(valid.shape[1]):
            if valid[r, c]:
                return True, r, c
    return False, 0, 0


@njit(cache=True, nogil=True, fastmath=_FAST)
def window_moments(x: np.ndarray, valid: np.ndarray, win: int,
                   min_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance of the valid pixels in each non-overlapping ``win`` x
    ``win`` window.

    Windows are anchored at (0, 0); the last row and column of windows may be partial.
    A window with fewer than ``min_count`` valid pixels gets NaN. Two passes per row of
    windows (sums, then squared deviations from each window's mean), each accumulated per
    column so that the inner loops run along contiguous rows.
    """
    h, w = x.shape
    ny = (h + win - 1) // win
    nx = (w + win - 1) // win
    mean = np.full((ny, nx), np.nan)
    out = np.full((ny, nx), np.nan)
    cnt = np.empty(w)
    col = np.empty(w)
    centre = np.empty(w)
    for by in range(ny):
        r0 = by * win
        r1 = min(r0 + win, h)
        cnt[:] = 0.0
        col[:] = 0.0
        for r in range(r0, r1):
            xr = x[r]
            vr = valid[r]
            for c in range(w):
                ok = vr[c]
                v = np.float64(xr[c])
                col[c] += v if ok else 0.0
                cnt[c] += 1.0 if ok else 0.0
        for bx in range(nx):
            c0 = bx * win
            c1 = min(c0 + win, w)
            n = 0.0
            s1 = 0.0
            for c in range(c0, c1):
                n += cnt[c]
                s1 += col[c]
            m = s1 / n if n > 0 else 0.0
            if n > 0 and n >= min_count:
                mean[by, bx] = m
            for c in range(c0, c1):
                centre[c] = m
        col[:] = 0.0
        for r in range(r0, r1):
            xr = x[r]
            vr = valid[r]
            for c in range(w):
                d = np.float64(xr[c]) - centre[c]
                col[c] += d * d if vr[c] else 0.0
        for bx in range(nx):
            if np.isnan(mean[by, bx]):
                continue
            c0 = bx * win
            c1 = min(c0 + win, w)
            n = 0.0
            s2 = 0.0
            for c in range(c0, c1):
                n += cnt[c]
                s2 += col[c]
            out[by, bx] = s2 / n
    return mean, out


@njit(cache=True, nogil=True)
def window_variance(x: np.ndarray, valid: np.ndarray, win: int, min_count: int) -> np.ndarray:
    """Population variance of the valid pixels in each non-overlapping ``win`` x ``win`` window
    (``window_moments``' second half)."""
    return window_moments(x, valid, win, min_count)[1]


@njit(cache=True, nogil=True, fastmath=_FAST)
def valid_range(x: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Minimum and maximum of the valid pixels of ``x`` (NaNs when none is valid)."""
    found, r0, c0 = _first_valid(valid)
    if not found:
        return np.nan, np.nan
    ref = x[r0, c0]
    lo = ref  # compared in the input's own type: integer min/max vectorise
    hi = ref
    for r in range(x.shape[0]):
        xr = x[r]
        vr = valid[r]
        for c in range(x.shape[1]):
            v = xr[c] if vr[c] else ref
            lo = min(lo, v)
            hi = max(hi, v)
    return np.float64(lo), np.float64(hi)


@njit(cache=True, nogil=True, fastmath=_FAST)
def valid_variance(x: np.ndarray, valid: np.ndarray) -> tuple[int, float]:
    """The count and population variance of the valid pixels of ``x`` (0 and NaN if none)."""
    found, r0, c0 = _first_valid(valid)
    if not found:
        return 0, np.nan
    ref = np.float64(x[r0, c0])
    n = 0.0
    s1 = 0.0
    s2 = 0.0
    for r in range(x.shape[0]):
        xr = x[r]
        vr = valid[r]
        for c in range(x.shape[1]):
            ok = vr[c]
            d = np.float64(xr[c]) - ref
            d = d if ok else 0.0
            s1 += d
            s2 += d * d
            n += 1.0 if ok else 0.0
    m = s1 / n
    var = s2 / n - m * m
    return int(n), (var if var > 0.0 else 0.0)
