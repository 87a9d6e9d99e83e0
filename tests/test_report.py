"""The run report's own figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from satconv.report import peak_memory_mb

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc only")
def test_peak_memory_is_the_runs_own_not_its_parents():
    """A run started by a large parent (a batch driver, a benchmark) reports its own peak:
    ``ru_maxrss`` survives exec and would report the parent's."""
    ballast = np.ones(400 * 1024 * 1024 // 8)  # this process: 400 MB resident
    ballast[::512] = 2.0
    child = subprocess.run(
        [sys.executable, "-c", "from satconv.report import peak_memory_mb; "
         "print(peak_memory_mb())"],
        capture_output=True, text=True, check=True, cwd=ROOT)
    assert float(child.stdout) < 200, child.stdout
    assert peak_memory_mb() >= 400  # and this process's own peak is seen
    del ballast


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only")
def test_each_run_reports_its_own_peak_memory_not_an_earlier_runs():
    """A batch runs its scenes one after another in one process: a small scene after a big
    one reported the big one's peak. Each run restarts the high-water mark."""
    from satconv.report import reset_peak_memory

    reset_peak_memory()
    base = peak_memory_mb()
    big = np.ones(300 * 2**20 // 8)  # 300 MB, touched
    assert peak_memory_mb() >= base + 250
    del big
    reset_peak_memory()
    assert peak_memory_mb() < base + 100
