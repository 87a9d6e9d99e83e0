"""Turning computed tiles (NaN = nodata) into output pixels, and summarising them, in one pass.

``encode_float`` and ``encode_int`` write the output type's values with the nodata value where
the result is NaN and move valid values off the nodata value (the rules of
``pipeline.to_output``); ``extents`` counts each band's valid pixels and finds their range.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def encode_float(values: np.ndarray, out: np.ndarray, nodata: float, step: float) -> None:
    """``out = values`` cast, NaN -> ``nodata``, and a valid value within ``step`` of a finite
    ``nodata`` moved ``2 * step`` away from it, towards zero's side of the type's range (twice,
    so that rounding to the output type cannot bring it back within ``step``)."""
    flat_in = values.reshape(-1)
    flat_out = out.reshape(-1)
    moved = nodata + 2 * step if nodata <= 0 else nodata - 2 * step
    for i in range(flat_in.size):
        v = flat_in[i]
        if np.isnan(v):
            flat_out[i] = nodata
        else:
            o = flat_out.dtype.type(v)
            if abs(np.float64(o) - nodata) < step:
                o = flat_out.dtype.type(moved)
            flat_out[i] = o


@njit(cache=True, nogil=True)
def encode_int(values: np.ndarray, out: np.ndarray, lo: float, hi: float, nodata: float,
               has_nodata: bool) -> None:
    """``out`` = ``values`` rounded half to even and clipped to [lo, hi]; NaN -> ``nodata``
    (0 without one); a valid value equal to ``nodata`` moved one unit towards the interior."""
    flat_in = values.reshape(-1)
    flat_out = out.reshape(-1)
    moved = nodata + 1 if nodata < hi else nodata - 1
    for i in range(flat_in.size):
        v = flat_in[i]
        if np.isnan(v):
            flat_out[i] = nodata if has_nodata else 0
        else:
            r = min(max(np.rint(np.float64(v)), lo), hi)
            if has_nodata and r == nodata:
                r = moved
            flat_out[i] = r


@njit(cache=True, nogil=True)
def extents(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per band of ``values`` (bands, h, w): the count of non-NaN pixels, their minimum and
    maximum (NaN when none), and per pixel whether any band holds a value."""
    bands, h, w = values.shape
    count = np.zeros(bands, dtype=np.int64)
    lo = np.full(bands, np.inf)
    hi = np.full(bands, -np.inf)
    anyv = np.zeros((h, w), dtype=np.bool_)
    for b in range(bands):
        n = 0
        bl = np.inf
        bh = -np.inf
        for r in range(h):
            row = values[b, r]
            arow = anyv[r]
            for c in range(w):
                v = row[c]
                if not np.isnan(v):
                    n += 1
                    fv = np.float64(v)
                    bl = fv if fv < bl else bl
                    bh = fv if fv > bh else bh
                    arow[c] = True
        count[b] = n
        if n:
            lo[b] = bl
            hi[b] = bh
        else:
            lo[b] = np.nan
            hi[b] = np.nan
    return count, lo, hi, anyv
