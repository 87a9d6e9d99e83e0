"""The policies side by side on one scene, as the error model predicts them: what each would
spend and what error it would leave, and every uniform stride for comparison."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Settings
from ..raster_io import RasterInfo
from . import plan_from_stats
from .inputs import PlanInputs, plan_inputs
from .scan import SceneStats


@dataclass(frozen=True)
class Prediction:
    """One row: a plan's predicted compute (share of full-resolution kernel evaluations),
    RMS error per band (over valid pixels) and PSNR (worst band, peak = output range)."""

    label: str
    compute: float
    rmse: np.ndarray
    psnr_db: float


def predict(label: str, inp: PlanInputs, strides: np.ndarray, compute: float,
             peak: np.ndarray) -> Prediction:
    err = inp.rmse_of(strides)
    w = np.where(strides > 0, inp.weights, 0.0)
    total = w.sum()
    rmse = np.sqrt((w[..., None] * err**2).sum(axis=(0, 1)) / total) if total else \
        np.zeros(err.shape[-1])
    with np.errstate(divide="ignore"):
        psnr = np.where((rmse > 0) & (peak > 0), 20 * np.log10(peak / np.where(rmse > 0, rmse, 1)),
                        np.inf)
    return Prediction(label, compute, rmse, float(psnr.min()) if psnr.size else np.inf)


def compare(info: RasterInfo, settings: Settings, stats: SceneStats,
            inp: PlanInputs | None = None) -> tuple[list[Prediction], list[Prediction]]:
    """Predictions for variance, budget and refine (the configured parameters where given;
    else budget spends what variance does and refine targets variance's PSNR), and for every
    uniform stride."""
    inp = inp if inp is not None else plan_inputs(info, settings, stats)
    peak = inp.output_range()
    pol = settings.policy
    rows = []
    base = settings.model_dump()

    def with_policy(**p: object) -> Settings:
        d = dict(base)
        d["policy"] = {**base["policy"], **p}
        return Settings.model_validate(d)

    def row(label: str, s: Settings) -> Prediction:
        plan = plan_from_stats(info, s, stats, inp)
        return predict(label, inp, plan.strides,
                        plan.details["predicted_evaluations_fraction"], peak)

    how = (f"target_error {pol.target_error:g}" if pol.thresholds == "auto"
           else f"thresholds {', '.join(f'{t:g}' for t in pol.thresholds)}")
    if pol.thresholds_relative_to != "absolute":
        how += f" x {pol.thresholds_relative_to} range²"
    variance = row(f"variance ({how})", with_policy(type="variance"))
    rows.append(variance)
    fraction = pol.fraction if pol.fraction is not None else max(variance.compute, 1e-6)
    rows.append(row(f"budget (fraction {fraction:.4g})",
                    with_policy(type="budget", fraction=min(fraction, 1.0))))
    if pol.tolerance is not None:
        rows.append(row(f"refine (tolerance {pol.tolerance:g})",
                        with_policy(type="refine", tolerance=pol.tolerance, tolerance_db=None)))
    else:
        db = pol.tolerance_db if pol.tolerance_db is not None else -20 * np.log10(
            pol.target_error)
        rows.append(row(f"refine (tolerance_db {db:g})",
                        with_policy(type="refine", tolerance_db=float(db), tolerance=None)))
    uniform = []
    for s in inp.strides:
        strides = np.where(stats.nvalid > 0, s, 0)
        uniform.append(predict(f"uniform stride {s}", inp, strides, inp.cost_of(strides),
                                peak))
    return rows, uniform


def best_uniform(uniform: list[Prediction], psnr_db: float) -> Prediction | None:
    """The cheapest uniform stride whose predicted PSNR reaches ``psnr_db``."""
    ok = [u for u in uniform if u.psnr_db >= psnr_db - 1e-9]
    return min(ok, key=lambda u: u.compute) if ok else None
