"""Strided correlation as one short dot product per sample, in explicit 8-lane vectors.

At a stride of 3 or more, a sample's window shares few columns with its neighbour's, and
de-interleaving the block's columns first (``conv._phases``) costs more than the taps it
saves. Here each sample reads its window in place instead: one 8-lane load per kernel row (the
kernel's columns, at most 8, then whatever follows them in the block), multiplied by that
row's weights, which are zero past the kernel, and summed over the rows; eight samples are then
reduced together. A whole row of such groups is one loop, with the weights held in registers.

Stride 4, the default grid's finest strided level, has its own loops: the sample offsets are
constants, one load of 16 lanes holds the windows of samples q and q + 2 (one multiply-add
for both), and two sample rows 4 apart load the window rows they share once. On one 256-pixel
tile with a 7x7 kernel in float32 the 65x65 samples take about 9-10 µs (11 µs shifted; 10
and 13 µs before those three), against about 40 µs de-interleaved and about 100 µs for the
tile's pixels at stride 1.

The columns past a window are multiplied by zero, which is exact for finite pixels, but an
infinity or NaN there would turn the sample into NaN. Such a sample is recognised by its
non-finite result and recomputed over its own window alone, so that it stays finite unless
its window is not.

The vectors are written as LLVM IR (``numba.extending.intrinsic``): numba's loop vectoriser
does not turn a per-sample sum over a handful of columns into vector code. The IR uses only
target-independent instructions (loads, shuffles, floating-point arithmetic), so it compiles
wherever numba does.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

FAST = {"contract", "reassoc", "nsz", "arcp"}

#: Lanes per vector: the widest kernel row this path takes.
LANES = 8
#: Samples computed (and reduced) together.
GROUP = 8
#: Tallest kernel this path takes (one unrolled loop per height).
MAX_ROWS = 8
#: Strides whose loops have the sample offsets as constants (others read them from a register):
#: 4, the default grid's finest strided level, where it saves about 15 %.
CONSTANT_STEPS = (4,)
#: Constant strides whose loops load twice ``LANES`` at a time, two samples' windows: at 4,
#: 6 % faster unshifted and 14 % shifted; at 8 it gained nothing measurable.
WIDE_STEPS = (4,)
#: Source rows between two sample rows that share their loads (``_group_loop``): the default
#: grid's finest strided level, where a 7x7 window shares 3 rows with the next sample row's.
PAIR_ROWS = 4
#: Samples per row of such a pair computed together: the two rows fill one group.
PAIR_GROUP = GROUP // 2

_FLAGS = ("contract", "reassoc", "nsz")


def _splat(builder: ir.IRBuilder, value: ir.Value, vtype: ir.VectorType) -> ir.Value:
    i32 = ir.IntType(32)
    v = builder.insert_element(vtype(ir.Undefined), value, ir.Constant(i32, 0))
    return builder.shuffle_vector(v, vtype(ir.Undefined),
                                  ir.Constant(ir.VectorType(i32, vtype.count), [0] * vtype.count))


def _shuffle(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, lanes: list[int]) -> ir.Value:
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), len(lanes)),
                                                    lanes))


def _reduce(builder: ir.IRBuilder, v: list[ir.Value], order: list[int]) -> ir.Value:
    """Vectors of equal width holding eight runs of partial sums of equal length, run after
    run (the i-th run, over the vectors in turn, belongs to sample ``order[i]``), to one 8-lane
    vector of the eight runs' sums, sample 0 first: a tree of additions, each of two shuffles
    that halve the lanes per run."""
    lanes = v[0].type.count
    n = lanes * len(v) // 8  # lanes a run

    def halve(a: ir.Value, b: ir.Value, n: int) -> ir.Value:
        # a and b hold lanes // n runs of n lanes each: add each run's two halves
        h = n // 2
        lo = [r + i for src in (0, lanes) for r in range(src, src + lanes, n) for i in range(h)]
        return builder.fadd(_shuffle(builder, a, b, lo), _shuffle(builder, a, b,
                                                                   [i + h for i in lo]),
                            flags=_FLAGS)
    while len(v) > 1:
        v = [halve(v[q], v[q + 1], n) for q in range(0, len(v), 2)]
        n //= 2
    x = v[0]
    at = [order.index(s) * n for s in range(8)]  # where each sample's run starts
    if n == 1:
        return x if at == list(range(8)) else _shuffle(builder, x, x, at)
    # a last halving that also puts the runs in sample order (n == 2: 16 lanes)
    return builder.fadd(_shuffle(builder, x, x, at), _shuffle(builder, x, x,
                                                              [i + 1 for i in at]),
                        flags=_FLAGS)


def _join(builder: ir.IRBuilder, done: ir.Block, switch: ir.Instruction, elt: ir.Type,
          results: list[tuple[ir.Value, ir.Block]]) -> ir.Value:
    """At ``done``, the value of whichever case of ``switch`` ran (``results``: each case's
    value and the block it branched from), 0 when none matched."""
    builder.position_at_end(done)
    result = builder.phi(elt)
    result.add_incoming(ir.Constant(elt, 0.0), switch.parent)
    for value, block in results:
        result.add_incoming(value, block)
    return result


def _group_loop(builder: ir.IRBuilder, entry: ir.Block, rows: int, step: ir.Value,
                ptrs: tuple[ir.Value, ir.Value, ir.Value], args: tuple, shifted: bool,
                paired: bool, done: ir.Block) -> ir.Value:
    """Emit, from ``entry``, the loop over ``ngroups`` groups for a kernel ``rows`` high; it
    branches to ``done`` and returns, as seen there, the sum of the samples it wrote: finite
    unless one of them is not (or the sum overflows).

    A group is ``GROUP`` samples of one row, or with ``paired`` ``PAIR_GROUP`` samples on each
    of two rows ``PAIR_ROWS`` apart, whose common window rows are loaded once for both."""
    fdata, wdata, odata = ptrs
    base, wrow, off, oidx, odelta, ngroups = args
    elt = fdata.type.pointee
    vec = ir.VectorType(elt, LANES)
    intp = base.type
    width = PAIR_GROUP if paired else GROUP  # samples a row of a group
    builder.position_at_end(entry)
    weights = [builder.load(builder.bitcast(builder.gep(wdata, [ir.Constant(intp, a * LANES)]),
                                            vec.as_pointer()), align=1) for a in range(rows)]
    # at a constant step that divides LANES, a load of twice LANES holds the windows of
    # samples q and q + span: one multiply-add for both
    span = 0
    if isinstance(step, ir.Constant) and step.constant in WIDE_STEPS:
        span = LANES // step.constant
    load = vec
    starts = list(range(width))  # the samples whose windows start a load
    if span:
        load = ir.VectorType(elt, 2 * LANES)
        weights = [_shuffle(builder, wv, wv, list(range(LANES)) * 2) for wv in weights]
        starts = [q for q in starts if (q // span) % 2 == 0]
    offv = _splat(builder, off, load)
    zero = vec([ir.Constant(elt, 0.0)] * LANES)
    loop = builder.append_basic_block(f"{entry.name}_loop")
    tail = builder.append_basic_block(f"{entry.name}_tail")
    builder.cbranch(builder.icmp_signed(">", ngroups, ir.Constant(intp, 0)), loop, tail)

    builder.position_at_end(loop)
    g = builder.phi(intp)
    b = builder.phi(intp)
    o = builder.phi(intp)
    check = builder.phi(vec)
    rows_out = ((0, 0), (1, PAIR_ROWS)) if paired else ((0, 0),)  # (sample row, its offset)
    acc: list[ir.Value | None] = [None] * (len(starts) * len(rows_out))
    for t in range(rows + rows_out[-1][1]):
        row = builder.add(b, builder.mul(ir.Constant(intp, t), wrow))
        for i, q in enumerate(starts):
            p = builder.gep(fdata, [builder.add(row, builder.mul(step, ir.Constant(intp, q)))])
            x = builder.load(builder.bitcast(p, load.as_pointer()), align=1)
            if shifted:
                x = builder.fsub(x, offv, flags=_FLAGS)
            for lower, shift in rows_out:
                a = t - shift
                if 0 <= a < rows:
                    k = lower * len(starts) + i
                    m = builder.fmul(x, weights[a], flags=_FLAGS)
                    acc[k] = m if acc[k] is None else builder.fadd(acc[k], m, flags=_FLAGS)
    order = [lower * width + s for lower, _ in rows_out for q in starts
             for s in ((q, q + span) if span else (q,))]
    r = _reduce(builder, acc, order)
    if paired:
        half = ir.VectorType(elt, PAIR_GROUP)
        for lanes, at in ((range(PAIR_GROUP), o),
                          (range(PAIR_GROUP, LANES), builder.add(o, odelta))):
            builder.store(_shuffle(builder, r, r, list(lanes)),
                          builder.bitcast(builder.gep(odata, [at]), half.as_pointer()), align=1)
    else:
        builder.store(r, builder.bitcast(builder.gep(odata, [o]), vec.as_pointer()), align=1)
    new_check = builder.fadd(check, r)  # finite unless a sample is not (or the sum overflows)
    g_next = builder.add(g, ir.Constant(intp, 1))
    g.add_incoming(ir.Constant(intp, 0), entry)
    g.add_incoming(g_next, loop)
    b.add_incoming(base, entry)
    b.add_incoming(builder.add(b, builder.mul(step, ir.Constant(intp, width))), loop)
    o.add_incoming(oidx, entry)
    o.add_incoming(builder.add(o, ir.Constant(intp, width)), loop)
    check.add_incoming(zero, entry)
    check.add_incoming(new_check, loop)
    builder.cbranch(builder.icmp_signed("<", g_next, ngroups), loop, tail)

    builder.position_at_end(tail)
    seen = builder.phi(vec)
    seen.add_incoming(zero, entry)
    seen.add_incoming(new_check, loop)
    total = builder.extract_element(seen, ir.Constant(ir.IntType(32), 0))
    for lane in range(1, LANES):
        total = builder.fadd(total, builder.extract_element(seen, ir.Constant(ir.IntType(32),
                                                                              lane)))
    builder.branch(done)
    return total


def _make_groups(shifted: bool, paired: bool):  # noqa: ANN202 - a numba intrinsic
    """The intrinsic computing ``ngroups`` consecutive groups of samples (``_group_loop``) for
    a kernel ``kh`` high (1 to ``MAX_ROWS``; paired, more than ``PAIR_ROWS`` and a ``step`` of
    ``PAIR_ROWS``, the only one compiled for pairs): ``o[oidx + k] =
    sum_{a < kh, b < LANES} w8[a*LANES + b] * (f[base + k*step + a*w_row + b] - off)`` for ``k
    < ngroups * GROUP``; paired, the same for ``k < ngroups * PAIR_GROUP`` and again one row
    of samples lower, from ``base + PAIR_ROWS * w_row`` into ``o[oidx + odelta + k]``
    (``odelta`` is ignored otherwise). Reads ``f[base + k*step + a*w_row : ... + LANES]`` for
    the rows' every sample ``k`` and window row ``a``: the caller keeps that inside ``f``.
    Returns the sum of the samples written, finite unless one of them is not (or the sum
    overflows)."""

    @intrinsic
    def groups(typingctx, kh, f, base, step, w_row, w8, off, o, oidx,  # noqa: ANN001, ANN202
               odelta, ngroups):
        if not (isinstance(f, types.Array) and isinstance(w8, types.Array)
                and isinstance(o, types.Array) and f.dtype == w8.dtype == o.dtype
                and f.dtype in (types.float32, types.float64)):
            return None
        sig = f.dtype(types.intp, f, types.intp, types.intp, types.intp, w8, f.dtype, o,
                      types.intp, types.intp, types.intp)

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            kh, fa, base, step, wrow, wa, off, oa, oidx, odelta, ngroups = args
            ptrs = (context.make_array(signature.args[1])(context, builder, fa).data,
                    context.make_array(signature.args[5])(context, builder, wa).data,
                    context.make_array(signature.args[7])(context, builder, oa).data)
            intp = base.type
            elt = ptrs[0].type.pointee
            # one loop per (height, constant stride or none): key = kh * 16 + stride or 0
            # (pairs: the caller's step is PAIR_ROWS)
            key = builder.mul(kh, ir.Constant(intp, 16))
            for s in (PAIR_ROWS,) if paired else CONSTANT_STEPS:
                key = builder.select(builder.icmp_signed("==", step, ir.Constant(intp, s)),
                                     builder.add(key, ir.Constant(intp, s)), key)
            name = "pairs" if paired else "rows"
            done = builder.append_basic_block(f"{name}_done")
            switch = builder.switch(key, done)
            results = []
            for rows in range(PAIR_ROWS + 1 if paired else 1, MAX_ROWS + 1):
                for s in (PAIR_ROWS,) if paired else (0, *CONSTANT_STEPS):
                    entry = builder.append_basic_block(f"{name}{rows}_step{s}")
                    switch.add_case(ir.Constant(intp, rows * 16 + s), entry)
                    stepv = ir.Constant(intp, s) if s else step
                    total = _group_loop(builder, entry, rows, stepv, ptrs,
                                        (base, wrow, off, oidx, odelta, ngroups), shifted,
                                        paired, done)
                    results.append((total, builder.block))
            return _join(builder, done, switch, elt, results)

        return sig, codegen

    return groups


def _make_single(shifted: bool):  # noqa: ANN202 - a numba intrinsic
    """The intrinsic computing one sample, for a kernel ``kh`` high (1 to ``MAX_ROWS``):
    ``sum_{a < kh, b < LANES} w8[a*LANES + b] * (f[p + a*w_row + b] - off)``, reading
    ``f[p + a*w_row : ... + LANES]`` (the caller keeps that inside ``f``). A row's last few
    samples cost one vector per kernel row this way, where an overlapping group recomputes
    eight."""

    @intrinsic
    def single(typingctx, kh, f, p, w_row, w8, off):  # noqa: ANN001, ANN202
        if not (isinstance(f, types.Array) and isinstance(w8, types.Array)
                and f.dtype == w8.dtype and f.dtype in (types.float32, types.float64)):
            return None
        sig = f.dtype(types.intp, f, types.intp, types.intp, w8, f.dtype)

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            kh, fa, p, wrow, wa, off = args
            fdata = context.make_array(signature.args[1])(context, builder, fa).data
            wdata = context.make_array(signature.args[4])(context, builder, wa).data
            elt = fdata.type.pointee
            vec = ir.VectorType(elt, LANES)
            intp = p.type
            offv = _splat(builder, off, vec)
            done = builder.append_basic_block("single_done")
            switch = builder.switch(kh, done)
            results = []
            for rows in range(1, MAX_ROWS + 1):
                body = builder.append_basic_block(f"single_{rows}_rows")
                switch.add_case(ir.Constant(intp, rows), body)
                builder.position_at_end(body)
                acc = None
                for a in range(rows):
                    wv = builder.load(builder.bitcast(builder.gep(
                        wdata, [ir.Constant(intp, a * LANES)]), vec.as_pointer()), align=1)
                    x = builder.load(builder.bitcast(builder.gep(fdata, [builder.add(
                        p, builder.mul(ir.Constant(intp, a), wrow))]), vec.as_pointer()),
                        align=1)
                    if shifted:
                        x = builder.fsub(x, offv, flags=_FLAGS)
                    m = builder.fmul(x, wv, flags=_FLAGS)
                    acc = m if acc is None else builder.fadd(acc, m, flags=_FLAGS)
                n = LANES
                while n > 1:  # halve the lanes until one holds the sum
                    n //= 2
                    acc = builder.fadd(_shuffle(builder, acc, acc, list(range(n))),
                                       _shuffle(builder, acc, acc, list(range(n, 2 * n))),
                                       flags=_FLAGS)
                results.append((builder.extract_element(acc, ir.Constant(ir.IntType(32), 0)),
                                builder.block))
                builder.branch(done)
            return _join(builder, done, switch, elt, results)

        return sig, codegen

    return single


_plain = _make_groups(False, False)
_shifted = _make_groups(True, False)
_plain_pairs = _make_groups(False, True)
_shifted_pairs = _make_groups(True, True)
_plain_single = _make_single(False)
_shifted_single = _make_single(True)
#: A row's last samples, when no more than this many remain, are computed one by one (see
#: ``_make_single``) rather than as an overlapping group.
SINGLES = 4


@njit(cache=True, nogil=True, fastmath=FAST)
def correlate_strided(out, c0, block, w8, kh, kw, rows, start, step, count, off):
    """``out[i, c0 + j] = sum_{a, b} w8[a*LANES + b] * (block[rows[i] + a, start + j*step +
    b] - off)`` for ``j < count`` and ``b < kw``, reading ``block`` (C-contiguous) in place.

    ``w8`` holds the ``kh`` x ``kw`` weights row by row, each row padded with zeros to
    ``LANES``, in the block's type; ``kh <= MAX_ROWS``, ``kw <= LANES``, and ``out``
    C-contiguous. At a step of ``PAIR_ROWS`` (a tile's grid at stride 4) consecutive sample
    rows as far apart, for a kernel taller than that, go in pairs (``_group_loop``), as far as
    their loads stay inside the block (at other steps pairs cost 7-12 % more than they save on
    5- and 6-row kernels), all pairs first. Then each row's other samples go in groups of
    ``GROUP``, and up to ``SINGLES`` samples left over are computed one by one, more as a last
    group ending at the row's last sample (overlapping the one before). Samples whose vector
    loads would run past the block's end (the last ones of its last rows) are summed over
    their window alone (``_window_sum``), and so are samples the vectors left non-finite.
    Allocates nothing.
    """
    w = block.shape[1]
    f = block.reshape(-1)
    o = out.reshape(-1)
    ncols = out.shape[1]
    shifted = off != 0
    zero = block.dtype.type(0)
    # elements a pair's group reads past its lower row's base, a group past its base, and a
    # single sample past its own
    reach2 = (PAIR_GROUP - 1) * step + (kh - 1) * w + LANES
    reach = (GROUP - 1) * step + (kh - 1) * w + LANES
    reach1 = (kh - 1) * w + LANES
    span = GROUP * step
    last = count - GROUP  # where a row's last group starts (overlapping the one before)
    nrows = rows.shape[0]
    paired = kh > PAIR_ROWS and step == PAIR_ROWS
    # pairs first, in a loop of their own: rows i and i + 1 pair when PAIR_ROWS apart, from
    # the first row on (the loop after this one pairs them the same way)
    i = 0
    while paired and i + 1 < nrows:
        if rows[i + 1] - rows[i] != PAIR_ROWS:
            i += 1
            continue
        n = _pair_groups(rows[i] * w + start, f.shape[0], w, reach2, step, count)
        if n > 0:
            oi = i * ncols + c0
            rb = rows[i] * w + start
            if shifted:
                check = _shifted_pairs(kh, f, rb, step, w, w8, off, o, oi, ncols, n)
            else:
                check = _plain_pairs(kh, f, rb, step, w, w8, off, o, oi, ncols, n)
            if not np.isfinite(check):  # some sample may not be: its own window decides
                for r in range(2):
                    _refinite(f, o, oi + r * ncols, rb + r * PAIR_ROWS * w, n * PAIR_GROUP,
                              step, w, w8, kh, kw, off)
        i += 2
    # then each row's samples after its pair's
    # (one call site per intrinsic and mode: each inlines every loop of its intrinsic)
    i = 0
    while i < nrows:
        nr, j0 = 1, 0
        if paired and i + 1 < nrows and rows[i + 1] - rows[i] == PAIR_ROWS:
            nr = 2
            j0 = PAIR_GROUP * _pair_groups(rows[i] * w + start, f.shape[0], w, reach2, step,
                                           count)
        for r in range(i, i + nr):
            check = zero
            rb = rows[r] * w + start
            oi = r * ncols + c0
            room = f.shape[0] - reach - rb  # the last group base that stays inside the block
            ng = _fitting((count - j0) // GROUP, room - j0 * step, span)
            j = j0 + ng * GROUP
            for part in range(2):  # whole groups, then a last group if worth it and it fits
                first, n = j0, ng
                if part == 1:
                    if not (count - j > SINGLES and 0 <= last < j and last * step <= room):
                        break
                    first, n = last, 1
                    j = count
                if n == 0:
                    continue
                if shifted:
                    check += _shifted(kh, f, rb + first * step, step, w, w8, off, o,
                                      oi + first, 0, n)
                else:
                    check += _plain(kh, f, rb + first * step, step, w, w8, off, o, oi + first,
                                    0, n)
            for k in range(j, count):
                p = rb + k * step
                if p + reach1 > f.shape[0]:
                    s = _window_sum(f, p, w, w8, kh, kw, off)
                elif shifted:
                    s = _shifted_single(kh, f, p, w, w8, off)
                else:
                    s = _plain_single(kh, f, p, w, w8, off)
                o[oi + k] = s
                check += s
            if not np.isfinite(check):  # some sample may not be: its own window decides
                _refinite(f, o, oi, rb, count, step, w, w8, kh, kw, off)
        i += nr


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _refinite(f, o, oi, rb, count, step, w, w8, kh, kw, off):
    """Each non-finite sample of ``o[oi:oi + count]`` (a row from ``f[rb]``) summed again
    over its own window alone (``_window_sum``); the others stay."""
    for k in range(count):
        if not np.isfinite(o[oi + k]):
            o[oi + k] = _window_sum(f, rb + k * step, w, w8, kh, kw, off)


@njit(cache=True, nogil=True, inline="always")
def _pair_groups(rb, size, w, reach2, step, count):
    """How many groups a pair whose upper row's first window starts at ``f[rb]`` computes,
    in a block of ``size`` elements and rows of ``w``: as many as fit in ``count`` samples
    whose loads stay inside the block."""
    return _fitting(count // PAIR_GROUP, size - reach2 - (rb + PAIR_ROWS * w), PAIR_GROUP * step)


@njit(cache=True, nogil=True, inline="always")
def _fitting(n, room, span):
    """``min(n, room // span + 1)``, 0 when ``room < 0``: how many of ``n`` groups ``span``
    apart start no further than ``room`` (``span > 0``). Divides only when the room is short
    (an integer division is as slow as a whole group of samples)."""
    if room < 0:
        return 0
    if (n - 1) * span <= room:
        return n
    return room // span + 1


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _window_sum(f, p, w, w8, kh, kw, off):
    """One sample summed over its own window only (``kh`` rows of ``kw`` pixels from ``p``)."""
    s = f.dtype.type(0)
    for a in range(kh):
        for b in range(kw):
            s += w8[a * LANES + b] * (f[p + a * w + b] - off)
    return s
