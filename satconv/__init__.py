"""satconv: adaptive-stride convolution of large GeoTIFFs, tile by tile.

The Python API (loaded on first use, so ``import satconv`` stays light)::

    satconv.run(inputs, config=None, *, output=None, out_dir=None, plan=None,
                overwrite=False, threads=None, quicklook=False) -> RunReport
    satconv.plan(input, config=None, *, output=None) -> PlanResult
    satconv.preview(path, output=None, *, size=640) -> Path

See :mod:`satconv.python_api`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "run": "python_api",
    "plan": "python_api",
    "preview": "python_api",
    "load_config": "python_api",
    "PlanResult": "python_api",
    "RunReport": "report",
    "Settings": "config",
    "SatconvWarning": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'satconv' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
