"""Correlation of a padded block, computed only at requested samples.

A block ``P`` holds the input rows and columns a set of samples needs: the sample whose
window starts at ``P[r, c]`` is ``sum(W[a, b] * P[r + a, c + b])``. Convolution with a kernel
``K`` (scipy's convention) is correlation with ``K`` flipped on both axes; the caller flips.

Sample rows are given as an index array (any positions); sample columns as a regular grid
``col0 + j * step`` so that the inner loop runs over contiguous or evenly strided memory.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Reassociation and contraction let LLVM fuse and vectorise the tap loops; NaN and infinity
#: semantics are kept (no ``nnan``/``ninf``), so these kernels stay exact IEEE on odd data.
FAST = {"contract", "reassoc", "nsz", "arcp"}


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _axpy(out: np.ndarray, w: float, src: np.ndarray) -> None:
    for j in range(out.shape[0]):
        out[j] += w * src[j]


@njit(cache=True, nogil=True, fastmath=FAST)
def _phases(block: np.ndarray, step: int) -> np.ndarray:
    """De-interleave the columns of ``block`` by ``step``: ``out[p, r, k] = block[r, p + k*step]``
    so a strided read of a row becomes a contiguous one."""
    h, w = block.shape
    n = -(-w // step)
    out = np.zeros((step, h, n), dtype=block.dtype)
    for p in range(min(step, w)):
        m = -(-(w - p) // step)
        for r in range(h):
            dst = out[p, r]
            src = block[r]
            for k in range(m):
                dst[k] = src[p + k * step]
    return out


@njit(cache=True, nogil=True, fastmath=FAST)
def correlate_grid(
    block: np.ndarray, weights: np.ndarray, rows: np.ndarray, col0: int, step: int, ncols: int
) -> np.ndarray:
    """Direct 2-D correlation at ``rows`` x ``col0 + step * arange(ncols)``.

    Returns ``(len(rows), ncols)`` in the block's type. Every tap is one pass over a row of
    samples, which vectorises. At a stride the pass reads every ``step``-th element; for large
    kernels the block is first de-interleaved by ``step`` so the passes read contiguous memory
    (the copy pays for itself once the taps outnumber ``4 * step**2``, as measured).
    """
    kh, kw = weights.shape
    out = np.zeros((rows.shape[0], ncols), dtype=block.dtype)
    if ncols == 0:
        return out
    if step == 1:  # contiguous slices: numba knows the layout and vectorises
        for i in range(rows.shape[0]):
            acc = out[i]
            for a in range(kh):
                src = block[rows[i] + a]
                for b in range(kw):
                    _axpy(acc, weights[a, b], src[col0 + b:col0 + b + ncols])
        return out
    if kh * kw < 4 * step * step:
        last = (ncols - 1) * step + 1
        for i in range(rows.shape[0]):
            acc = out[i]
            for a in range(kh):
                src = block[rows[i] + a]
                for b in range(kw):
                    _axpy(acc, weights[a, b], src[col0 + b:col0 + b + last:step])
        return out
    span = block[:, col0:col0 + (ncols - 1) * step + kw]
    ph = _phases(span, step)
    for i in range(rows.shape[0]):
        acc = out[i]
        for a in range(kh):
            for b in range(kw):
                src = ph[b % step, rows[i] + a]
                k0 = b // step
                _axpy(acc, weights[a, b], src[k0:k0 + ncols])
    return out


def correlate_separable_grid(
    block: np.ndarray,
    col_weights: np.ndarray,
    row_weights: np.ndarray,
    rows: np.ndarray,
    col0: int,
    step: int,
    ncols: int,
) -> np.ndarray:
    """Separable correlation (``outer(col_weights, row_weights)``) at the same samples.

    A vertical pass computes the sample rows over the columns the horizontal pass needs,
    then a horizontal pass computes the sample columns: O(kh + kw) work per sample. The two
    passes are separate compiled calls on purpose: fused into one numba function, LLVM stops
    vectorising the second (measured: three times slower).
    """
    kw = row_weights.shape[0]
    if ncols == 0:
        return np.zeros((rows.shape[0], 0), dtype=block.dtype)
    width = (ncols - 1) * step + kw
    wv = np.ascontiguousarray(col_weights.reshape(-1, 1), dtype=block.dtype)
    wh = np.ascontiguousarray(row_weights.reshape(1, -1), dtype=block.dtype)
    vert = correlate_grid(block, wv, rows, col0, 1, width)
    return correlate_grid(vert, wh, np.arange(rows.shape[0]), 0, step, ncols)


@njit(cache=True, nogil=True)
def _masked_at(block, valid, pos_w, neg_w, r, c, pos_sum, neg_sum, abs_sum, min_fraction):
    """Normalised correlation of the window starting at (r, c); NaN when undefined."""
    kh, kw = pos_w.shape
    num_p = 0.0
    den_p = 0.0
    num_n = 0.0
    den_n = 0.0
    for a in range(kh):
        for b in range(kw):
            if valid[r + a, c + b]:
                x = block[r + a, c + b]
                wp = pos_w[a, b]
                wn = neg_w[a, b]
                num_p += wp * x
                den_p += wp
                num_n += wn * x
                den_n += wn
    if abs_sum == 0.0 or (den_p + den_n) < min_fraction * abs_sum * (1.0 - 1e-9):
        return np.nan
    value = 0.0
    if pos_sum > 0.0:
        if den_p <= 0.0:
            return np.nan
        value += num_p * (pos_sum / den_p)
    if neg_sum > 0.0:
        if den_n <= 0.0:
            return np.nan
        value -= num_n * (neg_sum / den_n)
    return value


@njit(cache=True, nogil=True)
def correlate_masked_points(
    block: np.ndarray,
    valid: np.ndarray,
    pos_w: np.ndarray,
    neg_w: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    min_fraction: float,
) -> np.ndarray:
    """Normalised correlation over valid pixels at the points (rows[i], cols[i]).

    The kernel is split into its positive part ``pos_w`` and the magnitude of its negative part
    ``neg_w``; each part is renormalised by the share of its weight that falls on valid pixels,
    so where every pixel is valid the result equals plain correlation. A point is NaN when the
    valid share of the total absolute weight is below ``min_fraction``, or when a non-empty part
    has no valid pixel at all. (Sample grids go through ``convolve._masked_samples``, which
    applies the same rules with the vectorised kernels.)
    """
    pos_sum = pos_w.sum()
    neg_sum = neg_w.sum()
    abs_sum = pos_sum + neg_sum
    out = np.empty(rows.shape[0], dtype=np.float64)
    for i in range(rows.shape[0]):
        out[i] = _masked_at(block, valid, pos_w, neg_w, rows[i], cols[i], pos_sum, neg_sum,
                            abs_sum, min_fraction)
    return out
