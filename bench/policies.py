"""The stride policies against the full-resolution result: the figures of issue 4.

Usage: python bench/policies.py [SCENE ...] [--tile-size 64] [--reconstruction bilinear]
       [--tolerance-db 40] [--budget 0.05] [--json]

For each scene (default: the sample scene and ../shared/data/world.byte.tif) the low-pass case
of the issue (Gaussian 13x13, sigma 2, strides 1..16, the kernel's stride cap lifted) is run
with ``policy: {type: refine, tolerance_db: T}``, with every uniform stride, and with the
budget and variance policies, and compared with the dense reference: the normalised
convolution over valid pixels computed here with scipy on the whole image (never satconv's
output). Printed as a markdown table:

- PSNR over valid pixels (peak = the dense output's value range, worst band) and the worst
  tile's PSNR (same peak);
- kernel evaluations (the run report's ``execute.kernel_evaluations``) and how many times fewer
  than stride 1, and than the cheapest uniform stride whose PSNR reaches the policy's;
- how often the run's per-tile error estimate (the error map) is at or above the measured
  error, over the tiles executed at a stride above 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

from satconv import api, config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests import oracle  # noqa: E402  (the scipy-only reference the tests use)

DATA = ROOT.parent / "shared" / "data"
SCENES = [ROOT / "sample_data" / "sample_scene.tif", DATA / "world.byte.tif"]


def dense_reference(path: Path, settings: config.Settings) -> tuple[np.ndarray, np.ndarray]:
    """The normalised dense convolution of every band over its valid pixels, NaN = nodata."""
    k = settings.kernel.array()
    with rasterio.open(path) as ds:
        x = ds.read().astype(np.float64)
        valid = ds.read_masks() > 0
    valid &= ~np.isnan(x)
    out = np.stack([oracle.normalised_dense(x[b], valid[b], k, settings.boundary,
                                            settings.cval, settings.min_valid_fraction)
                    for b in range(x.shape[0])])
    return out, valid


def measure(path: Path, settings: config.Settings, ref: np.ndarray,
            tmp: Path) -> dict[str, object]:
    """Run satconv and compare with the reference, over the pixels valid in both."""
    out_path = tmp / "out.tif"
    rep = api.run_scene(path, settings, output=out_path, overwrite=True, error_map=True)
    with rasterio.open(out_path) as ds:
        out = ds.read().astype(np.float64)
        if ds.nodata is not None and not np.isnan(ds.nodata):
            out[out == ds.nodata] = np.nan
    with rasterio.open(tmp / "out.error.tif") as ds:
        est = ds.read().astype(np.float64)
    with rasterio.open(tmp / "out.stride.tif") as ds:
        strides = ds.read(1)
    both = np.isfinite(ref) & np.isfinite(out)
    peak = np.array([np.nanmax(r) - np.nanmin(r) if np.isfinite(r).any() else 0.0 for r in ref])
    err2 = np.where(both, (out - ref) ** 2, 0.0)
    t = settings.tile_size
    ny, nx = strides.shape
    worst_psnr, above, counted = np.inf, 0, 0
    mse_b = err2.sum(axis=(1, 2)) / np.maximum(both.sum(axis=(1, 2)), 1)
    for ty in range(ny):
        for tx in range(nx):
            sl = (slice(None), slice(ty * t, (ty + 1) * t), slice(tx * t, (tx + 1) * t))
            n = both[sl].sum(axis=(1, 2))
            if not n.any():
                continue
            tile_mse = err2[sl].sum(axis=(1, 2)) / np.maximum(n, 1)
            ok = (n > 0) & (peak > 0)
            if ok.any():
                with np.errstate(divide="ignore"):
                    psnr = 10 * np.log10(peak[ok] ** 2 / tile_mse[ok])
                worst_psnr = min(worst_psnr, float(psnr.min()))
            if strides[ty, tx] > 1:
                counted += 1
                measured = np.sqrt(tile_mse)
                margin = 1e-9 * np.maximum(peak, 1.0)
                above += bool(np.all((est[:, ty, tx] >= measured - margin) | (n == 0)))
    with np.errstate(divide="ignore"):
        psnr = float(np.min(np.where(peak > 0, 10 * np.log10(peak**2 / mse_b), np.inf)))
    return {"psnr_db": psnr, "worst_tile_db": worst_psnr,
            "evaluations": int(rep.execute["kernel_evaluations"]),
            "tiles_per_stride": rep.execute.get("tiles_per_stride", {}),
            "estimate_at_or_above": (above / counted) if counted else None,
            "estimated_psnr_db": rep.error.get("overall", {}).get("psnr_db")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenes", nargs="*", type=Path, default=SCENES)
    p.add_argument("--tile-size", type=int, default=128)
    p.add_argument("--reconstruction", default="bilinear",
                   choices=["bilinear", "cubic", "spline", "nearest"])
    p.add_argument("--tolerance-db", type=float, default=40.0)
    p.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    a = p.parse_args()
    base = {"kernel": {"type": "gaussian", "size": 13, "sigma": 2.0},
            "strides": [1, 2, 4, 8, 16], "max_stride": 16, "tile_size": a.tile_size,
            "reconstruction": a.reconstruction, "output": {"dtype": "float64"}}
    print(f"Gaussian 13x13 sigma 2, strides 1-16, tiles of {a.tile_size}, "
          f"{a.reconstruction} reconstruction; PSNR over valid pixels, peak = dense output "
          "range, worst band\n")
    print("| scene | run | PSNR dB | worst tile dB | evaluations | x fewer than stride 1 | "
          "x fewer than best uniform (stride) | estimate >= measured | tiles per stride |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    raw = {}
    for scene in a.scenes:
        if not scene.exists():
            print(f"| {scene.name} | missing: {scene} | | | | | | | |")
            continue
        s0 = config.from_dict(base)
        ref, _ = dense_reference(scene, s0)
        runs: dict[str, dict[str, object]] = {}
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            for st in base["strides"]:
                runs[f"uniform {st}"] = measure(
                    scene, config.from_dict({**base, "strides": [st]}), ref, tmp)
            refine = config.from_dict(
                {**base, "policy": {"type": "refine", "tolerance_db": a.tolerance_db}})
            runs[f"refine {a.tolerance_db:g} dB"] = measure(scene, refine, ref, tmp)
            variance = config.from_dict(
                {**base, "policy": {"target_error": 10 ** (-a.tolerance_db / 20)}})
            runs["variance auto"] = measure(scene, variance, ref, tmp)
            with rasterio.open(scene) as ds:
                full = ds.width * ds.height * len(ref)
            frac = runs["variance auto"]["evaluations"] / full
            runs[f"budget {frac:.4f}"] = measure(
                scene, config.from_dict({**base, "policy": {"type": "budget",
                                                            "fraction": round(frac, 6)}}),
                ref, tmp)
        full = runs["uniform 1"]["evaluations"]
        for name, r in runs.items():
            reach = [(u["evaluations"], k) for k, u in runs.items()
                     if k.startswith("uniform") and u["psnr_db"] >= r["psnr_db"] - 1e-9]
            best = min(reach) if reach else None
            vs_best = f"{best[0] / r['evaluations']:.2f} ({best[1].split()[1]})" if best else "-"
            est = r["estimate_at_or_above"]
            print(f"| {scene.name} | {name} | {r['psnr_db']:.2f} | {r['worst_tile_db']:.2f} | "
                  f"{r['evaluations']} | {full / r['evaluations']:.1f} | {vs_best} | "
                  f"{'-' if est is None else f'{100 * est:.0f}%'} | {r['tiles_per_stride']} |")
        raw[scene.name] = runs
    if a.json:
        json.dump(raw, sys.stdout, indent=1, default=float)
        print()


if __name__ == "__main__":
    main()
