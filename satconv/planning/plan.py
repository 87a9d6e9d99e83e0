"""The plan: a stride per tile, and what it is predicted to cost and to miss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..tiling import TileGrid, sample_positions
from .error_model import ErrorEstimator


def sample_counts(grid: TileGrid, stride: int) -> np.ndarray:
    """Samples each tile computes at ``stride`` (its grid plus the closing samples)."""
    ny, nx = grid.shape
    rows = np.array([sample_positions(grid.tile(t, 0).row0, grid.tile(t, 0).row1, grid.height,
                                      stride).size for t in range(ny)])
    cols = np.array([sample_positions(grid.tile(0, t).col0, grid.tile(0, t).col1, grid.width,
                                      stride).size for t in range(nx)])
    return np.outer(rows, cols)


@dataclass(frozen=True)
class RefineRule:
    """What the executor needs to refine tiles: per tile the stride to start from and whether
    it is fixed (forced by context: no refinement), and per stride and band the RMS error a
    tile may keep when it stops at that stride (``strides`` ascending)."""

    strides: tuple[int, ...]
    start: np.ndarray
    fixed: np.ndarray
    tolerance: np.ndarray
    checks: int = 32

    def strides_for(self, ty: int, tx: int) -> list[int]:
        return [s for s in self.strides if s <= self.start[ty, tx]]


@dataclass(frozen=True)
class Plan:
    """A stride per tile (0 = skipped) with the figures that justify it.

    ``predicted_rmse`` is the predicted RMS reconstruction error per tile in output units
    (the worst band), NaN where nothing was predicted (a plan read from a file).
    ``predicted`` holds the model's RMS error per tile, allowed stride (``model_strides``) and
    band; ``estimator`` turns what the executed samples say into error estimates; ``refine``
    is set when strides are decided at execution (the ``refine`` policy: ``strides`` are then
    the starting strides).
    """

    strides: np.ndarray
    grid: TileGrid
    source: str
    predicted_rmse: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)
    predicted: np.ndarray | None = None
    model_strides: tuple[int, ...] = ()
    estimator: ErrorEstimator | None = None
    refine: RefineRule | None = None

    @property
    def start(self) -> np.ndarray:
        """The stride each tile's execution starts at: a refine plan's starting strides (the
        executor refines from there), else the plan's strides."""
        return self.refine.start if self.refine is not None else self.strides

    def predicted_at(self, ty: int, tx: int, stride: int) -> np.ndarray | None:
        """The model's RMS error per band for tile (ty, tx) at ``stride``, if predicted."""
        if self.predicted is None or stride not in self.model_strides:
            return None
        return self.predicted[ty, tx, self.model_strides.index(stride)]

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
