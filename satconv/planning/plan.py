"""The plan: a stride per tile, and what it is predicted to cost and to miss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..tiling import TileGrid


@dataclass(frozen=True)
class Plan:
    """A stride per tile (0 = skipped) with the figures that justify it.

    ``predicted_rmse`` is the predicted RMS reconstruction error per tile in output units
    (the worst band), NaN where nothing was predicted (a plan read from a file).
    """

    strides: np.ndarray
    grid: TileGrid
    source: str
    predicted_rmse: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def histogram(self) -> dict[int, int]:
        """Tiles per stride, stride 0 (skipped) included when present."""
        values, counts = np.unique(self.strides, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    def tile_pixels(self) -> np.ndarray:
        """Pixels in each tile (edge tiles are partial)."""
        g = self.grid
        ny, nx = g.shape
        h = np.minimum(g.size, g.height - np.arange(ny) * g.size)
        w = np.minimum(g.size, g.width - np.arange(nx) * g.size)
        return np.outer(h, w)

    def compute_fraction(self) -> float:
        """Share of the full-resolution compute: sum over tiles of pixels / stride^2."""
        px = self.tile_pixels().astype(np.float64)
        s = self.strides.astype(np.float64)
        cost = np.where(s > 0, px / np.maximum(s, 1) ** 2, 0.0)
        return float(cost.sum() / px.sum())

    def summary(self) -> dict[str, Any]:
        """Plain data for the run report."""
        out: dict[str, Any] = {
            "source": self.source,
            "tile_size": self.grid.size,
            "tiles": dict(zip(("rows", "cols"), self.grid.shape, strict=True)),
            "tiles_per_stride": {str(k): v for k, v in self.histogram().items()},
            "compute_fraction": round(self.compute_fraction(), 6),
        }
        if self.predicted_rmse is not None and np.isfinite(self.predicted_rmse).any():
            r = self.predicted_rmse[np.isfinite(self.predicted_rmse)]
            px = self.tile_pixels()[np.isfinite(self.predicted_rmse)]
            out["predicted_rmse_max"] = float(r.max())
            out["predicted_rmse_overall"] = float(np.sqrt(np.sum(r * r * px) / px.sum()))
        out.update(self.details)
        return out
