"""Independent reference implementations for the satconv tests.

Built only on numpy and scipy: nothing here imports satconv, so a bug in satconv cannot leak
into the expected values. Everything follows SPEC section 1 directly:

- the dense reference is ``scipy.ndimage.convolve`` on the WHOLE image;
- a tile at stride ``s`` samples the global grid (row and column multiples of ``s``) inside the
  tile plus one closing sample (the next grid point, or the image's last pixel);
- the full-resolution tile is the bilinear (or nearest) interpolation of those samples.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
from scipy.interpolate import CubicSpline

BOUNDARY_MODES = ("reflect", "mirror", "nearest", "constant", "wrap")

# numpy.pad names for scipy.ndimage's boundary modes (a second, independent extension oracle).
NUMPY_PAD_MODE = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap"}


# ---------------------------------------------------------------- dense convolution


def dense(x: np.ndarray, kernel: np.ndarray, mode: str = "reflect",
          cval: float = 0.0) -> np.ndarray:
    """``scipy.ndimage.convolve`` of a 2-D image, or of every band of a (bands, h, w) stack."""
    k = np.asarray(kernel, dtype=np.float64)
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        return ndi.convolve(a, k, mode=mode, cval=cval)
    return np.stack([ndi.convolve(b, k, mode=mode, cval=cval) for b in a])


def dense_padded(x: np.ndarray, kernel: np.ndarray, mode: str = "reflect",
                 cval: float = 0.0) -> np.ndarray:
    """The same dense convolution built from ``numpy.pad`` and a sliding window, for images
    smaller than the kernel (where scipy's own extension of a tiny axis is unreliable)."""
    k = np.asarray(kernel, dtype=np.float64)
    ry, rx = k.shape[0] // 2, k.shape[1] // 2
    a = np.asarray(x, dtype=np.float64)
    bands = a[None] if a.ndim == 2 else a
    out = []
    for b in bands:
        if mode == "constant":
            p = np.pad(b, ((ry, ry), (rx, rx)), mode="constant", constant_values=cval)
        else:
            p = np.pad(b, ((ry, ry), (rx, rx)), mode=NUMPY_PAD_MODE[mode])
        win = np.lib.stride_tricks.sliding_window_view(p, k.shape)
        out.append(np.einsum("ijab,ab->ij", win, k[::-1, ::-1]))
    res = np.stack(out)
    return res[0] if a.ndim == 2 else res


def correlate_loop(block: np.ndarray, weights: np.ndarray, rows, cols) -> np.ndarray:
    """``out[i, j] = sum_ab weights[a, b] * block[rows[i] + a, cols[j] + b]``: a plain loop."""
    w = np.asarray(weights, dtype=np.float64)
    kh, kw = w.shape
    out = np.zeros((len(rows), len(cols)))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            out[i, j] = float(np.sum(w * block[r:r + kh, c:c + kw]))
    return out


def correlate_scipy_at(block: np.ndarray, weights: np.ndarray, rows, cols) -> np.ndarray:
    """The same windows through ``scipy.ndimage.correlate``: the value for a window starting
    at ``block[r, c]`` is scipy's output at the window's centre."""
    w = np.asarray(weights, dtype=np.float64)
    ry, rx = w.shape[0] // 2, w.shape[1] // 2
    full = ndi.correlate(np.asarray(block, dtype=np.float64), w, mode="constant", cval=0.0)
    return full[np.ix_(np.asarray(rows) + ry, np.asarray(cols) + rx)]


# ---------------------------------------------------------------- boundary extension


def extended_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Source index of each global index in [lo, hi) on an axis of length ``n``, as scipy
    extends an array (-1 for ``constant``). Obtained from scipy itself: the array
    ``0, 1, ..., n-1`` is correlated with a one-hot kernel that picks the wanted offset."""
    x = np.arange(n, dtype=np.float64)
    out = np.empty(hi - lo, dtype=np.int64)
    for k, i in enumerate(range(lo, hi)):
        if 0 <= i < n:
            out[k] = i
            continue
        p = 0 if i < 0 else n - 1
        d = i - p
        w = np.zeros(2 * abs(d) + 1)
        w[d + abs(d)] = 1.0
        out[k] = int(round(ndi.correlate1d(x, w, mode=mode, cval=-1.0)[p]))
    return out


def extended_index_numpy(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """The same map through ``numpy.pad`` (handles extensions many times the axis length)."""
    before, after = max(0, -lo), max(0, hi - n)
    x = np.arange(n, dtype=np.int64)
    if mode == "constant":
        padded = np.pad(x, (before, after), mode="constant", constant_values=-1)
    else:
        padded = np.pad(x, (before, after), mode=NUMPY_PAD_MODE[mode])
    return padded[lo + before:hi + before]


# ---------------------------------------------------------------- sample grid


def expected_positions(start: int, stop: int, n: int, stride: int) -> np.ndarray:
    """SPEC 1: the grid multiples of ``stride`` in [start, stop), plus the closing sample (next
    grid point, or the image's last pixel) unless the last grid point is the span's end."""
    pos = [p for p in range(start, stop) if p % stride == 0]
    if pos[-1] != stop - 1:
        pos.append(min(pos[-1] + stride, n - 1))
    return np.asarray(pos, dtype=np.int64)


def tiles(height: int, width: int, size: int):
    """(ty, tx, row0, row1, col0, col1) of every tile of a grid anchored at the origin."""
    for ty, r0 in enumerate(range(0, height, size)):
        for tx, c0 in enumerate(range(0, width, size)):
            yield ty, tx, r0, min(r0 + size, height), c0, min(c0 + size, width)


def grid_mask(height: int, width: int, stride: int) -> np.ndarray:
    """True at the global sample grid of ``stride`` (row and column multiples of it)."""
    r = np.arange(height) % stride == 0
    c = np.arange(width) % stride == 0
    return r[:, None] & c[None, :]


def stride_grid_mask(strides: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """True at the grid samples of each tile's own stride (tiles with stride 0 excluded)."""
    m = np.zeros((height, width), dtype=bool)
    for ty, tx, r0, r1, c0, c1 in tiles(height, width, size):
        s = int(strides[ty, tx])
        if s > 0:
            m[r0:r1, c0:c1] = grid_mask(height, width, s)[r0:r1, c0:c1]
    return m


# ---------------------------------------------------------------- reconstruction


def bilinear(samples: np.ndarray, rpos, cpos, h: int, w: int) -> np.ndarray:
    """Separable linear interpolation with ``numpy.interp`` (rows first, then columns)."""
    rpos = np.asarray(rpos, dtype=np.float64)
    cpos = np.asarray(cpos, dtype=np.float64)
    horiz = np.stack([np.interp(np.arange(w), cpos, row) for row in samples])
    return np.stack([np.interp(np.arange(h), rpos, col) for col in horiz.T], axis=1)


def nearest(samples: np.ndarray, rpos, cpos, h: int, w: int) -> np.ndarray:
    """Nearest sample on each axis; a tie goes to the earlier sample."""

    def index(pos, n):
        pos = np.asarray(pos)
        out = []
        for p in range(n):
            d = np.abs(pos - p)
            out.append(int(np.flatnonzero(d == d.min())[0]))
        return np.asarray(out)

    return samples[np.ix_(index(rpos, h), index(cpos, w))]


def _spline_axis(pos: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """scipy's not-a-knot cubic spline along axis 0 (a chord for two samples, a constant for
    one), held at the end samples outside them."""
    x = np.asarray(pos, dtype=np.float64)
    q = np.clip(np.asarray(query, dtype=np.float64), x[0], x[-1])
    if x.size == 1:
        return np.repeat(values[:1], q.size, axis=0)
    if x.size == 2:
        t = ((q - x[0]) / (x[1] - x[0]))[:, None]
        return values[:1] * (1 - t) + values[1:2] * t
    return CubicSpline(x, values, axis=0, bc_type="not-a-knot")(q)


def spline(samples: np.ndarray, rpos, cpos, h: int, w: int) -> np.ndarray:
    """The tensor-product not-a-knot cubic spline through ``samples``, by scipy, on h x w."""
    along_cols = _spline_axis(cpos, np.asarray(samples, dtype=np.float64).T, np.arange(w)).T
    return _spline_axis(rpos, along_cols, np.arange(h))


def strided_tile(dense_img: np.ndarray, r0: int, r1: int, c0: int, c1: int, stride: int,
                 method: str = "bilinear") -> np.ndarray:
    """What a stride-``stride`` tile must hold: the dense values at its samples, interpolated."""
    h, w = dense_img.shape
    rows = expected_positions(r0, r1, h, stride)
    cols = expected_positions(c0, c1, w, stride)
    samples = dense_img[np.ix_(rows, cols)]
    fn = {"bilinear": bilinear, "nearest": nearest, "spline": spline}[method]
    return fn(samples, rows - r0, cols - c0, r1 - r0, c1 - c0)


def strided_image(dense_img: np.ndarray, strides: np.ndarray, size: int,
                  method: str = "bilinear") -> np.ndarray:
    """The full output a plan of per-tile strides must produce from a dense 2-D result."""
    h, w = dense_img.shape
    out = np.full((h, w), np.nan)
    for ty, tx, r0, r1, c0, c1 in tiles(h, w, size):
        s = int(strides[ty, tx])
        if s > 0:
            out[r0:r1, c0:c1] = strided_tile(dense_img, r0, r1, c0, c1, s, method)
    return out


# ---------------------------------------------------------------- statistics


def window_variance(x: np.ndarray, valid: np.ndarray, win: int, min_count: int) -> np.ndarray:
    """Population variance (``numpy.var``) of the valid pixels of each win x win window."""
    h, w = x.shape
    ny, nx = -(-h // win), -(-w // win)
    out = np.full((ny, nx), np.nan)
    for by in range(ny):
        for bx in range(nx):
            sl = (slice(by * win, (by + 1) * win), slice(bx * win, (bx + 1) * win))
            vals = x[sl][valid[sl]]
            if vals.size >= min_count and vals.size > 0:
                out[by, bx] = float(np.var(vals.astype(np.float64)))
    return out


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference over the expected value range (1 when the range is 0)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    span = float(np.nanmax(e) - np.nanmin(e)) or 1.0
    return float(np.nanmax(np.abs(a - e)) / span)


# ---------------------------------------------------------------- normalised convolution


def normalised_dense(x: np.ndarray, valid: np.ndarray, kernel: np.ndarray,
                     mode: str = "reflect", cval: float = 0.0,
                     min_fraction: float = 0.5) -> np.ndarray:
    """Normalised convolution of a 2-D image over its valid pixels, NaN where undefined.

    scipy on ``X*M`` and on ``M`` for the kernel's positive part and the magnitude of its
    negative part: ``sum(K+XM) sum(K+)/sum(K+M) - sum(K-XM) sum(K-)/sum(K-M)``. A pixel is
    NaN when its own pixel is invalid, when the valid pixels carry less than ``min_fraction`` of
    ``sum|K|``, or when a non-empty part has no valid pixel. Outside the image, ``constant``
    pixels are valid and equal ``cval``; other modes extend ``M`` like ``X``.
    """
    k = np.asarray(kernel, dtype=np.float64)
    kp, kn = np.maximum(k, 0.0), np.maximum(-k, 0.0)
    m = np.asarray(valid, dtype=np.float64)
    xm = np.where(valid, np.asarray(x, dtype=np.float64), 0.0)

    def conv(a: np.ndarray, kk: np.ndarray, cv: float) -> np.ndarray:
        return ndi.convolve(a, kk, mode=mode, cval=cv)

    dp, dn = conv(m, kp, 1.0), conv(m, kn, 1.0)
    ok = np.asarray(valid, dtype=bool).copy()
    y = np.zeros(m.shape)
    if kp.sum() > 0:
        y += conv(xm, kp, cval) * kp.sum() / np.where(dp > 0, dp, 1.0)
        ok &= dp > 1e-12 * kp.sum()
    if kn.sum() > 0:
        y -= conv(xm, kn, cval) * kn.sum() / np.where(dn > 0, dn, 1.0)
        ok &= dn > 1e-12 * kn.sum()
    ok &= (dp + dn) >= min_fraction * np.abs(k).sum() * (1 - 1e-9)
    return np.where(ok, y, np.nan)


def near_invalid(valid: np.ndarray, kernel_shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose kernel window (centred) holds an invalid pixel inside the image."""
    bad = (~np.asarray(valid, dtype=bool)).astype(np.uint8)
    return ndi.maximum_filter(bad, size=kernel_shape, mode="constant", cval=0) > 0
