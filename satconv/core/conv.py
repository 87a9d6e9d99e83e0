"""Correlation of a padded block, computed only at requested samples.

A block ``P`` holds the input rows and columns a set of samples needs: the sample whose
window starts at ``P[r, c]`` is ``sum(W[a, b] * P[r + a, c + b])``. Convolution with a kernel
``K`` (scipy's convention) is correlation with ``K`` flipped on both axes; the caller flips.

Sample rows are given as an index array (any positions); sample columns as increasing
positions, computed one run of equal steps at a time so that the inner loop runs over
contiguous or evenly strided memory.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import window_dot

#: Reassociation and contraction let LLVM fuse and vectorise the tap loops; NaN and infinity
#: semantics are kept (no ``nnan``/``ninf``), so these kernels stay exact IEEE on odd data.
FAST = {"contract", "reassoc", "nsz", "arcp"}


# ---------------------------------------------------------------- tap passes
#
# A pass runs once over a row of samples and adds a group of taps: ``acc[j] += w0 * s0[j] +
# ... + w7 * s7[j]`` where ``s0..s7`` are contiguous slices of the source. Loading and storing
# the accumulator once per group instead of once per tap is what makes the loop compute-bound
# rather than load/store-bound (measured: 1.5-2x over one tap per pass). ``init`` makes the
# first pass of a row assign instead of add (no zero fill).

@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _taps8(acc, init, f, o0, o1, o2, o3, o4, o5, o6, o7, w0, w1, w2, w3, w4, w5, w6, w7):
    n = acc.shape[0]
    s0 = f[o0:o0 + n]
    s1 = f[o1:o1 + n]
    s2 = f[o2:o2 + n]
    s3 = f[o3:o3 + n]
    s4 = f[o4:o4 + n]
    s5 = f[o5:o5 + n]
    s6 = f[o6:o6 + n]
    s7 = f[o7:o7 + n]
    if init:
        for j in range(acc.shape[0]):
            acc[j] = ((w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j])
                      + (w4 * s4[j] + w5 * s5[j] + w6 * s6[j] + w7 * s7[j]))
    else:
        for j in range(acc.shape[0]):
            acc[j] += ((w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j])
                       + (w4 * s4[j] + w5 * s5[j] + w6 * s6[j] + w7 * s7[j]))


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _taps9(acc, init, f, o0, o1, o2, o3, o4, o5, o6, o7, o8, w0, w1, w2, w3, w4, w5, w6, w7,
           w8):
    n = acc.shape[0]
    s0 = f[o0:o0 + n]
    s1 = f[o1:o1 + n]
    s2 = f[o2:o2 + n]
    s3 = f[o3:o3 + n]
    s4 = f[o4:o4 + n]
    s5 = f[o5:o5 + n]
    s6 = f[o6:o6 + n]
    s7 = f[o7:o7 + n]
    s8 = f[o8:o8 + n]
    if init:
        for j in range(acc.shape[0]):
            acc[j] = ((w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j])
                      + (w4 * s4[j] + w5 * s5[j] + w6 * s6[j] + w7 * s7[j]) + w8 * s8[j])
    else:
        for j in range(acc.shape[0]):
            acc[j] += ((w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j])
                       + (w4 * s4[j] + w5 * s5[j] + w6 * s6[j] + w7 * s7[j]) + w8 * s8[j])


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _taps4(acc, init, f, o0, o1, o2, o3, w0, w1, w2, w3):
    n = acc.shape[0]
    s0 = f[o0:o0 + n]
    s1 = f[o1:o1 + n]
    s2 = f[o2:o2 + n]
    s3 = f[o3:o3 + n]
    if init:
        for j in range(acc.shape[0]):
            acc[j] = w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j]
    else:
        for j in range(acc.shape[0]):
            acc[j] += w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j]


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _taps2(acc, init, f, o0, o1, w0, w1):
    n = acc.shape[0]
    s0 = f[o0:o0 + n]
    s1 = f[o1:o1 + n]
    if init:
        for j in range(acc.shape[0]):
            acc[j] = w0 * s0[j] + w1 * s1[j]
    else:
        for j in range(acc.shape[0]):
            acc[j] += w0 * s0[j] + w1 * s1[j]


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _taps1(acc, init, f, o0, w0):
    n = acc.shape[0]
    s0 = f[o0:o0 + n]
    if init:
        for j in range(acc.shape[0]):
            acc[j] = w0 * s0[j]
    else:
        for j in range(acc.shape[0]):
            acc[j] += w0 * s0[j]


@njit(cache=True, nogil=True, fastmath=FAST)
def _rows(out, c0, count, f, base, offs, ws):
    """``out[i, c0 + j] = sum_t ws[t] * f[base[i] + offs[t] + j]`` for ``j < count``: the
    taps in groups of 8 (the last one of 9 when 9 remain), 4, 2, 1."""
    nt = offs.shape[0]
    for i in range(out.shape[0]):
        orow = out[i]
        acc = orow[c0:c0 + count]
        bi = base[i]
        t = 0
        init = True
        while t + 8 <= nt:
            if nt - t == 9:  # every odd square kernel ends so: no single-tap pass after it
                o0, o1, o2 = bi + offs[t], bi + offs[t + 1], bi + offs[t + 2]
                o3, o4, o5 = bi + offs[t + 3], bi + offs[t + 4], bi + offs[t + 5]
                o6, o7, o8 = bi + offs[t + 6], bi + offs[t + 7], bi + offs[t + 8]
                _taps9(acc, init, f, o0, o1, o2, o3, o4, o5, o6, o7, o8, ws[t], ws[t + 1],
                       ws[t + 2], ws[t + 3], ws[t + 4], ws[t + 5], ws[t + 6], ws[t + 7],
                       ws[t + 8])
                init = False
                t += 9
                break
            o0, o1, o2, o3 = bi + offs[t], bi + offs[t + 1], bi + offs[t + 2], bi + offs[t + 3]
            o4, o5, o6, o7 = (bi + offs[t + 4], bi + offs[t + 5], bi + offs[t + 6],
                              bi + offs[t + 7])
            _taps8(acc, init, f, o0, o1, o2, o3,
                   o4, o5, o6, o7, ws[t], ws[t + 1],
                   ws[t + 2], ws[t + 3], ws[t + 4], ws[t + 5], ws[t + 6], ws[t + 7])
            init = False
            t += 8
        if t + 4 <= nt:
            o0, o1, o2, o3 = bi + offs[t], bi + offs[t + 1], bi + offs[t + 2], bi + offs[t + 3]
            _taps4(acc, init, f, o0, o1, o2, o3, ws[t],
                   ws[t + 1], ws[t + 2], ws[t + 3])
            init = False
            t += 4
        if t + 2 <= nt:
            o0, o1 = bi + offs[t], bi + offs[t + 1]
            _taps2(acc, init, f, o0, o1, ws[t], ws[t + 1])
            init = False
            t += 2
        if t < nt:
            o0 = bi + offs[t]
            _taps1(acc, init, f, o0, ws[t])
            init = False
        if init:  # no taps
            acc[:] = 0


# ---------------------------------------------------------------- row pairs
#
# Two output rows one source row apart read the same window rows but one: a pass over both
# loads each source slice once and adds it to both accumulators, with the upper row's weight
# (``u``) and the lower row's (``v``, 0 for the upper row's first window row; ``u`` is 0 for
# the lower row's last). Per output pixel that nearly halves the source loads, which bound
# the single-row passes on kernels of more than 9 taps. A weight of 0 adds exactly 0 to a
# finite sum; on a block holding a NaN or an infinity it would not: only blocks the caller
# vouches are finite take these passes.

@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _pair8(a0, a1, init, f, o0, o1, o2, o3, o4, o5, o6, o7, u0, u1, u2, u3, u4, u5, u6, u7,
           v0, v1, v2, v3, v4, v5, v6, v7):
    n = a0.shape[0]
    s0 = f[o0:o0 + n]
    s1 = f[o1:o1 + n]
    s2 = f[o2:o2 + n]
    s3 = f[o3:o3 + n]
    s4 = f[o4:o4 + n]
    s5 = f[o5:o5 + n]
    s6 = f[o6:o6 + n]
    s7 = f[o7:o7 + n]
    if init:
        for j in range(n):
            x0, x1, x2, x3 = s0[j], s1[j], s2[j], s3[j]
            x4, x5, x6, x7 = s4[j], s5[j], s6[j], s7[j]
            a0[j] = ((u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3)
                     + (u4 * x4 + u5 * x5 + u6 * x6 + u7 * x7))
            a1[j] = ((v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3)
                     + (v4 * x4 + v5 * x5 + v6 * x6 + v7 * x7))
    else:
        for j in range(n):
            x0, x1, x2, x3 = s0[j], s1[j], s2[j], s3[j]
            x4, x5, x6, x7 = s4[j], s5[j], s6[j], s7[j]
            a0[j] += ((u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3)
                      + (u4 * x4 + u5 * x5 + u6 * x6 + u7 * x7))
            a1[j] += ((v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3)
                      + (v4 * x4 + v5 * x5 + v6 * x6 + v7 * x7))


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _pair4(a0, a1, init, f, o0, o1, o2, o3, u0, u1, u2, u3, v0, v1, v2, v3):
    n = a0.shape[0]
    s0 = f[o0:o0 + n]
    s1 = f[o1:o1 + n]
    s2 = f[o2:o2 + n]
    s3 = f[o3:o3 + n]
    if init:
        for j in range(n):
            x0, x1, x2, x3 = s0[j], s1[j], s2[j], s3[j]
            a0[j] = u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3
            a1[j] = v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3
    else:
        for j in range(n):
            x0, x1, x2, x3 = s0[j], s1[j], s2[j], s3[j]
            a0[j] += u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3
            a1[j] += v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _pair1(a0, a1, init, f, o0, u0, v0):
    n = a0.shape[0]
    s0 = f[o0:o0 + n]
    if init:
        for j in range(n):
            a0[j] = u0 * s0[j]
            a1[j] = v0 * s0[j]
    else:
        for j in range(n):
            a0[j] += u0 * s0[j]
            a1[j] += v0 * s0[j]


@njit(cache=True, nogil=True, fastmath=FAST)
def _rows_paired(out, c0, count, f, base, offs, ws, kh, kw, pitch):
    """``_rows``, two output rows at a time where they are ``pitch`` (one source row) apart.

    ``offs`` and ``ws`` are row-major over a ``kh`` x ``kw`` window whose rows lie ``pitch``
    apart in ``f``, which must be finite."""
    nu = (kh + 1) * kw
    uoffs = np.empty(nu, dtype=np.int64)
    us = np.zeros(nu, dtype=ws.dtype)
    vs = np.zeros(nu, dtype=ws.dtype)
    for a in range(kh + 1):
        for b in range(kw):
            t = a * kw + b
            uoffs[t] = offs[b] + a * pitch
            if a < kh:
                us[t] = ws[a * kw + b]
            if a > 0:
                vs[t] = ws[(a - 1) * kw + b]
    nr = out.shape[0]
    i = 0
    while i < nr:
        if not (i + 1 < nr and base[i + 1] - base[i] == pitch):
            _rows(out[i:i + 1], c0, count, f, base[i:i + 1], offs, ws)
            i += 1
            continue
        a0 = out[i, c0:c0 + count]
        a1 = out[i + 1, c0:c0 + count]
        bi = base[i]
        t = 0
        init = True
        while t + 8 <= nu:
            _pair8(a0, a1, init, f, bi + uoffs[t], bi + uoffs[t + 1], bi + uoffs[t + 2],
                   bi + uoffs[t + 3], bi + uoffs[t + 4], bi + uoffs[t + 5], bi + uoffs[t + 6],
                   bi + uoffs[t + 7], us[t], us[t + 1], us[t + 2], us[t + 3], us[t + 4],
                   us[t + 5], us[t + 6], us[t + 7], vs[t], vs[t + 1], vs[t + 2], vs[t + 3],
                   vs[t + 4], vs[t + 5], vs[t + 6], vs[t + 7])
            init = False
            t += 8
        if t + 4 <= nu:
            _pair4(a0, a1, init, f, bi + uoffs[t], bi + uoffs[t + 1], bi + uoffs[t + 2],
                   bi + uoffs[t + 3], us[t], us[t + 1], us[t + 2], us[t + 3], vs[t],
                   vs[t + 1], vs[t + 2], vs[t + 3])
            init = False
            t += 4
        while t < nu:
            _pair1(a0, a1, init, f, bi + uoffs[t], us[t], vs[t])
            init = False
            t += 1
        i += 2


# ---------------------------------------------------------------- de-interleaving
#
# At a stride the samples of a row read every ``step``-th source column. The needed part of
# the block is copied once into ``step`` phases, ``ph[p, r, k] = block[r, start + p + k*step]``,
# so that every tap reads a contiguous slice; the copy also subtracts the block's offset. The
# copy loops for steps 2, 4 and 8 (the default strides) have the step as a constant. Steps of 3
# and more with kernels up to 8x8 skip the copy: ``window_dot`` reads each window in place.

@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _copy(d, s, off):
    for k in range(d.shape[0]):
        d[k] = s[k] - off


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _copy2(d, s, off):
    for k in range(d.shape[0]):
        d[k] = s[2 * k] - off


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _copy4(d, s, off):
    for k in range(d.shape[0]):
        d[k] = s[4 * k] - off


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _copy8(d, s, off):
    for k in range(d.shape[0]):
        d[k] = s[8 * k] - off


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _copyn(d, s, step, off):
    for k in range(d.shape[0]):
        d[k] = s[step * k] - off


@njit(cache=True, nogil=True, fastmath=FAST)
def _phases(block, src_rows, start, width, step, nph, off):
    """``out[p, i, k] = block[src_rows[i], start + p + k*step] - off`` for the first ``nph``
    phases (the others are never read), as one flat array with its row length ``m``.

    One phase at a time: a single load and a single store stream per loop, which LLVM
    vectorises (several store streams into one array defeat its alias checks)."""
    nr = src_rows.shape[0]
    w = block.shape[1]
    f = block.reshape(-1)
    m = -(-width // step)
    out = np.empty(nph * nr * m, dtype=block.dtype)
    for i in range(nr):
        row = src_rows[i] * w + start
        for p in range(nph):
            cnt = -(-(width - p) // step)
            d = out[(p * nr + i) * m:(p * nr + i) * m + cnt]
            s = f[row + p:row + p + step * (cnt - 1) + 1]
            if step == 1:
                _copy(d, s, off)
            elif step == 2:
                _copy2(d, s, off)
            elif step == 4:
                _copy4(d, s, off)
            elif step == 8:
                _copy8(d, s, off)
            else:
                _copyn(d, s, step, off)
    return out, m


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _run(out, c0, block, ws, w8, kh, kw, rows, start, step, count, off, shifted, finite):
    """Samples at ``rows`` x ``start + step * arange(count)`` into ``out[:, c0:c0 + count]``;
    ``ws`` the weights flat, ``w8`` as ``window_dot.correlate_strided`` takes them (when
    ``_windowed``)."""
    if step >= 3 and count >= window_dot.GROUP and _windowed(kh, kw):
        # few shared columns: a dot product per sample
        window_dot.correlate_strided(out, c0, block, w8, kh, kw, rows, start, step, count, off)
        return
    nr = rows.shape[0]
    w = block.shape[1]
    nt = kh * kw
    offs = np.empty(nt, dtype=np.int64)
    base = np.empty(nr, dtype=np.int64)
    if step == 1 and not shifted:  # read the block in place
        f = block.reshape(-1)
        pitch = w
        for a in range(kh):
            for b in range(kw):
                offs[a * kw + b] = a * w + b
        for i in range(nr):
            base[i] = rows[i] * w + start
    else:
        # copy the source rows the samples read, once each (a window's rows are consecutive,
        # so the copy of its first row plus ``a`` rows is its row ``a``)
        rmin = rows.min()
        used = np.zeros(rows.max() - rmin + kh, dtype=np.bool_)
        for i in range(nr):
            used[rows[i] - rmin:rows[i] - rmin + kh] = True
        index = np.cumsum(used) - 1
        src_rows = np.flatnonzero(used) + rmin
        nph = min(step, kw)
        f, m = _phases(block, src_rows, start, (count - 1) * step + kw, step, nph, off)
        pitch = m
        finite = finite and shift_stays_finite(block, off)
        ncr = src_rows.shape[0]
        for a in range(kh):
            for b in range(kw):
                offs[a * kw + b] = ((b % step) * ncr + a) * m + b // step
        for i in range(nr):
            base[i] = index[rows[i] - rmin] * m
    if finite and step == 1 and kh > 1 and kh * kw > 9:  # (at 9, one pass per row wins)
        _rows_paired(out, c0, count, f, base, offs, ws, kh, kw, pitch)
    else:
        _rows(out, c0, count, f, base, offs, ws)


@njit(cache=True, nogil=True, inline="always")
def _windowed(kh, kw):
    """Whether ``window_dot`` takes a ``kh`` x ``kw`` kernel."""
    return kh <= window_dot.MAX_ROWS and kw <= window_dot.LANES


@njit(cache=True, nogil=True)
def shift_stays_finite(block: np.ndarray, off: float) -> bool:
    """Whether subtracting ``off`` keeps every finite value of ``block``'s type finite: a
    shift can overflow only when it is at least half an ulp of the type's largest values
    (1e31 in float32)."""
    return abs(off) < np.finfo(block.dtype).max * np.finfo(block.dtype).eps / 4


#: Sample rows at most that ``shift_offset`` looks at.
SHIFT_ROWS = 8


@njit(cache=True, nogil=True, fastmath=FAST)
def shift_offset(block: np.ndarray, rows: np.ndarray) -> float:
    """The offset worth subtracting from a block before its sums: its centre pixel when that
    is larger than the mean absolute deviation from it over the block's ``rows`` (the rows the
    samples' windows start on; at most ``SHIFT_ROWS`` of them, evenly spread), else 0 (also
    for a non-finite centre, or non-finite data in those rows).

    Shifting pays only on offset-heavy data (uint16 reflectance near 10000): there the taps'
    rounding scales with the offset instead of the local variation. Where the centre is no
    larger than the variation, unshifted sums lose at most a factor 2 of precision, and the
    strided core reads such a block in place at stride 1 instead of copying it. One
    vectorised pass in the block's type over those rows decides (a precision choice, not a
    result): on a 256-pixel tile it costs about 0.2 µs over 8 rows (1 µs over 32, 5 µs over
    the whole block), against 7-8 µs for the samples at stride 4.
    """
    b = np.ascontiguousarray(block)
    zero = b.dtype.type(0)
    if b.size == 0 or rows.shape[0] == 0:
        return zero
    off = b[b.shape[0] // 2, b.shape[1] // 2]
    if off == 0 or not np.isfinite(off):
        return zero
    dev = zero
    every = -(-rows.shape[0] // SHIFT_ROWS)
    n = 0
    for i in range(0, rows.shape[0], every):
        r = b[rows[i]]
        for j in range(r.shape[0]):
            dev += abs(r[j] - off)
        n += r.shape[0]
    return off if abs(off) * n > dev else zero


@njit(cache=True, nogil=True, inline="always")
def _run_end(cols, i):
    """Where the run of equal column steps that starts at ``cols[i]`` ends (exclusive); a
    column not followed by a larger one is a run of its own."""
    n = cols.shape[0]
    j = i + 1
    if j < n and cols[j] > cols[i]:
        step = cols[j] - cols[i]
        while j + 1 < n and cols[j + 1] - cols[j] == step:
            j += 1
        j += 1
    return j


@njit(cache=True, nogil=True, fastmath=FAST)
def correlate_samples(block, weights, rows, cols, shift, finite):
    """Direct 2-D correlation at ``rows`` x ``cols`` (any rows; increasing columns, computed
    one run of equal steps at a time), ``(len(rows), len(cols))`` in the block's type.

    ``finite``: the caller vouches that the block holds no NaN or infinity, which lets
    consecutive rows share their passes (faster on kernels of more than 9 taps). Without it
    a NaN or infinity reaches exactly the samples whose windows hold it, IEEE-wise.

    With ``shift`` the block is first shifted by ``shift_offset`` (added back times the sum of
    the weights): the sums then carry only the local variation, so an offset-heavy float32
    scene keeps its precision for the detail that matters. The shift is fused into the copy
    that strided runs make anyway.
    """
    block = np.ascontiguousarray(block)
    kh, kw = weights.shape
    # the weights flat, and (for window_dot) row by row padded with zeros to its lanes: one
    # allocation, as every allocation costs about 0.05 µs against 8 µs for a tile's samples
    lanes = window_dot.LANES
    nw8 = kh * lanes if _windowed(kh, kw) else 0
    buf = np.zeros(kh * kw + nw8, dtype=block.dtype)
    ws = buf[:kh * kw]
    w8 = buf[kh * kw:]
    wsum = 0.0
    for a in range(kh):
        for b in range(kw):
            ws[a * kw + b] = weights[a, b]
            wsum += weights[a, b]
    for a in range(kh if nw8 else 0):  # (a loop of its own: wsum's order stays as it was)
        for b in range(kw):
            w8[a * lanes + b] = ws[a * kw + b]
    out = np.empty((rows.shape[0], cols.shape[0]), dtype=block.dtype)
    if rows.shape[0] == 0 or cols.shape[0] == 0:
        return out
    if kh == 0 or kw == 0:  # no taps: every sum is empty
        out[:] = 0
        return out
    off = shift_offset(block, rows) if shift else block.dtype.type(0)
    shifted = off != 0
    n = cols.shape[0]
    # (not the constant 0: numba would compile the whole core once more for a literal first
    # column, as it does for any literal argument it sees first)
    i = np.int64(0)
    while i < n:
        j = _run_end(cols, i)
        step = cols[i + 1] - cols[i] if j > i + 1 else 1
        _run(out, i, block, ws, w8, kh, kw, rows, cols[i], step, j - i, off, shifted, finite)
        i = j
    if shifted:
        a0 = block.dtype.type(float(off) * wsum)
        for r in range(out.shape[0]):
            for c in range(out.shape[1]):
                out[r, c] += a0
    return out


def correlate_separable_samples(
    block: np.ndarray,
    col_weights: np.ndarray,
    row_weights: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    finite: bool = False,
) -> np.ndarray:
    """Separable correlation (``outer(col_weights, row_weights)``) at ``rows`` x ``cols``
    (increasing), ``(len(rows), len(cols))`` in the block's type: O(kh + kw) work per sample;
    ``finite`` as for ``correlate_samples``.

    A vertical pass computes the sample rows over the columns the horizontal pass reads
    (``separable_columns``), then a horizontal pass computes the sample columns. The two passes
    are separate compiled calls on purpose: fused into one numba function, LLVM stops
    vectorising the second (measured: three times slower). Weights go in as float64, so there
    is one compiled version per block type.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if cols.shape[0] == 0:
        return np.zeros((rows.shape[0], 0), dtype=block.dtype)
    need, at = separable_columns(cols, row_weights.shape[0])
    vert = correlate_samples(block, np.asarray(col_weights, dtype=np.float64).reshape(-1, 1),
                             rows, need, False, finite)
    return correlate_samples(vert, np.asarray(row_weights, dtype=np.float64).reshape(1, -1),
                             np.arange(rows.shape[0], dtype=np.int64), at, False, finite)


@njit(cache=True, nogil=True)
def separable_columns(cols: np.ndarray, kw: int) -> tuple[np.ndarray, np.ndarray]:
    """The block columns a separable pass computes vertically for samples at ``cols``
    (increasing, not empty), and where each sample's window starts among them.

    Each run of equal column steps (``_run_end``, as ``correlate_samples`` splits them) needs
    every column from its first window's start to its last window's end: at steps of up to
    the kernel's width that is every column it reads, and wider steps still run as one
    contiguous vertical pass. Runs share the columns they overlap on.
    """
    n = cols.shape[0]
    lo = cols[0]
    used = np.zeros(cols[n - 1] - lo + kw, dtype=np.bool_)
    i = 0
    while i < n:
        j = _run_end(cols, i)
        used[cols[i] - lo:cols[j - 1] - lo + kw] = True
        i = j
    index = np.cumsum(used) - 1
    return np.flatnonzero(used) + lo, index[cols - lo]


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
