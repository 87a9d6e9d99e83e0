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


@njit(cache=True, nogil=True)
def correlate_grid(
    block: np.ndarray, weights: np.ndarray, rows: np.ndarray, col0: int, step: int, ncols: int
) -> np.ndarray:
    """Direct 2-D correlation at ``rows`` x ``col0 + step * arange(ncols)``.

    Returns a float64 array of shape ``(len(rows), ncols)``. Zero weights are skipped.
    """
    kh, kw = weights.shape
    out = np.zeros((rows.shape[0], ncols), dtype=np.float64)
    for i in range(rows.shape[0]):
        r = rows[i]
        acc = out[i]
        for a in range(kh):
            src = block[r + a]
            for b in range(kw):
                w = weights[a, b]
                if w == 0.0:
                    continue
                base = col0 + b
                if step == 1:
                    for j in range(ncols):
                        acc[j] += w * src[base + j]
                else:
                    for j in range(ncols):
                        acc[j] += w * src[base + j * step]
    return out


@njit(cache=True, nogil=True)
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
    then a horizontal pass computes the sample columns: O(kh + kw) work per sample instead
    of O(kh * kw) when the stride is small.
    """
    kh = col_weights.shape[0]
    kw = row_weights.shape[0]
    width = col0 + (ncols - 1) * step + kw if ncols > 0 else 0
    vert = np.zeros((rows.shape[0], width), dtype=np.float64)
    for i in range(rows.shape[0]):
        r = rows[i]
        acc = vert[i]
        for a in range(kh):
            w = col_weights[a]
            if w == 0.0:
                continue
            src = block[r + a]
            for c in range(col0, width):
                acc[c] += w * src[c]
    out = np.zeros((rows.shape[0], ncols), dtype=np.float64)
    for i in range(rows.shape[0]):
        src = vert[i]
        acc = out[i]
        for b in range(kw):
            w = row_weights[b]
            if w == 0.0:
                continue
            base = col0 + b
            if step == 1:
                for j in range(ncols):
                    acc[j] += w * src[base + j]
            else:
                for j in range(ncols):
                    acc[j] += w * src[base + j * step]
    return out


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
    if abs_sum == 0.0 or (den_p + den_n) < min_fraction * abs_sum:
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
def correlate_masked_grid(
    block: np.ndarray,
    valid: np.ndarray,
    pos_w: np.ndarray,
    neg_w: np.ndarray,
    rows: np.ndarray,
    col0: int,
    step: int,
    ncols: int,
    min_fraction: float,
) -> np.ndarray:
    """Normalised correlation over valid pixels at ``rows`` x ``col0 + step * arange(ncols)``.

    The kernel is split into its positive part ``pos_w`` and the magnitude of its negative part
    ``neg_w``; each part is renormalised by the share of its weight that falls on valid pixels,
    so where every pixel is valid the result equals plain correlation. A sample is NaN when the
    valid share of the total absolute weight is below ``min_fraction``, or when a non-empty part
    has no valid pixel at all.
    """
    pos_sum = pos_w.sum()
    neg_sum = neg_w.sum()
    abs_sum = pos_sum + neg_sum
    out = np.empty((rows.shape[0], ncols), dtype=np.float64)
    for i in range(rows.shape[0]):
        for j in range(ncols):
            out[i, j] = _masked_at(block, valid, pos_w, neg_w, rows[i], col0 + j * step,
                                   pos_sum, neg_sum, abs_sum, min_fraction)
    return out


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
    """Normalised correlation (as ``correlate_masked_grid``) at the points (rows[i], cols[i])."""
    pos_sum = pos_w.sum()
    neg_sum = neg_w.sum()
    abs_sum = pos_sum + neg_sum
    out = np.empty(rows.shape[0], dtype=np.float64)
    for i in range(rows.shape[0]):
        out[i] = _masked_at(block, valid, pos_w, neg_w, rows[i], cols[i], pos_sum, neg_sum,
                            abs_sum, min_fraction)
    return out
