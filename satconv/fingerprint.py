"""What makes two runs the same run: hashes of the input's metadata and the effective config.

The run report records them (``fingerprint``); ``--skip-existing`` skips an input whose three
outputs exist and whose report has the same fingerprint, and ``--resume`` only continues a
checkpoint with the same fingerprint.

The input is identified by its metadata, not its pixels (hashing a 10^9-pixel scene would cost
a full read): file size and modification time, and what GDAL reports of it (size, bands, type,
nodata, validity, CRS, transform, GCPs). A rewritten or touched input is therefore a different
input. The config hash covers the effective config (built-in defaults included) and, with
``--plan``, the bytes of the stride map executed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .config import Settings
from .raster_io import RasterInfo


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def input_digest(info: RasterInfo) -> str:
    """SHA-256 of the input's file size, modification time and raster metadata."""
    meta: dict[str, Any] = {
        "width": info.width, "height": info.height, "count": info.count, "dtype": info.dtype,
        "nodata": None if info.nodata is None else repr(float(info.nodata)),
        "mask": info.mask, "bands": list(info.bands),
        "crs": info.crs.to_wkt() if info.crs else None,
        "transform": [float(v) for v in tuple(info.transform)[:6]],
        "gcps": [[g.row, g.col, g.x, g.y] for g in info.gcps],
        "scales": list(info.scales), "offsets": list(info.offsets),
    }
    try:
        st = os.stat(info.path)
        meta["size"], meta["mtime_ns"] = st.st_size, st.st_mtime_ns
    except OSError:  # a URL (input.allow_urls): its metadata only
        pass
    return _sha(json.dumps(meta, sort_keys=True).encode())


#: Policy keys added after outputs were first fingerprinted, with the value that behaves as
#: satconv did before they existed. At that value they are left out of the config hash, so an
#: upgrade does not make every earlier output look made with another config (``--skip-existing``
#: would redo a whole archive, ``--resume`` would not continue).
UNCHANGED_BY_DEFAULT = {"thresholds_relative_to": "absolute"}


def _without_neutral_keys(d: Any) -> Any:
    if isinstance(d, list):
        return [_without_neutral_keys(v) for v in d]
    if not isinstance(d, dict):
        return d
    out = {k: _without_neutral_keys(v) for k, v in d.items()}
    if isinstance(out.get("policy"), dict):
        out["policy"] = {k: v for k, v in out["policy"].items()
                         if UNCHANGED_BY_DEFAULT.get(k, object()) != v}
    return out


def config_digest(settings: Settings, plan_path: Path | None = None) -> str:
    """SHA-256 of the effective config, and of the stride map's bytes with ``--plan``."""
    text = json.dumps(_without_neutral_keys(settings.to_dict()), sort_keys=True,
                      separators=(",", ":"))
    h = hashlib.sha256(text.encode())
    if plan_path is not None:
        h.update(b"\0plan\0")
        try:
            h.update(Path(plan_path).read_bytes())
        except OSError:
            h.update(str(plan_path).encode())
    return h.hexdigest()


def of_run(info: RasterInfo, settings: Settings, plan_path: Path | None = None,
           ) -> dict[str, str]:
    """The fingerprint recorded in the report: ``{"input": ..., "config": ...}``."""
    return {"input": input_digest(info), "config": config_digest(settings, plan_path)}


def recorded(report: Path) -> dict[str, str] | None:
    """The fingerprint an existing report records, or None (no report, not satconv's, or
    unreadable)."""
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
        fp = data["fingerprint"]
        return {"input": str(fp["input"]), "config": str(fp["config"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None
