"""Per-window statistics the planner uses: variance of valid pixels in square windows.

Inputs come in their own type (integers are not copied to float first); sums are float64 and
centred on a reference value so large offsets (uint16 scenes) lose no precision. The inner
loops are branch-free selects over contiguous rows, which LLVM vectorises.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Reassociation lets the sums vectorise; NaN semantics are kept (invalid NaNs are selected out).
_FAST = {"contract", "reassoc", "nsz", "arcp"}


@njit(cache=True, nogil=True)
def _first_valid(x: np.ndarray, valid: np.ndarray, r0: int, r1: int, c0: int,
                 c1: int) -> tuple[bool, float]:
    for r in range(r0, r1):
        for c in range(c0, c1):
            if valid[r, c]:
                return True, float(x[r, c])
    return False, 0.0


@njit(cache=True, nogil=True, fastmath=_FAST)
def _sums(x: np.ndarray, valid: np.ndarray, r0: int, r1: int, c0: int, c1: int,
          ref: float) -> tuple[int, float, float]:
    """Count, sum and sum of squares of ``x - ref`` over the valid pixels of a box."""
    n = 0.0
    s1 = 0.0
    s2 = 0.0
    for r in range(r0, r1):
        xr = x[r]
        vr = valid[r]
        for c in range(c0, c1):
            ok = vr[c]
            d = np.float64(xr[c]) - ref
            d = d if ok else 0.0
            s1 += d
            s2 += d * d
            n += 1.0 if ok else 0.0
    return int(n), s1, s2


@njit(cache=True, nogil=True)
def window_moments(x: np.ndarray, valid: np.ndarray, win: int,
                   min_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance of the valid pixels in each non-overlapping ``win`` x
    ``win`` window.

    Windows are anchored at (0, 0); the last row and column of windows may be partial.
    A window with fewer than ``min_count`` valid pixels gets NaN. Sums are centred on the
    window's first valid value.
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
            found, ref = _first_valid(x, valid, r0, r1, c0, c1)
            if not found:
                continue
            n, s1, s2 = _sums(x, valid, r0, r1, c0, c1, ref)
            if n >= min_count:
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


@njit(cache=True, nogil=True, fastmath=_FAST)
def valid_range(x: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Minimum and maximum of the valid pixels of ``x`` (NaNs when none is valid)."""
    h, w = x.shape
    found, ref = _first_valid(x, valid, 0, h, 0, w)
    if not found:
        return np.nan, np.nan
    lo = ref
    hi = ref
    for r in range(h):
        xr = x[r]
        vr = valid[r]
        for c in range(w):
            v = np.float64(xr[c]) if vr[c] else ref
            lo = v if v < lo else lo
            hi = v if v > hi else hi
    return lo, hi


@njit(cache=True, nogil=True)
def valid_variance(x: np.ndarray, valid: np.ndarray) -> tuple[int, float]:
    """The count and population variance of the valid pixels of ``x`` (0 and NaN if none)."""
    h, w = x.shape
    found, ref = _first_valid(x, valid, 0, h, 0, w)
    if not found:
        return 0, np.nan
    n, s1, s2 = _sums(x, valid, 0, h, 0, w, ref)
    m = s1 / n
    var = s2 / n - m * m
    return n, (var if var > 0.0 else 0.0)
