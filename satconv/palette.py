"""The stride palette: one fixed, colour-blind-safe colour per stride (viridis steps).

Stride 1 (most effort) is the brightest; coarser strides darken; 0 (skipped) is transparent.
"""

from __future__ import annotations

STRIDE_COLOURS: dict[int, tuple[int, int, int, int]] = {
    0: (0, 0, 0, 0),
    1: (253, 231, 37, 255),
    2: (122, 209, 81, 255),
    4: (34, 168, 132, 255),
    8: (42, 120, 142, 255),
    16: (65, 68, 135, 255),
    32: (68, 1, 84, 255),
    64: (40, 0, 50, 255),
    128: (20, 0, 25, 255),
}


def colour_table() -> dict[int, tuple[int, int, int, int]]:
    """A GDAL colour table for the stride map: every uint8 value, unknown strides grey."""
    table = {v: (128, 128, 128, 255) for v in range(256)}
    table.update(STRIDE_COLOURS)
    return table
