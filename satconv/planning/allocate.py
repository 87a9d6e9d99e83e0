"""Spend compute where it buys the most accuracy: the Lagrangian allocation shared by policies.

Each tile has a predicted normalised error at stride ``s`` of ``u * g_s`` (``u`` the tile's
variance statistic over the squared tolerance, ``g`` the kernel's stride gain) and a cost of
``1 / s^2`` per pixel. For a multiplier ``lam`` every tile takes the stride minimising
``1/s^2 + lam * u * g_s``. Cost falls and error rises with the stride, so that choice is a
threshold rule on ``u``: each stride is taken while ``u`` stays below its threshold. The
multiplier is found by bisection so the scene as a whole meets an error target or a compute
budget, and the result is exactly a variance-threshold plan.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np


def thresholds(strides: list[int], gains: dict[int, float], lam: float) -> dict[int, float]:
    """Per stride, the ``u`` below which it beats every finer stride (inf for the finest)."""
    order = sorted(strides)
    out = {order[0]: np.inf}
    for i, s in enumerate(order[1:], start=1):
        upper = np.inf
        for f in order[:i]:
            dg = lam * (gains[s] - gains[f])
            gain = 1.0 / (f * f) - 1.0 / (s * s)
            upper = min(upper, gain / dg if dg > 0 else np.inf)
        out[s] = upper
    return out


def choose(u: np.ndarray, limits: dict[int, float]) -> np.ndarray:
    """The coarsest stride whose threshold ``u`` stays below (the finest if none)."""
    chosen = np.full(u.shape, min(limits), dtype=np.int64)
    for s in sorted(limits):
        chosen = np.where(u < limits[s], s, chosen) if s != min(limits) else chosen
    return chosen


def _gain_of(chosen: np.ndarray, gains: dict[int, float]) -> np.ndarray:
    g = np.zeros(chosen.shape)
    for s, gs in gains.items():
        g[chosen == s] = gs
    return g


def predicted_mse(u: np.ndarray, weights: np.ndarray, chosen: np.ndarray,
                  gains: dict[int, float]) -> float:
    """Weighted mean of ``u * g_s``: the predicted normalised MSE of the scene."""
    total = weights.sum()
    return float((weights * u * _gain_of(chosen, gains)).sum() / total) if total else 0.0


def cost(weights: np.ndarray, chosen: np.ndarray) -> float:
    """Compute spent, as a share of the full-resolution compute."""
    total = weights.sum()
    return float((weights / chosen.astype(np.float64) ** 2).sum() / total) if total else 0.0


def search(ok: Callable[[float], bool], want_small: bool) -> float:
    """Bisection on a log scale for the multiplier where the monotone ``ok`` flips."""
    lo, hi = 1e-12, 1e15
    for _ in range(200):
        mid = float(np.sqrt(lo * hi))
        if ok(mid) == want_small:
            hi = mid
        else:
            lo = mid
        if hi / lo < 1 + 1e-9:
            break
    return hi if want_small else lo


def multiplier_for_error(u: np.ndarray, weights: np.ndarray, strides: list[int],
                         gains: dict[int, float], target_mse: float) -> float:
    """The multiplier of the cheapest plan whose predicted scene MSE is at most
    ``target_mse``."""
    def ok(lam: float) -> bool:
        limits = thresholds(strides, gains, lam)
        return predicted_mse(u, weights, choose(u, limits), gains) <= target_mse

    return search(ok, want_small=True)


def for_error(u: np.ndarray, weights: np.ndarray, strides: list[int],
              gains: dict[int, float], target_mse: float) -> dict[int, float]:
    """Thresholds of the cheapest plan whose predicted scene MSE is at most ``target_mse``."""
    return thresholds(strides, gains,
                      multiplier_for_error(u, weights, strides, gains, target_mse))


def for_budget(u: np.ndarray, weights: np.ndarray, strides: list[int],
               gains: dict[int, float], fraction: float) -> dict[int, float]:
    """Thresholds of the least-error plan whose compute is at most ``fraction``."""
    def ok(lam: float) -> bool:
        return cost(weights, choose(u, thresholds(strides, gains, lam))) <= fraction

    return thresholds(strides, gains, search(ok, want_small=False))


def for_budget_table(cost: np.ndarray, error: np.ndarray, feasible: np.ndarray,
                     budget: float) -> np.ndarray:
    """The least-error choice of one option per row whose total cost is at most ``budget``.

    ``cost`` and ``error`` are ``(tiles, options)`` tables (a tile's compute and predicted
    squared error, weighted by its pixels, for each stride); ``feasible`` says which options a
    tile may take. For a multiplier ``lam`` every tile takes the option minimising
    ``cost + lam * error``; ``lam`` is found by bisection so the total cost stays within the
    budget. The rest of the budget then goes, step by step, to the upgrades that remove the
    most error per unit of compute (the Lagrangian alone moves in jumps where many tiles
    share a statistic). Returns the chosen option per tile; where even the cheapest options
    exceed the budget, the cheapest.
    """
    big = np.where(feasible, 0.0, np.inf)
    rows = np.arange(cost.shape[0])

    def pick(lam: float) -> np.ndarray:
        return np.argmin(cost + lam * error + big, axis=1)

    def ok(lam: float) -> bool:
        return float(cost[rows, pick(lam)].sum()) <= budget

    cheapest = np.argmin(np.where(feasible, cost, np.inf), axis=1)
    if float(cost[rows, cheapest].sum()) > budget:
        return cheapest
    lam = search(ok, want_small=False)
    choice = pick(lam) if ok(lam) else cheapest
    left = budget - float(cost[rows, choice].sum())

    def best_move(i: int) -> tuple[float, int] | None:
        dc = cost[i] - cost[i, choice[i]]
        de = error[i, choice[i]] - error[i]
        fit = feasible[i] & (de > 0) & (dc > 0) & (dc <= left)
        if not fit.any():
            return None
        ratio = np.where(fit, de / np.where(fit, dc, 1.0), -np.inf)
        k = int(np.argmax(ratio))
        return float(ratio[k]), k

    heap = []
    for i in range(cost.shape[0]):
        move = best_move(i)
        if move is not None:
            heap.append((-move[0], i, move[1], int(choice[i])))
    heapq.heapify(heap)
    while heap:
        _, i, k, was = heapq.heappop(heap)
        dc = float(cost[i, k] - cost[i, choice[i]])
        if was != choice[i] or dc > left:
            move = best_move(i)
            if move is not None:
                heapq.heappush(heap, (-move[0], i, move[1], int(choice[i])))
            continue
        left -= dc
        choice[i] = k
        move = best_move(i)
        if move is not None:
            heapq.heappush(heap, (-move[0], i, move[1], k))
    return choice
