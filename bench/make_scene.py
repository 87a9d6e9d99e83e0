"""Write a large synthetic uint16 GeoTIFF in row bands, with bounded memory.

Usage: python bench/make_scene.py OUT.tif [--size 20000] [--bands 1]

Smooth "water" on the left, textured "land" with parcels and noise on the right, a nodata
collar along the top and left edges. Used by ``make bench`` and the memory check.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window


def write_scene(path: Path, size: int, bands: int, compress: str = "deflate") -> None:
    """Write a ``size`` x ``size`` scene of ``bands`` uint16 bands, 512 rows at a time."""
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": bands, "dtype": "uint16",
        "crs": "EPSG:32633", "transform": Affine(10, 0, 300000, 0, -10, 6000000),
        "nodata": 0, "tiled": True, "blockxsize": 256, "blockysize": 256,
        "compress": compress, "predictor": 2, "bigtiff": "IF_SAFER",
    }
    rng = np.random.default_rng(7)
    cols = np.arange(size)
    coast = int(size * 0.4)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0 in range(0, size, 512):
            h = min(512, size - r0)
            rows = np.arange(r0, r0 + h)[:, None]
            water = 600 + 40 * np.sin(rows / 900.0) + 30 * np.cos(cols[None, :] / 700.0)
            parcels = ((rows // 97) * 31 + (cols[None, :] // 113) * 17) % 23
            land = 2000 + 120 * parcels + rng.normal(0, 60, (h, size))
            edge = coast + (150 * np.sin(rows / 311.0)).astype(int)
            img = np.where(cols[None, :] < edge, water, land)
            img = np.clip(img, 1, 65535).astype(np.uint16)
            img[:, : size // 50] = 0
            if r0 < size // 50:
                img[: max(0, size // 50 - r0)] = 0
            for b in range(bands):
                dst.write(np.where(img == 0, img, img + np.uint16(50 * b)), b + 1,
                          window=Window(0, r0, size, h))
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--size", type=int, default=20000)
    p.add_argument("--bands", type=int, default=1)
    a = p.parse_args()
    write_scene(a.out, a.size, a.bands)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
