"""The context policy: regions of interest force a stride on every tile they touch.

Regions come from a mask raster (non-zero pixels; any grid or CRS), a GeoJSON file of
polygons or boxes (any CRS: the legacy ``crs`` member, else EPSG:4326 as RFC 7946 says;
reprojected onto the scene) and a detections JSON with pixel-space ``bbox`` lists, as an object
detector writes them. Every tile a region touches gets ``inside_stride``; with
``skip_outside`` every other tile is skipped (stride 0, nodata in the output). Context combines
with every policy: the policy chooses the strides of the tiles context leaves free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import raster_io
from ..config import ContextConfig
from ..errors import ConfigError, InputError
from ..raster_io import RasterInfo
from ..tiling import TileGrid, tiles_touched

#: Polygon edges are split into this many pieces before reprojection, so that a straight edge
#: in one CRS follows its curve in the other.
DENSIFY = 16


@dataclass(frozen=True)
class Context:
    """Which tiles a region of interest touches, and where the regions came from."""

    inside: np.ndarray
    inside_stride: int
    skip_outside: bool
    details: dict[str, Any]


def regions(info: RasterInfo, cfg: ContextConfig, grid: TileGrid) -> Context:
    """Read every configured source and mark the tiles its regions touch."""
    inside = np.zeros(grid.shape, dtype=bool)
    details: dict[str, Any] = {"inside_stride": cfg.inside_stride,
                               "skip_outside": cfg.skip_outside}
    if cfg.mask:
        path = cfg.path(cfg.mask)
        hit = np.zeros(grid.shape, dtype=bool)
        for boxes in raster_io.mask_footprints(path, info):
            hit |= tiles_touched(*boxes, grid)
        inside |= hit
        details["mask"] = {"path": str(path), "tiles": int(hit.sum())}
    if cfg.geometries:
        path = cfg.path(cfg.geometries)
        hit, count = _geometry_tiles(path, info, grid)
        inside |= hit
        details["geometries"] = {"path": str(path), "shapes": count, "tiles": int(hit.sum())}
    if cfg.detections:
        path = cfg.path(cfg.detections)
        boxes = detection_boxes(_load_json(path), cfg.bbox_format, str(path))
        hit = tiles_touched(boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2], grid) \
            if boxes.size else np.zeros(grid.shape, dtype=bool)
        inside |= hit
        details["detections"] = {"path": str(path), "boxes": int(len(boxes)),
                                 "tiles": int(hit.sum())}
    details["tiles_inside"] = int(inside.sum())
    return Context(inside, cfg.inside_stride, cfg.skip_outside, details)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None


def detection_boxes(data: Any, fmt: str, source: str = "detections") -> np.ndarray:
    """Pixel boxes ``(n, 4)`` as ``x0, y0, x1, y1`` (x = column) from a detections document:
    a list of detections (or ``{"detections" | "annotations" | "predictions": [...]}``), each a
    mapping with a ``bbox`` of four numbers or the four numbers themselves. ``fmt`` is
    ``xywh`` (COCO: corner, width, height) or ``xyxy`` (two corners)."""
    items = data
    if isinstance(data, dict):
        for key in ("detections", "annotations", "predictions", "objects"):
            if isinstance(data.get(key), list):
                items = data[key]
                break
        else:
            raise InputError(f"{source}: expected a list of detections (or a mapping with "
                             "'detections', 'annotations' or 'predictions')")
    if not isinstance(items, list):
        raise InputError(f"{source}: expected a list of detections")
    boxes = []
    for i, item in enumerate(items):
        bbox = item.get("bbox") if isinstance(item, dict) else item
        if (not isinstance(bbox, list | tuple) or len(bbox) != 4
                or not all(isinstance(v, int | float) and np.isfinite(v) for v in bbox)):
            raise InputError(f"{source}: detection {i} has no bbox of four numbers")
        x0, y0, a, b = (float(v) for v in bbox)
        x1, y1 = (x0 + a, y0 + b) if fmt == "xywh" else (a, b)
        if x1 < x0 or y1 < y0:
            raise InputError(f"{source}: detection {i} has a bbox of negative size ({fmt})")
        boxes.append((x0, y0, x1, y1))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _geojson_shapes(data: Any, source: str) -> tuple[list[dict[str, Any]], str]:
    """The geometries of a GeoJSON document (features' ``bbox`` stands in for a missing
    geometry) and its CRS."""
    crs = "EPSG:4326"
    if isinstance(data, dict) and isinstance(data.get("crs"), dict):
        name = data["crs"].get("properties", {}).get("name")
        if name:
            crs = str(name)
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "FeatureCollection":
        features = data.get("features") or []
    elif kind == "Feature":
        features = [data]
    elif kind in ("Polygon", "MultiPolygon", "GeometryCollection", "Point", "MultiPoint",
                  "LineString", "MultiLineString"):
        features = [{"type": "Feature", "geometry": data}]
    else:
        raise InputError(f"{source}: not a GeoJSON FeatureCollection, Feature or geometry")
    shapes = []
    for i, f in enumerate(features):
        geom = f.get("geometry") if isinstance(f, dict) else None
        if geom is None and isinstance(f, dict) and isinstance(f.get("bbox"), list) \
                and len(f["bbox"]) == 4:
            x0, y0, x1, y1 = (float(v) for v in f["bbox"])
            geom = {"type": "Polygon",
                    "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
        if not isinstance(geom, dict) or "type" not in geom:
            raise InputError(f"{source}: feature {i} has no geometry")
        shapes.append(geom)
    return shapes, crs


def _densify(geom: dict[str, Any], pieces: int) -> dict[str, Any]:
    """The geometry with every polygon and line edge split into ``pieces``."""
    def ring(coords: list) -> list:
        pts = np.asarray(coords, dtype=np.float64)[:, :2]
        if len(pts) < 2:
            return pts.tolist()
        t = np.linspace(0.0, 1.0, pieces, endpoint=False)[None, :, None]
        seg = pts[:-1, None, :] + t * (pts[1:, None, :] - pts[:-1, None, :])
        return np.vstack([seg.reshape(-1, 2), pts[-1:]]).tolist()

    kind = geom["type"]
    c = geom.get("coordinates")
    if kind in ("Polygon", "MultiLineString"):
        return {"type": kind, "coordinates": [ring(r) for r in c]}
    if kind == "MultiPolygon":
        return {"type": kind, "coordinates": [[ring(r) for r in poly] for poly in c]}
    if kind == "LineString":
        return {"type": kind, "coordinates": ring(c)}
    if kind == "GeometryCollection":
        return {"type": kind, "geometries": [_densify(g, pieces) for g in geom["geometries"]]}
    return geom


def _geometry_tiles(path: Path, info: RasterInfo, grid: TileGrid) -> tuple[np.ndarray, int]:
    from rasterio.errors import CRSError
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom

    shapes, crs = _geojson_shapes(_load_json(path), str(path))
    if not shapes:
        return np.zeros(grid.shape, dtype=bool), 0
    if info.crs is None:
        raise InputError(f"{path}: the scene has no CRS, geometries cannot be placed on it")
    try:
        shapes = [transform_geom(crs, info.crs, _densify(g, DENSIFY)) for g in shapes]
    except (CRSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot reproject geometries from {crs} ({err})") from None
    tile_transform = raster_io.stride_map_transform(info.transform, grid.size)
    # whole tiles: a region just past the image's last row or column marks the edge tile
    hit = rasterize([(g, 1) for g in shapes], out_shape=grid.shape, transform=tile_transform,
                    all_touched=True, fill=0, dtype="uint8")
    return hit.astype(bool), len(shapes)
