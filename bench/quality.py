"""Quality of an adaptive run against the dense result: PSNR and compute, per scene.

Usage: python bench/quality.py SCENE [-c CONFIG] [--uniform]

Runs ``satconv run`` through the library, computes the dense reference with
``scipy.ndimage.convolve`` over the whole image, and prints PSNR over valid pixels (peak = the
dense output's value range, worst band) and the compute fraction. ``--uniform`` also prints
every uniform stride for comparison. For scenes that fit in memory.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import oracle  # noqa: E402  (the scipy-only reference the tests use)


def dense_reference(path: Path, settings: config.Settings) -> tuple[np.ndarray, np.ndarray]:
    """The dense (normalised over valid pixels) convolution of every data band, and the
    input's validity as rasterio reports it; an alpha band is a mask, not data."""
    k = settings.kernel.array()
    with rasterio.open(path) as ds:
        bands = [i for i, ci in enumerate(ds.colorinterp, start=1)
                 if ci != rasterio.enums.ColorInterp.alpha]
        x = ds.read(bands).astype(np.float64)
        valid = np.stack([ds.read_masks(b) > 0 for b in bands]) & ~np.isnan(x)
    y = np.stack([
        oracle.normalised_dense(x[b], valid[b], k, settings.boundary, settings.cval,
                                settings.min_valid_fraction)
        for b in range(x.shape[0])
    ])
    return y, valid & ~np.isnan(y)


def psnr(out: np.ndarray, ref: np.ndarray, valid: np.ndarray) -> float:
    """Worst band PSNR over valid pixels, peak = the reference's valid range in that band."""
    worst = np.inf
    for b in range(ref.shape[0]):
        m = valid[b] & np.isfinite(out[b])
        if not m.any():
            continue
        r = ref[b][m]
        peak = r.max() - r.min()
        mse = np.mean((out[b][m] - r) ** 2)
        if mse == 0 or peak == 0:
            continue
        worst = min(worst, 10 * np.log10(peak * peak / mse))
    return float(worst)


def measure(path: Path, settings: config.Settings) -> dict:
    """Run satconv on ``path`` and compare with the dense reference."""
    ref, valid = dense_reference(path, settings)
    with tempfile.TemporaryDirectory() as tmp:
        rep = api.run_scene(path, settings, output=Path(tmp) / "out.tif")
        with rasterio.open(Path(tmp) / "out.tif") as ds:
            out = ds.read().astype(np.float64)
    return {"psnr_db": round(psnr(out, ref, valid), 2),
            "compute_fraction": rep.plan["compute_fraction"],
            "tiles_per_stride": rep.plan["tiles_per_stride"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scene", type=Path)
    p.add_argument("-c", "--config")
    p.add_argument("--set", action="append", default=[], help="key=json overrides, a.b=1")
    p.add_argument("--uniform", action="store_true")
    a = p.parse_args()
    data = config.load(a.config).to_dict()
    for item in a.set:
        key, val = item.split("=", 1)
        node = data
        *path, last = key.split(".")
        for k in path:
            node = node.setdefault(k, {})
        node[last] = json.loads(val)
    settings = config.from_dict(data)
    res = {"adaptive": measure(a.scene, settings)}
    if a.uniform:
        for s in settings.strides:
            d = dict(data, strides=[s], policy={"type": "variance"})
            res[f"uniform {s}"] = measure(a.scene, config.from_dict(d))
    json.dump(res, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
