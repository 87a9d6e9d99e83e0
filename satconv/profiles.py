"""Creation-option presets for the GeoTIFFs satconv writes.

Compression trade-off (float32 output, measured on this project's sample scenes):
DEFLATE with the floating-point predictor (3) gives the smallest files and is readable by every
GDAL; ZSTD (level 1) with the same predictor is about twice as fast to write at a similar size
and needs GDAL >= 2.3 to read; LZW is the most widely readable and the slowest to decode; no
compression is the fastest and the largest. Integer outputs use the horizontal predictor (2).
"""

from __future__ import annotations

import numpy as np

COMPRESSIONS = ("deflate", "zstd", "lzw", "none")


def block_size(tile_size: int) -> int:
    """Internal TIFF block edge: the tile size when GDAL accepts it, else 256."""
    return tile_size if tile_size % 16 == 0 and 16 <= tile_size <= 4096 else 256


def creation_options(dtype: str, compress: str, tile_size: int) -> dict[str, object]:
    """GTiff creation options: tiled, compressed with the right predictor, BigTIFF if needed."""
    size = block_size(tile_size)
    opts: dict[str, object] = {
        "tiled": True,
        "blockxsize": size,
        "blockysize": size,
        "bigtiff": "IF_SAFER",
        "num_threads": "ALL_CPUS",
    }
    if compress != "none":
        opts["compress"] = compress.upper()
        opts["predictor"] = 3 if np.dtype(dtype).kind == "f" else 2
        if compress == "zstd":
            opts["zstd_level"] = 1
    return opts


def stride_map_options() -> dict[str, object]:
    """The stride map is tiny: a single DEFLATE-compressed strip layout is enough."""
    return {"compress": "DEFLATE"}
