"""The refine policy: error-controlled strides, decided while executing.

Every tile starts at the coarsest stride it may take. The executor (``convolve.refine_tile``)
measures, on the tile's own samples, how far interpolation is off (hierarchical surpluses,
turned into an RMS estimate by ``error_model.ErrorEstimator``) and refines the tile, reusing
every sample, until the estimate is within the tolerance for the stride it stands at. This
module sets those tolerances.

- ``tolerance``: one RMS bound per tile, in output units, for every stride and band.
- ``tolerance_db``: a PSNR target for the whole output, peak = each band's output value range
  (estimated from the plan pass: the range of window means, times the kernel's gain). The
  scene's MSE budget is shared as the budget policy shares compute: by the Lagrangian
  allocation of the error model, a tile stopping at stride ``s`` may keep the error the
  cheapest plan meeting the target gives a tile there. Coarse strides get the smaller bounds:
  refining them is cheap. No tile may keep more than the target minus ``FLOOR_DB`` allows.

The plan also predicts, with the error model, where each tile will stop: that is what
``satconv plan`` shows; the executed stride map is what the run measured.
"""

from __future__ import annotations

import numpy as np

from . import allocate
from .inputs import PlanInputs
from .plan import RefineRule
from .variance import normalised

#: No tile below the PSNR target by more than this.
FLOOR_DB = 5.0
#: Check samples per tile and level (a regular sub-lattice of the cell centres).
CHECKS_PER_LEVEL = 32


def tolerances(inp: PlanInputs, tolerance: float | None,
               tolerance_db: float | None) -> tuple[np.ndarray, dict[str, object]]:
    """``(strides, bands)``: the RMS error a tile may keep when it stops at each stride."""
    ns, nb = len(inp.strides), inp.stats.bands
    if tolerance is not None:
        return np.full((ns, nb), float(tolerance)), {"tolerance": tolerance}
    assert tolerance_db is not None
    peak = inp.output_range()
    target = peak * 10 ** (-tolerance_db / 20)
    stat = np.where(np.isnan(inp.stats.statistic), 0.0, inp.stats.statistic)
    u = normalised(stat, target**2)
    free = inp.free & ~inp.still
    w = inp.weights
    # tiles forced by context keep their error; the free tiles share what is left
    forced_mse = 0.0
    for s in inp.strides:
        sel = (inp.fixed == s)
        forced_mse += float((w[sel] * u[sel] * inp.gains[s]).sum())
    wf = float(w[free].sum())
    details: dict[str, object] = {"tolerance_db": tolerance_db,
                                  "peak_per_band": [round(float(p), 6) for p in peak],
                                  "floor_db": tolerance_db - FLOOR_DB}
    cap = 10 ** (FLOOR_DB / 10)  # the floor, as an MSE normalised by the target's

    def bounds(lam: float) -> np.ndarray:
        """Normalised MSE a tile may keep at each stride: the multiplier's, within the floor."""
        limits = allocate.thresholds(list(inp.strides), inp.gains, lam)
        return np.array([min(limits[s] * inp.gains[s], cap) if np.isfinite(limits[s]) else cap
                         for s in inp.strides])

    uf, wfree = u[free], w[free]
    start = [k for k, s in enumerate(inp.strides) if s in inp.allowed]

    def mse(lam: float) -> float:
        b = bounds(lam)
        err = np.zeros(uf.shape)
        settled = np.zeros(uf.shape, dtype=bool)
        for k in reversed(start):
            e = uf * inp.gains[inp.strides[k]]
            fits = ~settled & (e <= b[k])
            err[fits] = e[fits]
            settled |= fits
        err[~settled] = uf[~settled] * inp.gains[inp.strides[start[0]]]
        return float((wfree * err).sum())

    budget = float(w[w > 0].sum()) - forced_mse
    lam = allocate.search(lambda lam: mse(lam) <= budget, want_small=True) if wf else 1.0
    tol = np.sqrt(bounds(lam))[:, None] * target[None, :]
    details["tolerance_per_stride"] = {str(s): [round(float(t), 6) for t in tol[k]]
                                       for k, s in enumerate(inp.strides)}
    return tol, details


def plan(inp: PlanInputs, tolerance: float | None,
         tolerance_db: float | None) -> tuple[np.ndarray, RefineRule, dict[str, object]]:
    """The predicted strides (for display), and the rule the executor refines by."""
    tol, details = tolerances(inp, tolerance, tolerance_db)
    top_allowed = max(inp.allowed)
    start = np.where(inp.still, inp.strides[-1], top_allowed).astype(np.int64)
    start = inp.with_fixed(start)
    # prediction: the coarsest stride, from the start down, whose model error is within bounds
    predicted = np.full(start.shape, inp.strides[0], dtype=np.int64)
    settled = np.zeros(start.shape, dtype=bool)
    for k in range(len(inp.strides) - 1, -1, -1):
        s = inp.strides[k]
        fits = (inp.predicted[..., k, :] <= tol[k]).all(axis=-1) & (s <= start) & ~settled
        predicted[fits] = s
        settled |= fits
    predicted = inp.with_fixed(predicted)
    # a constant tile (and halo) is exact at any stride: it needs no checks
    settled_still = inp.free & inp.still
    start = np.where(settled_still, inp.strides[-1], start)
    predicted = np.where(settled_still, inp.strides[-1], predicted)
    rule = RefineRule(tuple(inp.strides), start, ~inp.free | settled_still, tol, CHECKS_PER_LEVEL)
    details = {"policy": "refine", **details, "checks_per_level": CHECKS_PER_LEVEL,
               "constant_tiles": int(settled_still.sum()),
               "predicted_compute_fraction": round(inp.cost_of(predicted)
                                                   + checks_fraction(inp, predicted), 6)}
    return predicted, rule, details


def checks_fraction(inp: PlanInputs, strides: np.ndarray) -> float:
    """The check samples a refine run adds at its final strides, as a share of full res."""
    g = inp.grid
    total = 0.0
    for s in inp.strides[1:]:
        sel = strides == s
        if sel.any():
            centres = (g.size // s) ** 2
            total += float(sel.sum()) * min(centres, CHECKS_PER_LEVEL) * inp.stats.bands
    return total / inp.full if inp.full else 0.0
