"""The budget policy: spend at most a given share of the full-resolution compute, where it
removes the most predicted error.

Each free tile has, per allowed stride, a cost (its kernel evaluations) and a predicted error
(the error model's MSE, summed over the tile's pixels, with each band measured against its own
value range so that bands weigh alike). ``allocate.for_budget_table`` picks one stride per tile
minimising ``cost + lam * error`` with ``lam`` found by bisection, then spends what the jumps of
the multiplier leave on the best remaining upgrades. Tiles forced by context spend their share
first.
"""

from __future__ import annotations

import numpy as np

from . import allocate
from .inputs import PlanInputs


def plan(inp: PlanInputs, fraction: float) -> tuple[np.ndarray, dict[str, object]]:
    """Strides for the free tiles (``inp.fixed`` decides the others)."""
    free = inp.free
    ny, nx, ns = inp.cost.shape
    forced = float(sum(inp.cost[..., k][inp.fixed == s].sum()
                       for k, s in enumerate(inp.strides)))
    budget = fraction * inp.full - forced
    scale = inp.output_range() ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(scale > 0, inp.predicted**2 / scale, 0.0)
    error = norm.max(axis=-1) * inp.weights[..., None]
    options = inp.options()
    choice = allocate.for_budget_table(inp.cost[free], error[free], options[free], budget)
    chosen = np.full((ny, nx), inp.strides[-1], dtype=np.int64)
    chosen[free] = np.asarray(inp.strides)[choice]
    spent = inp.cost_of(inp.with_fixed(chosen))
    details = {"policy": "budget", "fraction": fraction, "planned_fraction": round(spent, 6),
               "statistic_window": inp.window}
    if spent > fraction * (1 + 1e-9):
        details["note"] = (f"policy.fraction {fraction} is below the least this scene can "
                           f"spend ({spent:.4f}): every free tile runs at its coarsest stride")
    return chosen, details
