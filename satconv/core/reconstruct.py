"""Reconstruction of a full-resolution tile from samples on a (possibly uneven) grid.

Sample positions are tile-local, strictly increasing, start at 0 and end at or beyond the
tile's last pixel. A pixel that is a sample position gets the sample's value exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _cell(pos: np.ndarray, p: float, k: int) -> int:
    """The sample at or before ``p`` (the first when ``p`` is before it), searching forward
    from ``k``: queries in increasing order cost one pass over ``pos``."""
    if p < pos[k]:
        k = 0
    while k + 1 < pos.shape[0] and pos[k + 1] <= p:
        k += 1
    return k


@njit(cache=True, nogil=True)
def _linear_weights(pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel 0..n-1: index of the sample at or before it, and the weight of the next."""
    lo = np.zeros(n, dtype=np.int64)
    t = np.zeros(n, dtype=np.float64)
    k = 0
    for p in range(n):
        k = _cell(pos, p, k)
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
        k = _cell(pos, p, k)
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
SPLINE = 3
METHOD_CODES = {"nearest": NEAREST, "bilinear": LINEAR, "cubic": CUBIC, "spline": SPLINE}


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
def _hermite_basis(t: float, h: float, w: np.ndarray) -> None:
    """Weights of ``f[k]``, ``f[k+1]``, ``m[k]``, ``m[k+1]`` at ``t`` in a cell of width ``h``."""
    t2 = t * t
    t3 = t2 * t
    w[0] = 2.0 * t3 - 3.0 * t2 + 1.0
    w[1] = -2.0 * t3 + 3.0 * t2
    w[2] = (t3 - 2.0 * t2 + t) * h
    w[3] = (t3 - t2) * h


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
    basis = np.zeros(4, dtype=np.float64)
    k = 0
    for q in range(m):
        p = query[q]
        k = _cell(pos, p, k)
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
            _hermite_basis(t, h, basis)
            coef[:] = 0.0
            coef[k - base] += basis[0]
            coef[k + 1 - base] += basis[1]
            slope[:] = 0.0
            _tangent(pos, k, slope, base)
            coef += basis[2] * slope
            slope[:] = 0.0
            _tangent(pos, k + 1, slope, base)
            coef += basis[3] * slope
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


# ------------------------------------------------------------------ interpolating spline
#
# ``spline`` is the C2 cubic spline through the samples with not-a-knot ends, per line and per
# tile (so tiles stay independent). Unlike the local methods, a pixel's value depends on every
# sample of its line; it is computed as a cubic Hermite spline whose slopes come from one
# tridiagonal solve per line. A NaN sample splits its line: each run of finite samples gets its
# own spline, and only the cells next to the NaN are lost.


@njit(cache=True, nogil=True)
def _hermite_taps(pos: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query: the cell's first sample ``k`` and the weights of ``f[k]``, ``f[k+1]``,
    ``m[k]``, ``m[k+1]`` (values and slopes). A query at or outside a sample gets weight 1 on
    that sample (the end sample outside the grid) and nothing else."""
    n = pos.shape[0]
    nq = query.shape[0]
    cell = np.zeros(nq, dtype=np.int64)
    wts = np.zeros((nq, 4))
    k = 0
    for q in range(nq):
        p = query[q]
        k = _cell(pos, p, k)
        if k + 1 >= n or p <= pos[k]:
            cell[q] = k if k + 1 < n or n == 1 else k - 1
            wts[q, 0 if cell[q] == k else 1] = 1.0
            continue
        h = float(pos[k + 1] - pos[k])
        cell[q] = k
        _hermite_basis((p - pos[k]) / h, h, wts[q])
    return cell, wts


@njit(cache=True, nogil=True)
def _not_a_knot(f: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Slopes at the ``n >= 4`` positions ``x`` of the not-a-knot spline through every column
    of ``f`` (n, L), all finite: one tridiagonal system, factorised once for all columns
    (Thomas), solved row by row across them."""
    n, ncols = f.shape
    h = np.empty(n - 1)
    for i in range(n - 1):
        h[i] = x[i + 1] - x[i]
    lo = np.zeros(n)
    di = np.empty(n)
    up = np.zeros(n)
    s0 = h[0] + h[1]
    s1 = h[n - 2] + h[n - 3]
    di[0] = h[1]
    up[0] = s0
    for i in range(1, n - 1):
        lo[i] = h[i]
        di[i] = 2.0 * (h[i - 1] + h[i])
        up[i] = h[i - 1]
    lo[n - 1] = s1
    di[n - 1] = h[n - 3]
    q = np.zeros(n)
    for i in range(1, n):
        q[i] = lo[i] / di[i - 1]
        di[i] -= q[i] * up[i - 1]
    inv = 1.0 / di
    a0 = (h[0] + 2.0 * s0) * h[1] / s0
    b0 = h[0] * h[0] / s0
    a1 = h[n - 2] * h[n - 2] / s1
    b1 = (2.0 * s1 + h[n - 2]) * h[n - 3] / s1
    r = np.empty((n, ncols))
    for j in range(ncols):
        r[0, j] = a0 * (f[1, j] - f[0, j]) / h[0] + b0 * (f[2, j] - f[1, j]) / h[1]
    for i in range(1, n - 1):
        ca = 3.0 * h[i] / h[i - 1]
        cb = 3.0 * h[i - 1] / h[i]
        for j in range(ncols):
            r[i, j] = ca * (f[i, j] - f[i - 1, j]) + cb * (f[i + 1, j] - f[i, j])
        for j in range(ncols):  # (a loop of its own: it vectorises)
            r[i, j] -= q[i] * r[i - 1, j]
    m = np.empty((n, ncols))
    for j in range(ncols):
        r[n - 1, j] = (a1 * (f[n - 2, j] - f[n - 3, j]) / h[n - 3]
                       + b1 * (f[n - 1, j] - f[n - 2, j]) / h[n - 2])
        r[n - 1, j] -= q[n - 1] * r[n - 2, j]
        m[n - 1, j] = r[n - 1, j] * inv[n - 1]
    for i in range(n - 2, -1, -1):
        for j in range(ncols):
            m[i, j] = (r[i, j] - up[i] * m[i + 1, j]) * inv[i]
    return m


@njit(cache=True, nogil=True)
def _short_run(f: np.ndarray, x: np.ndarray, m: np.ndarray) -> None:
    """Slopes of the interpolant through one to three finite samples: the parabola through
    three (what not-a-knot gives for three), the chord through two, 0 for one."""
    n = f.shape[0]
    coef = np.zeros(n)
    for i in range(n):
        coef[:] = 0.0
        if n > 1:
            _tangent(x, i, coef, 0)
        m[i] = np.sum(coef * f)


@njit(cache=True, nogil=True)
def _slopes_axis0(f: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Spline slopes along axis 0 of ``f`` (n, L), for every column. Columns without NaN
    are solved together; a column with a NaN run by run of finite samples, each its own
    spline (NaN slopes at NaN samples)."""
    n, ncols = f.shape
    broken = np.zeros(ncols, dtype=np.bool_)
    for i in range(n):
        for j in range(ncols):
            if np.isnan(f[i, j]):
                broken[j] = True
    if n >= 4:
        m = _not_a_knot(f, x)
    else:
        m = np.empty((n, ncols))
        broken[:] = True
    line = np.empty(n)
    slope = np.empty(n)
    for j in range(ncols):
        if not broken[j]:
            continue
        for i in range(n):
            line[i] = f[i, j]
        i = 0
        while i < n:
            if np.isnan(line[i]):
                m[i, j] = np.nan
                i += 1
                continue
            k = i + 1
            while k < n and not np.isnan(line[k]):
                k += 1
            if k - i >= 4:
                run = _not_a_knot(line[i:k].copy().reshape((k - i, 1)), x[i:k])
                for t in range(k - i):
                    m[i + t, j] = run[t, 0]
            else:
                _short_run(line[i:k], x[i:k], slope[i:k])
                for t in range(k - i):
                    m[i + t, j] = slope[t + i]
            i = k
    return m


@njit(cache=True, nogil=True)
def _hermite_rows(f: np.ndarray, m: np.ndarray, cell: np.ndarray,
                  wts: np.ndarray) -> np.ndarray:
    """Rows of the Hermite spline of values ``f`` and slopes ``m`` (n, L) at the queries of
    ``_hermite_taps``: ``(len(cell), L)``."""
    out = np.empty((cell.shape[0], f.shape[1]))
    for q in range(cell.shape[0]):
        k = cell[q]
        w = wts[q]
        if w[1] == 0.0 and w[2] == 0.0 and w[3] == 0.0:
            out[q] = f[k]
        elif w[0] == 0.0 and w[2] == 0.0 and w[3] == 0.0:
            out[q] = f[k + 1]
        else:
            for j in range(f.shape[1]):
                out[q, j] = (w[0] * f[k, j] + w[1] * f[k + 1, j]
                             + w[2] * m[k, j] + w[3] * m[k + 1, j])
    return out


@njit(cache=True, nogil=True)
def spline_at(samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, rows: np.ndarray,
              cols: np.ndarray) -> np.ndarray:
    """The tensor-product not-a-knot cubic spline through ``samples`` (at ``rpos`` x
    ``cpos``) at ``rows`` x ``cols``: interpolating (a query at a sample gets it exactly),
    C2 inside a run of finite samples, exact for cubic polynomials on runs of four or more,
    NaN only in cells with a NaN corner. Returns ``(len(rows), len(cols))`` float64."""
    ck, cw = _hermite_taps(cpos, cols.astype(np.float64))
    rk, rw = _hermite_taps(rpos, rows.astype(np.float64))
    across = np.ascontiguousarray(samples.T).astype(np.float64)  # (columns, rows)
    across_slopes = _slopes_axis0(across, cpos.astype(np.float64))
    horiz = np.ascontiguousarray(_hermite_rows(across, across_slopes, ck, cw).T)
    return _hermite_rows(horiz, _slopes_axis0(horiz, rpos.astype(np.float64)), rk, rw)


@njit(cache=True, nogil=True)
def spline(samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, h: int, w: int) -> np.ndarray:
    """Spline reconstruction of ``samples`` onto an h x w tile (see ``spline_at``)."""
    return spline_at(samples, rpos, cpos, np.arange(h), np.arange(w))


@njit(cache=True, nogil=True)
def interpolate(samples: np.ndarray, rpos: np.ndarray, cpos: np.ndarray, rows: np.ndarray,
                cols: np.ndarray, method: int) -> np.ndarray:
    """Any method's reconstruction of ``samples`` at ``rows`` x ``cols`` (float64)."""
    if method == SPLINE:
        return spline_at(samples, rpos, cpos, rows, cols)
    ridx, rw = axis_taps(rpos, rows.astype(np.float64), method)
    cidx, cw = axis_taps(cpos, cols.astype(np.float64), method)
    return resample(samples, ridx, rw, cidx, cw)
