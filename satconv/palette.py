"""The stride palette: one fixed, colour-blind-safe colour per stride (viridis steps).

Stride 1 (most effort) is the brightest; coarser strides darken; 0 (skipped) is transparent.
The same colours go into the stride map's colour table (what QGIS and other GIS show) and into
the quicklook's overlay and legend, so both show the same picture. Viridis keeps its order in
lightness alone, so the strides stay apart for every kind of colour vision and in grey print.

The error map of a quicklook uses a second fixed ramp (cividis steps: blue to yellow, also safe
for colour-blind readers), so it is never confused with strides.
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

#: Colour of a stride-map value that is not a known stride (a hand-edited plan).
UNKNOWN_COLOUR: tuple[int, int, int, int] = (128, 128, 128, 255)

#: Error ramp for quicklooks, low to high (cividis at 0, 1/4, 1/2, 3/4, 1).
ERROR_RAMP: tuple[tuple[int, int, int], ...] = (
    (0, 34, 78),
    (61, 77, 110),
    (125, 124, 120),
    (190, 175, 111),
    (254, 232, 56),
)


def stride_colour(stride: int) -> tuple[int, int, int, int]:
    """RGBA of a stride-map value: its stride colour, transparent for 0, grey if unknown."""
    return STRIDE_COLOURS.get(int(stride), UNKNOWN_COLOUR)


def colour_table() -> dict[int, tuple[int, int, int, int]]:
    """A GDAL colour table for the stride map: every uint8 value, unknown strides grey."""
    table = {v: UNKNOWN_COLOUR for v in range(256)}
    table.update(STRIDE_COLOURS)
    return table
