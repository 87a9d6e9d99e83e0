"""The context policy: regions of interest force a stride on every tile they touch.

Regions come from a mask raster (non-zero pixels; any grid or CRS), a GeoJSON file of
polygons or boxes (any CRS: the legacy ``crs`` member, else EPSG:4326 as RFC 7946 says;
reprojected onto the scene) and a detections JSON with ``bbox`` lists, as an object detector
writes them: in the scene's pixels, or with ``bbox_crs`` in map coordinates (reprojected).
Every tile a region touches gets ``inside_stride``; with ``skip_outside`` every other tile is
skipped (stride 0, nodata in the output). Context combines with every policy: the policy
chooses the strides of the tiles context leaves free.

A context file is configuration shared by every scene: what is wrong with the file itself
(not JSON, not GeoJSON, a feature without geometry, an unknown ``crs``, coordinates outside
longitude/latitude ranges in a geographic CRS, a detection without a bbox) is a
:class:`ConfigError` naming the file, found by :func:`check_files` before any scene is read.
What goes wrong between a file and one scene (geometries that cannot be reprojected into its
CRS, a mask that does not fit it) is an :class:`InputError` of that scene. A source whose
regions miss the scene is no error: its ``warnings`` in the details say so.
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

#: Degrees a longitude or latitude may stray past its range (rounding in the file's writer).
LONLAT_SLACK = 1e-6

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

    @property
    def warnings(self) -> list[str]:
        """One line for each source whose regions touch no tile of the scene."""
        return list(self.details.get("warnings", []))


def regions(info: RasterInfo, cfg: ContextConfig, grid: TileGrid) -> Context:
    """Read every configured source and mark the tiles its regions touch. A source whose
    regions touch no tile (none at all, or all off the scene) gets a line in
    ``details["warnings"]``, naming its file."""
    inside = np.zeros(grid.shape, dtype=bool)
    details: dict[str, Any] = {"inside_stride": cfg.inside_stride,
                               "skip_outside": cfg.skip_outside}
    warnings: list[str] = []
    if cfg.mask:
        path = cfg.path(cfg.mask)
        hit = np.zeros(grid.shape, dtype=bool)
        for boxes in raster_io.mask_footprints(path, info):
            hit |= tiles_touched(*boxes, grid)
        inside |= hit
        details["mask"] = {"path": str(path), "tiles": int(hit.sum())}
        if not hit.any():
            warnings.append(f"{path}: no non-zero pixel of context.mask is on the scene")
    if cfg.geometries:
        path = cfg.path(cfg.geometries)
        hit, count = _geometry_tiles(path, info, grid)
        inside |= hit
        details["geometries"] = {"path": str(path), "shapes": count, "tiles": int(hit.sum())}
        if not hit.any():
            what = "has no geometries" if count == 0 else "has no geometry on the scene"
            warnings.append(f"{path}: context.geometries {what}")
    if cfg.detections:
        path = cfg.path(cfg.detections)
        boxes = detection_boxes(_load_json(path), cfg.bbox_format, str(path))
        if not boxes.size:
            hit = np.zeros(grid.shape, dtype=bool)
        elif cfg.bbox_crs:
            hit = _shape_tiles([_box(*b) for b in boxes], _bbox_crs(cfg, path), path, info,
                               grid)
        else:
            hit = tiles_touched(boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2], grid)
        inside |= hit
        details["detections"] = {"path": str(path), "boxes": int(len(boxes)),
                                 "tiles": int(hit.sum())}
        if not hit.any():
            what = "has no detections" if not boxes.size else "has no box on the scene"
            warnings.append(f"{path}: context.detections {what}")
    details["tiles_inside"] = int(inside.sum())
    if warnings:
        if not inside.any():
            warnings[-1] += (": no tile is inside, every tile skipped (skip_outside)"
                             if cfg.skip_outside else ": no tile is inside")
        details["warnings"] = warnings
    return Context(inside, cfg.inside_stride, cfg.skip_outside, details)


def check_files(cfg: ContextConfig) -> None:
    """Read the geometries and detections files and raise :class:`ConfigError` naming the
    file for what is wrong with the file itself, whatever the scene (URLs and GDAL paths
    are left to the scenes' runs)."""
    checks = ((cfg.geometries, _file_shapes),
              (cfg.detections, lambda p: (detection_boxes(_load_json(p), cfg.bbox_format,
                                                          str(p)), _bbox_crs(cfg, p))))
    with raster_io.gdal_env():  # GDAL's own error lines go into the exceptions
        for value, check in checks:
            if value and "://" not in value and not value.startswith("/vsi"):
                check(cfg.path(value))


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None


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
            raise ConfigError(f"{source}: expected a list of detections (or a mapping with "
                             "'detections', 'annotations' or 'predictions')")
    if not isinstance(items, list):
        raise ConfigError(f"{source}: expected a list of detections")
    boxes = []
    for i, item in enumerate(items):
        bbox = item.get("bbox") if isinstance(item, dict) else item
        if (not isinstance(bbox, list | tuple) or len(bbox) != 4
                or not all(isinstance(v, int | float) and np.isfinite(v) for v in bbox)):
            raise ConfigError(f"{source}: detection {i} has no bbox of four numbers")
        x0, y0, a, b = (float(v) for v in bbox)
        x1, y1 = (x0 + a, y0 + b) if fmt == "xywh" else (a, b)
        if x1 < x0 or y1 < y0:
            raise ConfigError(f"{source}: detection {i} has a bbox of negative size ({fmt})")
        boxes.append((x0, y0, x1, y1))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _geojson_shapes(data: Any, source: str) -> tuple[list[dict[str, Any]], str]:
    """The geometries of a GeoJSON document (features' ``bbox`` stands in for a missing
    geometry) and its CRS."""
    crs = "EPSG:4326"
    if isinstance(data, dict) and data.get("crs") is not None:
        member = data["crs"]
        props = member.get("properties") if isinstance(member, dict) else None
        name = props.get("name") if isinstance(props, dict) else None
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{source}: its crs member names no CRS (expected "
                              '{"type": "name", "properties": {"name": "EPSG:32618"}})')
        crs = name
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "FeatureCollection":
        features = data.get("features") or []
    elif kind == "Feature":
        features = [data]
    elif kind in ("Polygon", "MultiPolygon", "GeometryCollection", "Point", "MultiPoint",
                  "LineString", "MultiLineString"):
        features = [{"type": "Feature", "geometry": data}]
    else:
        raise ConfigError(f"{source}: not a GeoJSON FeatureCollection, Feature or geometry")
    shapes = []
    for i, f in enumerate(features):
        geom = f.get("geometry") if isinstance(f, dict) else None
        if geom is None and isinstance(f, dict) and isinstance(f.get("bbox"), list) \
                and len(f["bbox"]) == 4:
            if not all(isinstance(v, int | float) for v in f["bbox"]):
                raise ConfigError(f"{source}: feature {i} has a bbox that is not four numbers")
            x0, y0, x1, y1 = (float(v) for v in f["bbox"])
            geom = {"type": "Polygon",
                    "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
        if not isinstance(geom, dict) or "type" not in geom:
            raise ConfigError(f"{source}: feature {i} has no geometry")
        shapes.append(geom)
    return shapes, crs


def _positions(geom: Any) -> np.ndarray:
    """Every position of a geometry as ``(n, 2)`` floats (x, y); ``ValueError`` when its
    coordinates are not nested lists of positions of finite numbers."""
    kind = geom.get("type") if isinstance(geom, dict) else None
    if kind == "GeometryCollection":
        parts = [_positions(g) for g in geom.get("geometries") or []]
        return np.vstack(parts) if parts else np.zeros((0, 2))
    depth = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2,
             "Polygon": 2, "MultiPolygon": 3}.get(kind)  # type: ignore[arg-type]
    if depth is None:
        raise ValueError(f"unknown geometry type {kind!r}")
    found: list[list[float]] = []

    def walk(c: Any, level: int) -> None:
        if not isinstance(c, list):
            raise ValueError("coordinates are not lists")
        if level == 0:
            if len(c) < 2 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                     for v in c):
                raise ValueError("a position is not a list of numbers")
            found.append([float(c[0]), float(c[1])])
            return
        for item in c:
            walk(item, level - 1)

    walk(geom.get("coordinates"), depth)
    pts = np.asarray(found, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all():
        raise ValueError("a coordinate is not finite")
    return pts


def _file_shapes(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The geometries of a GeoJSON file and their CRS, checked as far as the file alone
    allows: a CRS GDAL knows, positions of numbers, and in a geographic CRS (GeoJSON's
    default EPSG:4326 included) longitudes and latitudes within range. Raise
    :class:`ConfigError` naming the file."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    data = _load_json(path)
    shapes, crs = _geojson_shapes(data, str(path))
    declared = isinstance(data, dict) and data.get("crs") is not None
    try:
        geographic = CRS.from_user_input(crs).is_geographic
    except CRSError as err:
        raise ConfigError(f"{path}: unknown crs {crs} ({err})") from None
    for i, geom in enumerate(shapes):
        try:
            pts = _positions(geom)
        except ValueError as err:
            raise ConfigError(f"{path}: feature {i} has no valid coordinates ({err})") from None
        if not geographic or not pts.size:
            continue
        off = (np.abs(pts[:, 0]) > 180 + LONLAT_SLACK) | (np.abs(pts[:, 1]) > 90 + LONLAT_SLACK)
        if off.any():
            x, y = pts[np.argmax(off)]
            where = f"feature {i} has {x:.6g}, {y:.6g}"
            if declared:
                raise ConfigError(f"{path}: coordinates are not longitude/latitude in its crs "
                                  f"{crs} ({where}, outside [-180, 180] x [-90, 90])")
            raise ConfigError(f"{path}: coordinates are not longitude/latitude (GeoJSON's "
                              f"EPSG:4326 default; {where}): add a crs member naming their CRS")
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


def _box(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _bbox_crs(cfg: ContextConfig, path: Path) -> str | None:
    """``context.bbox_crs``, checked to name a CRS (:class:`ConfigError` otherwise)."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    if cfg.bbox_crs:
        try:
            CRS.from_user_input(cfg.bbox_crs)
        except CRSError as err:
            raise ConfigError(f"context.bbox_crs: {cfg.bbox_crs} is no CRS GDAL knows (for "
                              f"{path}; {err})") from None
    return cfg.bbox_crs


def _geometry_tiles(path: Path, info: RasterInfo, grid: TileGrid) -> tuple[np.ndarray, int]:
    shapes, crs = _file_shapes(path)
    if not shapes:
        return np.zeros(grid.shape, dtype=bool), 0
    return _shape_tiles(shapes, crs, path, info, grid), len(shapes)


def _shape_tiles(shapes: list[dict[str, Any]], crs: str, path: Path, info: RasterInfo,
                 grid: TileGrid) -> np.ndarray:
    """The tiles that geometries in ``crs`` (read from ``path``) touch, reprojected onto the
    scene: :class:`InputError` naming the file when they cannot be placed on it."""
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom

    if info.crs is None:
        raise InputError(f"{path}: the scene has no CRS, regions in map coordinates cannot be "
                         "placed on it")
    try:
        shapes = [transform_geom(crs, info.crs, _densify(g, DENSIFY)) for g in shapes]
    except Exception as err:  # noqa: BLE001 - GDAL and PROJ raise classes of their own
        text = " ".join(str(err).split()) or type(err).__name__
        raise InputError(f"{path}: cannot reproject the regions from {crs} into the "
                         f"scene's CRS {info.crs} ({text})") from None
    tile_transform = raster_io.stride_map_transform(info.transform, grid.size)
    # whole tiles: a region just past the image's last row or column marks the edge tile
    hit = rasterize([(g, 1) for g in shapes], out_shape=grid.shape, transform=tile_transform,
                    all_touched=True, fill=0, dtype="uint8")
    return hit.astype(bool)
