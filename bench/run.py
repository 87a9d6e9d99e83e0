"""``make bench``: every benchmark in one run, each printing markdown tables.

1. The default plan's quality on the reference scenes against the dense result
   (bench/results/quality.json).
2. ``policies.py``: the stride policies against the dense result on the sample scene and
   ``../shared/data/world.byte.tif`` (the figures of issue 4), cubic and bilinear.
3. ``speed.py``: speed ratios against references measured in the same run (OpenCV, scipy, a
   rasterio + scipy script, the I/O floor; bench/results/speed.md and speed.json).

Nothing here is a test and nothing asserts a timing.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "bench"
sys.path.insert(0, str(HERE))

from quality import measure  # noqa: E402

from satconv import config  # noqa: E402

POLICY_RUNS = [
    ["policies.py", "--reconstruction", "spline"],
    ["policies.py", "--reconstruction", "cubic"],
    ["policies.py", "--reconstruction", "bilinear"],
]


def shared_data() -> Path | None:
    env = os.environ.get("SATCONV_TEST_DATA")
    for p in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if p.is_dir():
            return p
    return None


def quality() -> None:
    settings = config.load(ROOT / "configs" / "landsat-gaussian.yaml")
    scenes = [ROOT / "sample_data" / "sample_scene.tif"]
    data = shared_data()
    if data:
        scenes += [data / "world.byte.tif", data / "RGB.byte.tif"]
    rows = []
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print("| scene | PSNR (dB) | compute | tiles per stride |")
    print("| --- | --- | --- | --- |")
    for scene in scenes:
        res = measure(scene, settings)
        rows.append({"scene": scene.name, **res})
        print(f"| {scene.name} | {res['psnr_db']:.2f} | {100 * res['compute_fraction']:.1f} % | "
              f"{res['tiles_per_stride']} |")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "quality.json").write_text(json.dumps(rows, indent=2) + "\n")


def main() -> None:
    print("## default plan quality\n", flush=True)
    quality()
    for script, *args in POLICY_RUNS:
        print(f"\n## bench/{script} {' '.join(args)}\n", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *args], check=True)
    print("\n## speed\n", flush=True)
    import speed

    speed.main()


if __name__ == "__main__":
    main()
