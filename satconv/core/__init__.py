"""numba kernels: arrays in, arrays out. Nothing here knows about files, YAML or tiles' geography.

- ``conv``: correlation of a padded block at the samples of a grid (direct and separable).
- ``stats``: windowed variance and per-block summaries used by the planner.
- ``reconstruct``: bilinear and nearest interpolation of a sample grid to full resolution.
- ``surplus``, ``encode``: hierarchical surpluses of a sample grid; output type conversion.
- ``cache_dir``: where the compiled kernels are cached (settled here, before any is imported).
"""

from pathlib import Path

from . import cache_dir

cache_dir.settle(Path(__file__).parent)
