"""Quicklook drawing: small arrays in, one PNG picture out (Pillow). No rasters are opened here.

A quicklook shows, side by side, panels of the same size: the input (true colour for three or
more bands, grey for one, each band stretched between its 2nd and 98th percentiles), the
stride map laid over the input, the output, and the estimated error per tile when there is
one; below them a legend (stride, tiles, share of the compute) and a colour bar for the error.

The overlay is fully specified so it can be checked pixel by pixel. Under it, the input panel
is turned to grey (luma ``(299 R + 587 G + 114 B) / 1000``) and lightened into
``[BASE_LOW, BASE_HIGH]``; a tile of stride ``s`` then shows
``OVERLAY_OPACITY * colour(s) + (1 - OVERLAY_OPACITY) * grey`` with the colour of
:mod:`satconv.palette` (the stride map's own colour table). Skipped tiles (stride 0) show the
grey alone. Nodata pixels show a light checkerboard (:func:`checker`) in every panel, unlike
any data (a cloud clipped to white included); under the overlay they keep it as their grey.

Every panel pixel stands for the scene pixel under its centre: column ``j`` of a panel ``w``
pixels wide shows scene column ``floor((j + 0.5) * width / w)``.

The PNG carries, besides the picture, text chunks ``satconv:legend`` (the legend's figures) and
``satconv:layout`` (where each panel and legend cell was drawn), both JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import palette

OVERLAY_OPACITY = 0.55
BASE_LOW, BASE_HIGH = 48, 240
#: The nodata checkerboard: squares of CHECKER pixels, alternately these two greys.
CHECKER = 6
CHECKER_GREYS = (255, 221)
BACKGROUND = (255, 255, 255)
FRAME = (170, 170, 170)
TEXT = (0, 0, 0)
MUTED = (90, 90, 90)
FONT_SIZE = 13
MARGIN = 16
GAP = 12
SWATCH = 14
ROW = 20


# ---------------------------------------------------------------- pixels


def centre_index(n_out: int, n_in: int) -> np.ndarray:
    """For each of ``n_out`` panel pixels along an axis, the scene pixel under its centre."""
    j = np.arange(n_out, dtype=np.float64)
    return np.minimum(np.floor((j + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def stretch(data: np.ndarray, valid: np.ndarray | None, low: float = 2.0,
            high: float = 98.0) -> np.ndarray:
    """``(bands, h, w)`` pixels (one or three bands) to ``(h, w, 3)`` uint8.

    Each band maps its ``low``-``high`` percentiles over the valid pixels to 0-255 (clipped),
    or its minimum and maximum when those percentiles are equal; a constant band is mid grey;
    invalid pixels show :func:`checker`. One band gives grey.
    """
    if data.ndim != 3 or data.shape[0] not in (1, 3):
        raise ValueError("stretch takes one or three bands")
    arr = data.astype(np.float64, copy=False)
    ok = np.isfinite(arr).all(axis=0)
    if valid is not None:
        ok &= valid
    out = np.empty(arr.shape, dtype=np.uint8)
    for b in range(arr.shape[0]):
        band = arr[b]
        vals = band[ok]
        if vals.size == 0:
            out[b] = 0
            continue
        lo, hi = np.percentile(vals, [low, high])
        if hi <= lo:  # the percentiles meet (a mostly constant band): its full range
            lo, hi = vals.min(), vals.max()
        if hi > lo:
            scaled = (np.where(ok, band, lo) - lo) * (255.0 / (hi - lo))
            out[b] = np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)
        else:
            out[b] = 128
    rgb = np.repeat(out, 3, axis=0) if out.shape[0] == 1 else out
    rgb = np.moveaxis(rgb, 0, -1).copy()
    rgb[~ok] = checker(ok.shape)[~ok, None]
    return rgb


def checker(shape: tuple[int, int]) -> np.ndarray:
    """The nodata checkerboard, ``(h, w)`` uint8: pixel (i, j) is ``CHECKER_GREYS[0]`` when
    ``i // CHECKER + j // CHECKER`` is even, else ``CHECKER_GREYS[1]``."""
    i = np.arange(shape[0])[:, None] // CHECKER
    j = np.arange(shape[1])[None, :] // CHECKER
    return np.where((i + j) % 2 == 0, *CHECKER_GREYS).astype(np.uint8)


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of ``(h, w, 3)`` uint8, as float64 in 0-255."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return (299.0 * r + 587.0 * g + 114.0 * b) / 1000.0


def overlay_base(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The grey under an overlay, ``(h, w)`` float64: luma lightened into
    [BASE_LOW, BASE_HIGH]; nodata keeps its checkerboard."""
    grey = BASE_LOW + luma(rgb) * ((BASE_HIGH - BASE_LOW) / 255.0)
    return np.where(valid, grey, checker(valid.shape).astype(np.float64))


def _blend(colours: np.ndarray, alpha: np.ndarray, grey: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    out = a * colours + (1.0 - a) * grey[..., None]
    return np.rint(np.clip(out, 0, 255)).astype(np.uint8)


def stride_overlay(rgb: np.ndarray, valid: np.ndarray, tile_rows: np.ndarray,
                   tile_cols: np.ndarray, strides: np.ndarray) -> np.ndarray:
    """The stride map over a panel ``rgb`` (``(h, w, 3)``): ``tile_rows[i]`` and
    ``tile_cols[j]`` are the tile under panel pixel (i, j), ``strides`` one value per tile."""
    lut = np.array([palette.stride_colour(v) for v in range(256)], dtype=np.float64)
    values = np.clip(strides, 0, 255).astype(np.int64)[np.ix_(tile_rows, tile_cols)]
    rgba = lut[values]
    alpha = np.where(rgba[..., 3] > 0, OVERLAY_OPACITY, 0.0)
    return _blend(rgba[..., :3], alpha, overlay_base(rgb, valid))


def ramp(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``values`` to ``(..., 3)`` float colours on :data:`palette.ERROR_RAMP` (lo to hi)."""
    stops = np.asarray(palette.ERROR_RAMP, dtype=np.float64)
    span = hi - lo if hi > lo else 1.0
    t = np.clip((np.nan_to_num(values, nan=lo) - lo) / span, 0.0, 1.0) * (len(stops) - 1)
    i = np.minimum(np.floor(t).astype(np.int64), len(stops) - 2)
    f = (t - i)[..., None]
    return stops[i] * (1.0 - f) + stops[i + 1] * f


def error_overlay(rgb: np.ndarray, valid: np.ndarray, errors: np.ndarray, lo: float,
                  hi: float) -> np.ndarray:
    """Errors (``(h, w)``, NaN where none) drawn opaque on the ramp over the overlay grey."""
    has = np.isfinite(errors)
    return _blend(ramp(errors, lo, hi), has.astype(np.float64), overlay_base(rgb, valid))


# ---------------------------------------------------------------- layout and drawing


@dataclass(frozen=True)
class Panel:
    """One picture of the row: ``name`` (``input``, ``stride_map``, ``output``, ``error``),
    its caption, and its pixels ``(h, w, 3)`` uint8."""

    name: str
    title: str
    rgb: np.ndarray


@dataclass(frozen=True)
class LegendRow:
    """One stride of the legend: tiles at that stride and their share of the run's compute."""

    stride: int
    tiles: int
    compute_share: float

    @property
    def label(self) -> str:
        return "skipped" if self.stride == 0 else f"stride {self.stride}"


@dataclass(frozen=True)
class ColourBar:
    """The error panel's scale: ``lo`` to ``hi`` on the error ramp."""

    lo: float
    hi: float
    label: str


@dataclass
class Quicklook:
    """A drawn quicklook: the picture and where things are on it."""

    image: Any  # PIL.Image.Image
    layout: dict[str, Any] = field(default_factory=dict)
    legend: list[dict[str, Any]] = field(default_factory=list)

    def save(self, path: str | Path, extra: dict[str, str] | None = None) -> None:
        """Write a PNG (whatever ``path``'s extension) with the legend and layout as text."""
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        for key, value in (extra or {}).items():
            info.add_text(key, value)
        info.add_text("satconv:legend", json.dumps(self.legend))
        info.add_text("satconv:layout", json.dumps(self.layout))
        self.image.save(path, format="PNG", pnginfo=info)


def font(size: int = FONT_SIZE) -> Any:
    """Pillow's built-in font at ``size`` (its bitmap font when FreeType is missing)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _width(f: Any, text: str) -> int:
    return int(math.ceil(f.getlength(text)))


def _fmt_share(share: float) -> str:
    return f"{100 * share:.1f} %"


def _fmt_value(v: float) -> str:
    return f"{v:.3g}"


def render(header: str, panels: Sequence[Panel], legend: Sequence[LegendRow],
           colour_bar: ColourBar | None = None, footer: str | None = None) -> Quicklook:
    """Draw the panels side by side under ``header``, the legend under the stride panel, the
    colour bar under the error panel, and ``footer`` at the bottom."""
    from PIL import Image, ImageDraw

    f = font()
    ascent, descent = f.getmetrics()
    line = ascent + descent
    ph = max(p.rgb.shape[0] for p in panels)
    top = MARGIN + line + GAP  # header
    img_top = top + line + 4  # captions
    boxes: dict[str, list[int]] = {}
    x = MARGIN
    for p in panels:
        h, w = p.rgb.shape[:2]
        boxes[p.name] = [x, img_top, x + w, img_top + h]
        x += max(w, _width(f, p.title)) + GAP
    panels_right = x - GAP
    below = img_top + ph + GAP

    # legend: swatch, label, tiles (right-aligned), compute share (right-aligned)
    lx = boxes["stride_map"][0] if "stride_map" in boxes else MARGIN
    heads = ("tiles", "share of compute")
    label_w = max([_width(f, r.label) for r in legend] + [_width(f, "stride")])
    tiles_w = max([_width(f, str(r.tiles)) for r in legend] + [_width(f, heads[0])])
    share_w = max([_width(f, _fmt_share(r.compute_share)) for r in legend] + [_width(f, heads[1])])
    c_label = lx + SWATCH + 6
    c_tiles = c_label + label_w + 14 + tiles_w  # right edges
    c_share = c_tiles + 14 + share_w
    legend_bottom = below + ROW * (len(legend) + 1)
    right = max(panels_right, c_share)

    bar_box = None
    if colour_bar is not None and "error" in boxes:
        ex0, _, ex1, _ = boxes["error"]
        bw = max(min(ex1 - ex0, 240), 60)
        bar_box = [ex0, below + 4, ex0 + bw, below + 4 + 10]
        right = max(right, ex0 + bw, ex0 + _width(f, colour_bar.label))
        legend_bottom = max(legend_bottom, bar_box[3] + 4 + 2 * line)

    footer_y = legend_bottom + GAP // 2
    height = footer_y + (line if footer else 0) + MARGIN
    right = max(right, MARGIN + _width(f, header), MARGIN + _width(f, footer or ""))
    width = right + MARGIN

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, MARGIN), header, fill=TEXT, font=f)
    for p in panels:
        x0, y0, x1, y1 = boxes[p.name]
        draw.text((x0, top), p.title, fill=TEXT, font=f)
        image.paste(Image.fromarray(np.ascontiguousarray(p.rgb), "RGB"), (x0, y0))
        draw.rectangle([x0 - 1, y0 - 1, x1, y1], outline=FRAME)

    cells: list[dict[str, Any]] = []
    y = below
    draw.text((c_label, y), "stride", fill=MUTED, font=f)
    draw.text((c_tiles - _width(f, heads[0]), y), heads[0], fill=MUTED, font=f)
    draw.text((c_share - _width(f, heads[1]), y), heads[1], fill=MUTED, font=f)
    for r in legend:
        y += ROW
        sy = y + max((line - SWATCH) // 2, 0)
        swatch = [lx, sy, lx + SWATCH, sy + SWATCH]
        rgba = palette.stride_colour(r.stride)
        fill = tuple(rgba[:3]) if rgba[3] else BACKGROUND
        draw.rectangle([swatch[0], swatch[1], swatch[2] - 1, swatch[3] - 1], fill=fill,
                       outline=FRAME if not rgba[3] else None)
        tiles_text, share_text = str(r.tiles), _fmt_share(r.compute_share)
        tx = c_tiles - _width(f, tiles_text)
        sx = c_share - _width(f, share_text)
        draw.text((c_label, y), r.label, fill=TEXT, font=f)
        draw.text((tx, y), tiles_text, fill=TEXT, font=f)
        draw.text((sx, y), share_text, fill=TEXT, font=f)
        cells.append({"stride": r.stride, "swatch": swatch,
                      "label": [c_label, y, c_label + label_w, y + line],
                      "tiles": [c_label + label_w + 1, y, c_tiles + 1, y + line],
                      "compute": [c_tiles + 1, y, c_share + 1, y + line]})

    bar = None
    if bar_box is not None and colour_bar is not None:
        x0, y0, x1, y1 = bar_box
        t = np.linspace(colour_bar.lo, colour_bar.hi, x1 - x0)
        strip = np.rint(ramp(t, colour_bar.lo, colour_bar.hi)).astype(np.uint8)
        image.paste(Image.fromarray(np.repeat(strip[None], y1 - y0, axis=0), "RGB"), (x0, y0))
        draw.rectangle([x0 - 1, y0 - 1, x1, y1], outline=FRAME)
        hi_text = _fmt_value(colour_bar.hi)
        draw.text((x0, y1 + 2), _fmt_value(colour_bar.lo), fill=TEXT, font=f)
        draw.text((x1 - _width(f, hi_text), y1 + 2), hi_text, fill=TEXT, font=f)
        draw.text((x0, y1 + 2 + line), colour_bar.label, fill=MUTED, font=f)
        bar = {"box": bar_box, "lo": colour_bar.lo, "hi": colour_bar.hi}
    if footer:
        draw.text((MARGIN, footer_y), footer, fill=MUTED, font=f)

    layout = {"font_size": FONT_SIZE, "panels": boxes, "legend": cells, "colour_bar": bar,
              "overlay_opacity": OVERLAY_OPACITY, "base": [BASE_LOW, BASE_HIGH]}
    figures = [{"stride": r.stride, "tiles": r.tiles,
                "compute_share": round(r.compute_share, 6)} for r in legend]
    return Quicklook(image, layout, figures)
