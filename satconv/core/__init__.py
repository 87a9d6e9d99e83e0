"""numba kernels: arrays in, arrays out. Nothing here knows about files, YAML or tiles' geography.

- ``conv``: correlation of a padded block at the samples of a grid (direct and separable).
- ``stats``: windowed variance and per-block summaries used by the planner.
- ``reconstruct``: bilinear and nearest interpolation of a sample grid to full resolution.
- ``surplus``, ``encode``: hierarchical surpluses of a sample grid; output type conversion.
- ``window_dot``: strided correlation as one vector dot product per sample (``conv`` calls it).
- ``cache_dir``: where the compiled kernels are cached (settled here, before any is imported),
  and cleared here when any kernel module changed.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from . import cache_dir

_HERE = Path(__file__).parent
cache_dir.settle(_HERE)


def cache_folders() -> set[Path]:
    """The folders numba caches this package's kernels in (every kernel module imported)."""
    from numba.core.dispatcher import Dispatcher

    folders = set()
    for found in pkgutil.iter_modules([str(_HERE)]):
        module = importlib.import_module(f"{__name__}.{found.name}")
        for obj in vars(module).values():
            path = getattr(getattr(obj, "_cache", None), "cache_path", None)
            if isinstance(obj, Dispatcher) and path:
                folders.add(Path(path))
    return folders


cache_dir.drop_stale(_HERE, cache_folders())
