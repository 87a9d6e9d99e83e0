"""``make bench``: quality of the default plan on the reference scenes against the dense
result, then speed ratios against references measured in the same run (``speed.py``).

Writes bench/results/quality.json, speed.md and speed.json. Nothing here is a test and nothing
asserts a timing.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from quality import measure  # noqa: E402

from satconv import config  # noqa: E402


def shared_data() -> Path | None:
    env = os.environ.get("SATCONV_TEST_DATA")
    for p in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if p.is_dir():
            return p
    return None


def main() -> None:
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
    if "--quality-only" not in sys.argv:
        import speed

        speed.main()


if __name__ == "__main__":
    main()
