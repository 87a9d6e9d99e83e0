"""``make bench``: the benchmark scripts in turn, printing their markdown tables.

- ``policies.py``: the stride policies against the dense result on the sample scene and
  ``../shared/data/world.byte.tif`` (the figures of issue 4), cubic and bilinear.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUNS = [
    ["policies.py", "--reconstruction", "cubic"],
    ["policies.py", "--reconstruction", "bilinear"],
]


def main() -> None:
    for script, *args in RUNS:
        print(f"## bench/{script} {' '.join(args)}\n", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *args], check=True)
        print(flush=True)


if __name__ == "__main__":
    main()
