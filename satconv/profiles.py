"""Creation-option presets for the GeoTIFFs satconv writes.

Compression trade-off (float32 output, measured on this project's sample scenes):
DEFLATE with the floating-point predictor (3) gives small files and is readable by every
GDAL; satconv uses level 5, not GDAL's default 6: on a filtered 3072x3072x3 scene level 5
spends about two thirds of level 6's CPU time for files 1-2 % larger (level 4: 58 % and
4 % larger; level 9: ten times the time for 6 % smaller). ZSTD (level 1) with the same
predictor is about four times as fast to write as DEFLATE 6 and 50-60 % larger, and needs
GDAL >= 2.3 to read; LZW is the most widely readable and the slowest to decode; no
compression is the fastest and the largest. Integer outputs use the horizontal predictor (2).
Writing, not convolving, is what an end-to-end run mostly waits for: pick ZSTD where write
speed matters more than size.
"""

from __future__ import annotations

import numpy as np

COMPRESSIONS = ("deflate", "zstd", "lzw", "none")
DEFLATE_LEVEL = 5
ZSTD_LEVEL = 1


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
            opts["zstd_level"] = ZSTD_LEVEL
        elif compress == "deflate":
            opts["zlevel"] = DEFLATE_LEVEL
    return opts


def stride_map_options() -> dict[str, object]:
    """The stride map is tiny: a single DEFLATE-compressed strip layout is enough."""
    return {"compress": "DEFLATE"}
