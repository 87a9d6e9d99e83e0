"""Generate the synthetic demo scene for satconv (``sample_data/sample_scene.tif``).

The scene imitates a Sentinel-2 style coastal acquisition: four bands (blue, green, red,
nir), reflectance-like DN values in 0..~10000, UTM zone 33N, 10 m pixels. It is the demo
input for adaptive-stride convolution, so it deliberately mixes content of very different
spatial frequency:

* open water on the left (~40 % of the frame), nearly flat with only a faint large-scale
  gradient -- this should be processed at a coarse stride;
* a sharp, fractal coastline with a thin beach, sharp-edged field parcels with moderate
  fine texture, forest patches, roads and a dense urban patch of small buildings -- this
  needs full resolution;
* a soft-edged cloud with its shadow -- smooth, but lying over textured ground;
* a slanted, slightly irregular nodata collar (value 0) like a real satellite footprint,
  so that nodata handling at tile borders is exercised.

All randomness comes from one fixed seed, so repeated runs write identical pixels. Only
numpy and rasterio are needed::

    python sample_data/make_sample.py [OUTPUT] [--width W --height H]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

SEED = 20_240_611
DEFAULT_WIDTH = 2560
DEFAULT_HEIGHT = 2048
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "sample_scene.tif"

EPSG = 32633  # WGS 84 / UTM zone 33N
ORIGIN_X = 399_960.0  # upper-left corner, metres (a Sentinel-2 tile origin)
ORIGIN_Y = 5_900_040.0
PIXEL_SIZE = 10.0
NODATA = 0
BLOCK = 256
BAND_NAMES = ("blue", "green", "red", "nir")
MAX_DN = 12_000

# Spectra, one row per material: blue, green, red, nir (DN = reflectance * 10000).
WATER = np.array([520, 430, 240, 110], dtype=np.float32)
WATER_GRADIENT = np.array([70, 55, 35, 15], dtype=np.float32)  # DN across the frame
BEACH = np.array([1450, 1650, 1850, 2250], dtype=np.float32)
FOREST = np.array([260, 470, 280, 2500], dtype=np.float32)
ASPHALT = np.array([820, 870, 920, 1100], dtype=np.float32)
TRACK = np.array([950, 1150, 1350, 1800], dtype=np.float32)
CLOUD = np.array([5600, 5450, 5350, 5500], dtype=np.float32)

# Field classes: green crop, ripe crop, bare soil, grassland, stubble.
FIELD_SPECTRA = np.array(
    [
        [320, 640, 380, 3600],
        [620, 920, 1150, 2600],
        [880, 1180, 1480, 2050],
        [420, 720, 560, 2900],
        [750, 1000, 1200, 2300],
    ],
    dtype=np.float32,
)
FIELD_WEIGHTS = np.array([0.32, 0.18, 0.2, 0.18, 0.12])
FIELD_TEXTURE = np.array([0.025, 0.03, 0.04, 0.02, 0.035], dtype=np.float32)
FOREST_TEXTURE = 0.08

# Roof materials: concrete, red tiles, dark bitumen, bright metal, grey slate.
ROOF_SPECTRA = np.array(
    [
        [1250, 1350, 1450, 1800],
        [700, 820, 1500, 2000],
        [480, 520, 560, 680],
        [2800, 3000, 3100, 3300],
        [900, 950, 1000, 1150],
    ],
    dtype=np.float32,
)
ROOF_WEIGHTS = np.array([0.3, 0.25, 0.2, 0.1, 0.15])


def value_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Return smooth value noise in [-1, 1] whose features are about ``cell`` pixels wide.

    A coarse random lattice is upsampled with smoothstep-weighted bilinear interpolation,
    separably (columns first, then rows), so the cost is O(height * width).
    """
    grid = rng.uniform(-1.0, 1.0, size=(height // cell + 3, width // cell + 3))
    grid = grid.astype(np.float32)
    offset_y, offset_x = rng.uniform(0.0, 1.0, size=2)

    def axis(n: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
        pos = np.arange(n, dtype=np.float64) / cell + offset
        idx = np.floor(pos).astype(np.intp)
        t = pos - idx
        return idx, (t * t * (3.0 - 2.0 * t)).astype(np.float32)

    iy, wy = axis(height, offset_y)
    ix, wx = axis(width, offset_x)
    cols = grid[:, ix] * (1.0 - wx) + grid[:, ix + 1] * wx
    return cols[iy] * (1.0 - wy)[:, None] + cols[iy + 1] * wy[:, None]


def fbm(
    rng: np.random.Generator,
    height: int,
    width: int,
    largest: int,
    smallest: int,
    gain: float = 0.5,
) -> np.ndarray:
    """Return fractal (multi-octave) value noise, normalised to roughly [-1, 1].

    Octaves run from ``largest`` down to ``smallest`` pixels, halving each time; each
    octave's amplitude is ``gain`` times the previous one.
    """
    total = np.zeros((height, width), dtype=np.float32)
    norm = 0.0
    amplitude = 1.0
    cell = largest
    while cell >= smallest:
        total += np.float32(amplitude) * value_noise(rng, height, width, cell)
        norm += amplitude
        amplitude *= gain
        cell //= 2
    return total / np.float32(norm)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Return the binary dilation of ``mask`` by a square of half-size ``radius``."""
    out = mask.copy()
    for k in range(1, radius + 1):
        out[:, k:] |= mask[:, :-k]
        out[:, :-k] |= mask[:, k:]
    grown = out.copy()
    for k in range(1, radius + 1):
        out[k:, :] |= grown[:-k, :]
        out[:-k, :] |= grown[k:, :]
    return out


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Return broadcastable float32 row (y) and column (x) pixel-centre coordinates."""
    yy = np.arange(height, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(width, dtype=np.float32)[None, :] + 0.5
    return yy, xx


def land_mask(rng: np.random.Generator, height: int, width: int, water: float) -> np.ndarray:
    """Return True for land: everything right of a fractal coastline.

    The coast is the level set of a left-to-right ramp plus fractal noise, thresholded at
    the ``water`` quantile so that this fraction of the frame is water.
    """
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    field = ramp + np.float32(0.4) * fbm(rng, height, width, 1024, 2, gain=0.6)
    return field > np.quantile(field, water)


def water_layer(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Return (4, H, W) open-water DN: flat spectrum plus a faint large-scale gradient."""
    yy, xx = pixel_grid(height, width)
    shade = 0.6 * xx / width + 0.4 * (1.0 - yy / height)
    shade = shade + 0.3 * fbm(rng, height, width, 1024, 256)
    return WATER[:, None, None] + WATER_GRADIENT[:, None, None] * shade[None]


def parcel_keys(
    rng: np.random.Generator,
    height: int,
    width: int,
    angle_deg: float,
    strip_px: tuple[int, int],
    length_px: tuple[int, int],
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Cut the frame into rotated strips of fields, each strip split into parcels.

    Returns ``(key, n_keys, u, strip_edges)``: a per-pixel integer parcel key in
    ``[0, n_keys)``, the across-strip coordinate ``u`` and the strip boundaries in ``u``
    (useful to draw field tracks along them).
    """
    yy, xx = pixel_grid(height, width)
    a = np.deg2rad(angle_deg)
    u = xx * np.float32(np.cos(a)) + yy * np.float32(np.sin(a))
    v = yy * np.float32(np.cos(a)) - xx * np.float32(np.sin(a))
    span = float(np.hypot(height, width)) * 2.0 + 1.0
    u_min, v_min = float(u.min()), float(v.min())

    n_strips = int(span / strip_px[0]) + 2
    widths = rng.integers(strip_px[0], strip_px[1], size=n_strips)
    strip_edges = u_min + np.cumsum(widths).astype(np.float32)
    strip = np.searchsorted(strip_edges, u, side="right")

    # Every strip reads its own stretch of one long sequence of parcel lengths.
    n_lengths = int(3 * span / length_px[0]) + 2
    length_edges = np.cumsum(rng.integers(length_px[0], length_px[1], size=n_lengths))
    offsets = rng.uniform(0.0, span, size=n_strips + 1).astype(np.float32)
    row = np.searchsorted(length_edges.astype(np.float32), v - v_min + offsets[strip])
    n_rows = n_lengths + 1
    return strip * n_rows + row, (n_strips + 1) * n_rows, u, strip_edges


def land_layer(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Return (4, H, W) DN for agricultural land: parcels, forest and fine texture.

    Two field systems with different orientation and parcel size are mixed by a smooth
    region mask; forest patches with fractal outlines override them. Each parcel gets its
    own class and brightness, so parcel edges are sharp. Within parcels there is a gentle
    medium-scale variation and quantised pixel-level noise of moderate amplitude.
    """
    key_a, n_a, u_a, edges_a = parcel_keys(rng, height, width, 8.0, (28, 90), (40, 220))
    key_b, n_b, _, _ = parcel_keys(rng, height, width, -31.0, (18, 55), (25, 110))
    # The second system occupies whole parcels of the first, so its outline follows
    # field boundaries instead of cutting through fields.
    selector = fbm(rng, height, width, 768, 96).ravel()
    counts = np.bincount(key_a.ravel(), minlength=n_a)
    mean_sel = np.bincount(key_a.ravel(), weights=selector, minlength=n_a) / np.maximum(counts, 1)
    use_b = mean_sel[key_a] > 0.15

    cls_a = rng.choice(len(FIELD_SPECTRA), size=n_a, p=FIELD_WEIGHTS)
    cls_b = rng.choice(len(FIELD_SPECTRA), size=n_b, p=FIELD_WEIGHTS)
    gain_a = rng.uniform(0.85, 1.15, size=n_a).astype(np.float32)
    gain_b = rng.uniform(0.85, 1.15, size=n_b).astype(np.float32)
    nir_a = rng.uniform(0.9, 1.1, size=n_a).astype(np.float32)
    nir_b = rng.uniform(0.9, 1.1, size=n_b).astype(np.float32)
    cls = np.where(use_b, cls_b[key_b], cls_a[key_a])
    gain = np.where(use_b, gain_b[key_b], gain_a[key_a])
    nir_gain = np.where(use_b, nir_b[key_b], nir_a[key_a])
    del key_a, key_b

    forest = fbm(rng, height, width, 512, 4, gain=0.6) > 0.3
    texture = np.where(forest, np.float32(FOREST_TEXTURE), FIELD_TEXTURE[cls])
    medium = 1.0 + 0.05 * fbm(rng, height, width, 64, 8)
    # Quantised noise (integer levels -3..3) keeps DEFLATE effective.
    noise = np.clip(np.rint(rng.standard_normal((height, width), dtype=np.float32)), -3, 3)
    modulation = gain * medium * (1.0 + texture * noise)

    out = np.empty((4, height, width), dtype=np.float32)
    for b in range(4):
        base = np.where(forest, FOREST[b], FIELD_SPECTRA[cls, b])
        out[b] = base * modulation
    out[3] *= np.where(forest, np.float32(1.0), nir_gain)

    # Unpaved field tracks along a few strip boundaries of the main field system.
    inside = (edges_a > u_a.min()) & (edges_a < u_a.max())
    candidates = np.flatnonzero(inside)
    if candidates.size:
        picks = rng.choice(candidates, size=min(6, candidates.size), replace=False)
        track = np.zeros((height, width), dtype=bool)
        for k in picks:
            track |= np.abs(u_a - edges_a[k]) < 0.6
        track &= ~use_b & ~forest
        out[:, track] = TRACK[:, None]
    return out


def line_mask(
    yy: np.ndarray, xx: np.ndarray, y0: float, x0: float, angle_deg: float, half_width: float
) -> np.ndarray:
    """Return pixels within ``half_width`` of the straight line through (x0, y0)."""
    a = np.deg2rad(angle_deg)
    dist = np.abs((xx - x0) * np.float32(np.sin(a)) - (yy - y0) * np.float32(np.cos(a)))
    return dist <= half_width


def road_mask(
    rng: np.random.Generator, height: int, width: int, hub: tuple[float, float]
) -> np.ndarray:
    """Return a mask of roads: radial roads through the town, a highway and a curved road."""
    yy, xx = pixel_grid(height, width)
    roads = np.zeros((height, width), dtype=bool)
    for angle in rng.uniform(0.0, 180.0, size=3) + np.array([0.0, 60.0, 120.0]):
        roads |= line_mask(yy, xx, hub[0], hub[1], float(angle), 1.0)
    roads |= line_mask(yy, xx, 0.8 * height, 0.7 * width, float(rng.uniform(70, 85)), 1.2)
    period = float(rng.uniform(0.6, 0.9)) * height
    centre = xx - np.float32(0.85 * width)
    wiggle = np.float32(0.04 * width) * np.sin(2.0 * np.pi * yy / np.float32(period))
    roads |= np.abs(centre - wiggle) <= 0.8
    return roads


def urban_patch(
    rng: np.random.Generator, height: int, width: int, centre: tuple[float, float]
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """Build a town: irregular outline, street grid, buildings with shadows, green lots.

    Returns ``(window, mask, values)`` where ``window`` is the bounding box of the town in
    the frame, ``mask`` marks town pixels inside it and ``values`` is (4, h, w) DN.
    """
    cy, cx = centre
    ry, rx = 0.085 * height, 0.075 * width
    y0, y1 = max(int(cy - 1.5 * ry), 0), min(int(cy + 1.5 * ry), height)
    x0, x1 = max(int(cx - 1.5 * rx), 0), min(int(cx + 1.5 * rx), width)
    h, w = y1 - y0, x1 - x0
    yy, xx = pixel_grid(h, w)
    radius = np.hypot((yy + y0 - cy) / ry, (xx + x0 - cx) / rx)
    mask = radius + 0.35 * fbm(rng, h, w, 128, 8) < 1.0

    street = 3

    def blocks(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Split 0..n into blocks of random size; return index, offset and block size."""
        sizes = rng.integers(18, 36, size=n // 18 + 2)
        ends = np.cumsum(sizes)
        idx = np.searchsorted(ends, np.arange(n), side="right")
        return idx, np.arange(n) - (ends - sizes)[idx], sizes[idx]

    by, oy, sy = blocks(h)
    bx, ox, sx = blocks(w)
    by, oy, sy = by[:, None], oy[:, None], sy[:, None]
    is_street = (oy < street) | (ox < street)
    # Lots: each block interior is split 2 x 2, unless the block is one big building.
    iy, ix = oy - street, ox - street
    hy, hx = (sy - street) // 2, (sx - street) // 2
    merged = rng.random((by.max() + 1, bx.max() + 1)) < 0.15
    big = merged[by, bx]
    ly = np.where(big, 0, (iy >= hy).astype(np.intp))
    lx = np.where(big, 0, (ix >= hx).astype(np.intp))
    py = np.where(big, iy, iy - ly * hy)
    px = np.where(big, ix, ix - lx * hx)
    lot_h = np.where(big, sy - street, np.where(ly == 1, sy - street - hy, hy))
    lot_w = np.where(big, sx - street, np.where(lx == 1, sx - street - hx, hx))

    shape = (by.max() + 1, bx.max() + 1, 2, 2)
    inset = rng.integers(1, 4, size=(4, *shape))
    built = rng.random(shape) < 0.85
    roof = rng.choice(len(ROOF_SPECTRA), size=shape, p=ROOF_WEIGHTS)
    roof_gain = rng.uniform(0.88, 1.12, size=shape).astype(np.float32)
    lot = (by, bx, ly, lx)
    building = (
        ~is_street
        & built[lot]
        & (py >= inset[0][lot])
        & (py < lot_h - inset[1][lot])
        & (px >= inset[2][lot])
        & (px < lot_w - inset[3][lot])
    )
    green = ~is_street & ~built[lot]

    # Sun from the south-east (morning overpass): shadows fall to the north-west.
    shadow = np.zeros_like(building)
    for k in (1, 2):
        shadow[:-k, :-k] |= building[k:, k:]
    shadow &= ~building

    values = np.empty((4, h, w), dtype=np.float32)
    noise = np.clip(np.rint(rng.standard_normal((h, w), dtype=np.float32)), -2, 2)
    for b in range(4):
        ground = np.where(green, FIELD_SPECTRA[3, b], ASPHALT[b]) * (1.0 + 0.04 * noise)
        roofs = ROOF_SPECTRA[roof[lot], b] * roof_gain[lot] * (1.0 + 0.015 * noise)
        band = np.where(building, roofs, ground)
        values[b] = np.where(shadow, band * 0.45, band)
    return (slice(y0, y1), slice(x0, x1)), mask, values


def cloud_alpha(
    rng: np.random.Generator, height: int, width: int, centre: tuple[float, float], radius: float
) -> np.ndarray:
    """Return cloud opacity in [0, 1]: an opaque core with soft, lumpy edges."""
    yy, xx = pixel_grid(height, width)
    dist = np.hypot((yy - centre[0]) / np.float32(0.75), xx - centre[1]) / np.float32(radius)
    d = 1.0 - dist + 0.45 * fbm(rng, height, width, 256, 16)
    t = np.clip(d / 0.6, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def footprint(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Return True inside the valid-data footprint: a slanted, slightly skewed quadrilateral.

    Mimics the swath of a sun-synchronous sensor crossing a map-projected tile: the valid
    area is rotated by ~12 degrees, so all four corners of the frame are nodata.
    """
    angle = np.deg2rad(12.0)
    c, s = np.cos(angle), np.sin(angle)
    half = np.array([0.5 * width, 0.5 * height]) * 1.0
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * half
    corners = corners @ np.array([[c, s], [-s, c]])
    corners += np.array([0.5 * width, 0.5 * height])
    corners += rng.uniform(-0.015, 0.015, size=(4, 2)) * np.array([width, height])

    yy, xx = pixel_grid(height, width)
    inside = np.ones((height, width), dtype=bool)
    for i in range(4):
        (ax, ay), (bx, by) = corners[i], corners[(i + 1) % 4]
        cross = (bx - ax) * (yy - ay) - (by - ay) * (xx - ax)
        inside &= cross >= 0  # corners run clockwise on screen (y down)
    return inside


def make_scene(width: int, height: int, seed: int = SEED) -> np.ndarray:
    """Generate the scene as a (4, height, width) uint16 array; nodata pixels are 0."""
    rng = np.random.default_rng(seed)
    land = land_mask(rng, height, width, water=0.40)
    scene = np.where(land[None], land_layer(rng, height, width), water_layer(rng, height, width))

    # A thin sand beach on the land side of the coastline.
    beach = land & dilate(~land, 2)
    scene[:, beach] = BEACH[:, None]

    # A town on the coast, with radial roads leaving it.
    rows = np.flatnonzero(land[int(0.62 * height)])
    coast_x = float(rows[0]) if rows.size else 0.4 * width
    town = (0.62 * height, min(coast_x + 0.06 * width, 0.9 * width))
    roads = road_mask(rng, height, width, town) & land & ~beach
    scene[:, roads] = ASPHALT[:, None] * 1.1
    window, town_mask, town_values = urban_patch(rng, height, width, town)
    town_mask &= land[window]
    scene[(slice(None), *window)] = np.where(
        town_mask[None], town_values, scene[(slice(None), *window)]
    )

    # A cloud near the coast; its shadow falls to the north-west.
    cloud_at = (0.2 * height, 0.53 * width)
    alpha = cloud_alpha(rng, height, width, cloud_at, 0.085 * width)
    dy, dx = int(0.05 * height), int(0.055 * width)
    shade = np.zeros_like(alpha)
    shade[: height - dy, : width - dx] = alpha[dy:, dx:]
    scene *= 1.0 - 0.55 * shade[None]
    puffs = 1.0 + 0.06 * fbm(rng, height, width, 128, 16)
    scene += alpha[None] * (CLOUD[:, None, None] * puffs[None] - scene)

    valid = footprint(rng, height, width)
    out = np.clip(np.rint(scene), 1, MAX_DN).astype(np.uint16)
    out[:, ~valid] = NODATA
    return out


def write_scene(data: np.ndarray, path: Path) -> None:
    """Write ``data`` as a tiled, DEFLATE-compressed, georeferenced GeoTIFF at ``path``."""
    count, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": "uint16",
        "crs": CRS.from_epsg(EPSG),
        "transform": from_origin(ORIGIN_X, ORIGIN_Y, PIXEL_SIZE, PIXEL_SIZE),
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "predictor": 2,
        "interleave": "band",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for band, name in enumerate(BAND_NAMES, start=1):
            dst.set_band_description(band, name)
        dst.colorinterp = [
            ColorInterp.blue,
            ColorInterp.green,
            ColorInterp.red,
            ColorInterp.undefined,
        ]
        dst.update_tags(
            DESCRIPTION="satconv synthetic coastal demo scene (Sentinel-2 like DN)",
            SEED=str(SEED),
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output", nargs="?", type=Path, default=DEFAULT_OUTPUT, help="output GeoTIFF path"
    )
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="columns")
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="rows")
    args = parser.parse_args(argv)
    if args.width < 64 or args.height < 64:
        parser.error("--width and --height must be at least 64")
    return args


def main(argv: list[str] | None = None) -> int:
    """Generate the scene and write it atomically (temporary file, then rename)."""
    args = parse_args(argv)
    start = time.perf_counter()
    data = make_scene(args.width, args.height)
    output: Path = args.output
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        write_scene(data, tmp)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    nodata = float(np.mean(data[0] == NODATA))
    size_mb = output.stat().st_size / 1e6
    elapsed = time.perf_counter() - start
    print(
        f"wrote {output} ({args.width}x{args.height}, 4 bands uint16, EPSG:{EPSG}, "
        f"{nodata:.1%} nodata, {size_mb:.1f} MB) in {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
