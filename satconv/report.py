"""The run report written beside the outputs as ``*.satconv.json``."""

from __future__ import annotations

import contextlib
import ctypes
import json
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__


def reset_peak_memory() -> None:
    """Start a new high-water mark for :func:`peak_memory_mb`, so that a run's report gives
    its own peak, not that of an earlier, larger scene of the same batch process: the C heap
    hands the memory it kept back to the system (glibc ``malloc_trim``), then ``VmHWM``
    restarts from the resident size (Linux ``clear_refs``). Elsewhere nothing changes."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    On Linux the high-water mark of this process's own memory (``VmHWM``): ``ru_maxrss``
    survives ``exec``, so a run started by a large parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


@dataclass
class RunReport:
    """Everything a run did, as plain data: the JSON report and the one-line summary."""

    input: str
    outputs: dict[str, str]
    config: dict[str, Any]
    scene: dict[str, Any]
    plan: dict[str, Any]
    execute: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    satconv_version: str = __version__
    #: hashes of the input's metadata and the effective config (``satconv.fingerprint``)
    fingerprint: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "satconv_version": self.satconv_version,
            "input": self.input,
            "outputs": self.outputs,
            "scene": self.scene,
            "config": self.config,
            "fingerprint": self.fingerprint,
            "plan": self.plan,
            "execute": self.execute,
            "error": self.error,
            "timings_s": self.timings,
            "peak_memory_mb": self.peak_memory_mb,
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @property
    def warnings(self) -> list[str]:
        """What the plan could not do as configured (``planning.plan_warnings``)."""
        from .planning import plan_warnings

        return plan_warnings(self.plan)

    def compute_spent(self) -> float:
        """Kernel evaluations as a share of full resolution (the plan's share of samples
        for a report without an execute pass)."""
        return self.execute.get("evaluations_per_pixel", self.plan.get("compute_fraction", 0.0))

    def summary_line(self) -> str:
        """``scene.tif: 12 tiles (1:4 2:6 4:2), compute 38.5% of full resolution, 1.2 s``."""
        tiles = self.execute.get("tiles_per_stride") or self.plan.get("tiles_per_stride", {})
        per = " ".join(f"{k}:{v}" for k, v in tiles.items())
        frac = 100 * self.compute_spent()
        total = self.timings.get("total", 0.0)
        psnr = self.error.get("overall", {}).get("psnr_db") if self.error else None
        # the estimate errs high by design (the error map's rule): a lower bound on PSNR
        err = f", estimated PSNR >= {psnr:.1f} dB" if psnr is not None else ""
        return (
            f"{self.input}: {sum(tiles.values())} tiles (stride:tiles {per}), "
            f"compute {frac:.1f}% of full resolution{err}, {total:.1f} s"
        )
