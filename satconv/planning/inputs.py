"""What every policy starts from: the scene's statistics turned into per-tile, per-stride
predicted errors and costs, the kernel's stride cap, and the tiles context has decided.

Costs are kernel evaluations, counted as the executor counts them: every sample of every band,
plus (at strides above 1) the valid pixels computed exactly because invalid data is near
(``SceneStats.exact``). Errors are the error model's: a tile's RMS error at stride ``s`` in
band ``b`` is predicted as ``sqrt(statistic_b * g_s)`` (``predicted``, what the policies
allocate by); ``reach_predicted`` is the same with the statistic over tile and halo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..config import Settings
from ..raster_io import RasterInfo
from . import context as context_policy
from . import error_model
from .plan import sample_counts
from .scan import SceneStats


@dataclass(frozen=True)
class PlanInputs:
    """The scene, seen by the policies (arrays are ``(ny, nx, ...)`` over tiles)."""

    stats: SceneStats
    kernel: np.ndarray
    method: str
    window: int
    strides: tuple[int, ...]
    cap: int
    cap_source: str
    allowed: tuple[int, ...]
    gains: dict[int, float]
    predicted: np.ndarray
    reach_predicted: np.ndarray
    cost: np.ndarray
    full: float
    fixed: np.ndarray
    still: np.ndarray
    context: context_policy.Context | None

    @property
    def grid(self):  # noqa: ANN201 - TileGrid
        return self.stats.grid

    @property
    def free(self) -> np.ndarray:
        """Tiles the policy decides: not skipped, not forced by context (``fixed < 0``)."""
        return self.fixed < 0

    @property
    def weights(self) -> np.ndarray:
        return self.stats.nvalid.astype(np.float64)

    def options(self) -> np.ndarray:
        """``(ny, nx, strides)``: the strides each free tile may take (capped, except on still
        tiles: a constant output loses nothing at any stride)."""
        ok = np.array([s <= self.cap or s == self.strides[0] for s in self.strides])
        out = np.broadcast_to(ok, self.cost.shape).copy()
        out[self.still] = True
        out[~self.free] = False
        return out

    def index(self, stride: int) -> int:
        return self.strides.index(stride)

    def cost_of(self, strides: np.ndarray) -> float:
        """Kernel evaluations of a stride per tile (0 = skipped), as a share of full res."""
        total = 0.0
        for k, s in enumerate(self.strides):
            total += float(self.cost[..., k][strides == s].sum())
        return total / self.full if self.full else 0.0

    def rmse_of(self, strides: np.ndarray) -> np.ndarray:
        """The model's RMS error per tile and band for a stride per tile (0 where skipped)."""
        out = np.zeros(strides.shape + (self.stats.bands,))
        for k, s in enumerate(self.strides):
            out[strides == s] = self.predicted[..., k, :][strides == s]
        return out

    def output_range(self) -> np.ndarray:
        """Each band's output value range, estimated from the plan pass: what an error target
        is a share of, in every policy. For kernels with a gain, the range of window means
        times the gain (smoothing narrows the range: on noise it is well below the input's);
        for zero-sum kernels, the input range times the response to a full step."""
        gain = abs(float(self.kernel.sum()))
        if gain > 1e-12 * float(np.abs(self.kernel).sum()):
            return self.stats.mean_range() * gain
        return self.stats.band_range() * error_model.output_scale(self.kernel)

    def with_fixed(self, strides: np.ndarray) -> np.ndarray:
        """A policy's strides for the free tiles, context's and skips for the others."""
        out = np.where(self.free, strides, self.fixed)
        return out.astype(np.int64)


def stride_cap(settings: Settings, kernel: np.ndarray) -> tuple[int, str]:
    """The largest stride for textured tiles, and where it comes from."""
    if settings.max_stride == "none":
        return max(settings.strides), "none"
    if settings.max_stride == "auto":
        return kernels.safe_stride(kernel), "kernel frequency response"
    return int(settings.max_stride), "config max_stride"


def plan_inputs(info: RasterInfo, settings: Settings, stats: SceneStats) -> PlanInputs:
    kernel = settings.kernel.array()
    method = settings.reconstruction
    window = settings.policy.window
    strides = tuple(settings.strides)
    cap, source = stride_cap(settings, kernel)
    allowed = tuple(s for s in strides if s <= cap) or strides[:1]
    gains = {s: error_model.stride_gain(kernel, s, method, window) for s in strides}
    def model(statistic: np.ndarray) -> np.ndarray:
        stat = np.where(np.isnan(statistic), 0.0, np.maximum(statistic, 0.0))
        return np.stack([np.sqrt(stat * gains[s]) for s in strides], axis=2)

    predicted, reach_predicted = model(stats.statistic), model(stats.reach)
    bands = stats.bands
    cost = (np.stack([bands * sample_counts(stats.grid, s) for s in strides], axis=2)
            + stats.exact).astype(np.float64)
    full = float(info.height) * info.width * bands
    fixed = np.full(stats.grid.shape, -1, dtype=np.int64)
    ctx = None
    if settings.context is not None:
        ctx = context_policy.regions(info, settings.context, stats.grid)
        fixed[ctx.inside] = ctx.inside_stride
        if ctx.skip_outside:
            fixed[~ctx.inside] = 0
    fixed[stats.nvalid == 0] = 0
    cost[stats.nvalid == 0] = 0.0
    # constant over tile and halo: a constant output, exact at any stride (unless the image
    # edge brings in other values: wrap, or a constant other than the data)
    still = stats.still.copy()
    if settings.boundary in ("wrap", "constant"):
        halo = max(kernel.shape) // 2
        ny, nx = stats.grid.shape
        edge = np.zeros((ny, nx), dtype=bool)
        g = stats.grid
        for ty in range(ny):
            for tx in range(nx):
                t = g.tile(ty, tx)
                edge[ty, tx] = (t.row0 < halo or t.col0 < halo or t.row1 + halo > g.height
                                or t.col1 + halo > g.width)
        still &= ~edge
    return PlanInputs(stats, kernel, method, window, strides, cap, source, allowed, gains,
                      predicted, reach_predicted, cost, full, fixed, still, ctx)
