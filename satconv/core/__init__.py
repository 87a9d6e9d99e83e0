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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import cache_dir

_HERE = Path(__file__).parent
cache_dir.settle(_HERE)


def _kernels() -> Iterator[Any]:
    """Every compiled kernel of this package (every kernel module imported)."""
    from numba.core.dispatcher import Dispatcher

    for found in pkgutil.iter_modules([str(_HERE)]):
        module = importlib.import_module(f"{__name__}.{found.name}")
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher) and obj.__module__ == module.__name__:
                yield obj


def cache_folders() -> set[Path]:
    """The folders numba caches this package's kernels in (every kernel module imported)."""
    folders = set()
    for kernel in _kernels():
        path = getattr(getattr(kernel, "_cache", None), "cache_path", None)
        if path:
            folders.add(Path(path))
    return folders


def compiled_count() -> int:
    """How many kernel versions this process has compiled so far, rather than loaded from
    numba's cache."""
    return sum(sum(kernel.stats.cache_misses.values()) for kernel in _kernels())


cache_dir.drop_stale(_HERE, cache_folders())
