"""The best any per-tile plan can do: brute-force strides that reach a PSNR at least compute.

Usage: python bench/oracle_plan.py SCENE [-c CONFIG] [--psnr 40] [--floor-db 35]

Runs the scene once at every allowed stride, measures each tile's error against the dense
(normalised) reference, starts every tile at its coarsest stride whose own PSNR reaches the
floor (``--floor-db``, default 5 dB under the target, as refine's ``tolerance_db`` sets it),
then refines greedily, always the tile whose next finer stride removes the most error per unit
of compute, until the worst band reaches the PSNR. Prints the compute share of that plan, check
samples not counted: a lower bound for what a planner can reach with the same reconstruction.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from quality import dense_reference

from satconv import api, config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scene", type=Path)
    p.add_argument("-c", "--config")
    p.add_argument("--psnr", type=float, default=40.0)
    p.add_argument("--floor-db", type=float, help="no tile under this PSNR (default: psnr - 5)")
    a = p.parse_args()
    floor = a.psnr - 5 if a.floor_db is None else a.floor_db
    base = config.load(a.config)
    ref, valid = dense_reference(a.scene, base)
    bands, h, w = ref.shape
    t = base.tile_size
    peak = np.array([np.ptp(ref[b][valid[b]]) for b in range(bands)])
    count = valid.sum(axis=(1, 2))
    ny, nx = -(-h // t), -(-w // t)
    err = {}
    for s in base.strides:
        settings = config.from_dict({**base.to_dict(), "strides": [s]})
        with tempfile.TemporaryDirectory() as tmp:
            api.run_scene(a.scene, settings, output=Path(tmp) / "o.tif")
            with rasterio.open(Path(tmp) / "o.tif") as ds:
                out = ds.read().astype(np.float64)
        e = np.where(valid, (out - ref) ** 2, 0.0) / peak[:, None, None] ** 2
        e /= count[:, None, None]
        err[s] = np.array([[e[:, ty * t:(ty + 1) * t, tx * t:(tx + 1) * t].sum(axis=(1, 2))
                            for tx in range(nx)] for ty in range(ny)])
    tile_valid = np.array([[valid[:, ty * t:(ty + 1) * t, tx * t:(tx + 1) * t].sum(axis=(1, 2))
                            for tx in range(nx)] for ty in range(ny)])
    pixels = np.array([[min(t, h - ty * t) * min(t, w - tx * t) for tx in range(nx)]
                       for ty in range(ny)], dtype=float)
    order = sorted(base.strides)
    target = 10 ** (-a.psnr / 10)
    # each tile's own normalised MSE at stride s, per band: err[s] scaled back to the tile
    share = count[None, None, :] / np.maximum(tile_valid, 1)
    level = np.zeros((ny, nx), dtype=np.int64)
    for li, s in enumerate(order):  # ends at the coarsest stride meeting the floor
        level = np.where((err[s] * share).max(axis=-1) <= 10 ** (-floor / 10), li, level)

    def total() -> np.ndarray:
        return sum(err[order[level[ty, tx]]][ty, tx] for ty in range(ny) for tx in range(nx))

    while total().max() > target and (level > 0).any():
        best, pick = -1.0, None
        for ty in range(ny):
            for tx in range(nx):
                li = level[ty, tx]
                if li == 0:
                    continue
                s, f = order[li], order[li - 1]
                gain = (err[s][ty, tx] - err[f][ty, tx]).max()
                cost = pixels[ty, tx] * (1 / f**2 - 1 / s**2)
                if gain / cost > best:
                    best, pick = gain / cost, (ty, tx)
        level[pick] -= 1
    strides = np.array(order)[level]
    frac = float((pixels / strides**2).sum() / pixels.sum())
    psnr = -10 * np.log10(total().max())
    hist = {int(k): int(v) for k, v in zip(*np.unique(strides, return_counts=True),
                                           strict=True)}
    print(f"{a.scene.name}: oracle compute {100 * frac:.1f} % ({1 / frac:.1f}x fewer than "
          f"stride 1) for {psnr:.2f} dB, no tile under {floor:g} dB, tiles per stride {hist}")


if __name__ == "__main__":
    main()
