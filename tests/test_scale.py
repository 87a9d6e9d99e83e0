"""Scale (SPEC 5): memory stays bounded by the tiles in flight, not by the scene size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_20000_square_uint16_runs_under_600_mb(tmp_path):
    scene = tmp_path / "big.tif"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_scene.py"), str(scene),
                    "--size", "20000", "--bands", "1"], check=True, capture_output=True)
    # a fresh parent whose only child is the satconv run: its RUSAGE_CHILDREN peak is the run's
    probe = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-m', 'satconv', 'run', sys.argv[1], '-q'])\n"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    res = subprocess.run([sys.executable, "-c", probe, str(scene)], capture_output=True,
                         text=True)
    code, peak_kb = (int(v) for v in res.stdout.split())
    assert code == 0, res.stderr
    assert peak_kb / 1024 < 600, f"peak resident memory {peak_kb / 1024:.0f} MB"
    report = json.loads((tmp_path / "big.satconv.json").read_text())
    assert report["scene"]["width"] == report["scene"]["height"] == 20000
    assert report["peak_memory_mb"] < 600, report["peak_memory_mb"]
    assert (tmp_path / "big.satconv.tif").stat().st_size > 0
