"""The YAML configuration contract as validated models, and strict loading.

Every key of the contract has a built-in default, so no file is needed. Unknown keys and bad
values raise :class:`~satconv.errors.ConfigError` with the key path and the reason.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from . import kernels
from .errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class KernelConfig(_Strict):
    """kernel: a named kernel, or custom weights."""

    type: Literal["gaussian", "box", "sobel_x", "sobel_y", "laplacian", "sharpen", "custom"] = (
        "gaussian"
    )
    size: int = Field(5, ge=1, le=255)
    sigma: float = 1.0
    weights: list[list[float]] | None = None

    @field_validator("size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"kernel size must be odd, got {v}")
        return v

    @field_validator("sigma")
    @classmethod
    def _sigma(cls, v: float) -> float:
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"sigma must be a finite number > 0, got {v}")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: list[list[float]] | None) -> list[list[float]] | None:
        if v is None:
            return v
        if not v or any(len(row) != len(v[0]) for row in v) or not v[0]:
            raise ValueError("weights must be a non-empty rectangular list of rows")
        if len(v) % 2 == 0 or len(v[0]) % 2 == 0:
            raise ValueError(f"weights must have odd height and width, got {len(v)}x{len(v[0])}")
        if not all(math.isfinite(x) for row in v for x in row):
            raise ValueError("weights must be finite numbers (no NaN or infinity)")
        if all(x == 0 for row in v for x in row):
            raise ValueError("weights are all zero")
        return v

    @model_validator(mode="after")
    def _custom_has_weights(self) -> KernelConfig:
        if self.type == "custom" and self.weights is None:
            raise ValueError("type custom needs weights")
        if self.type != "custom" and self.weights is not None:
            raise ValueError(f"weights are only used with type custom, not {self.type}")
        return self

    def array(self) -> np.ndarray:
        """The kernel as a float64 array (scipy convolution convention)."""
        return kernels.make_kernel(self.type, self.size, self.sigma, self.weights)


class PolicyConfig(_Strict):
    """policy: how a stride is chosen for each tile."""

    type: Literal["variance", "budget", "refine"] = "variance"
    window: int = Field(8, ge=2, le=1024)
    statistic: Literal["max", "mean", "p90"] = "mean"
    thresholds: Literal["auto"] | list[float] = "auto"
    fraction: float | None = Field(None, gt=0, le=1)
    tolerance: float | None = Field(None, gt=0, allow_inf_nan=False)
    tolerance_db: float | None = Field(None, gt=0, le=200, allow_inf_nan=False)
    target_error: float = Field(
        0.01, gt=0, lt=1,
        description="thresholds auto: predicted RMS error of the whole scene, as a share of "
        "each band's output value range (0.01 is a predicted PSNR of 40 dB)",
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: str | list[float]) -> str | list[float]:
        if isinstance(v, list):
            if not all(math.isfinite(x) and x >= 0 for x in v):
                raise ValueError("thresholds must be finite variances >= 0")
            if any(b > a for a, b in zip(v, v[1:], strict=False)):
                raise ValueError("thresholds must not increase (one per step from stride 1 up)")
        return v

    @model_validator(mode="after")
    def _policy_needs(self) -> PolicyConfig:
        if self.type == "budget" and self.fraction is None:
            raise ValueError("type budget needs policy.fraction (the share of the "
                             "full-resolution compute to spend, e.g. 0.3)")
        if self.type == "refine":
            if self.tolerance is None and self.tolerance_db is None:
                raise ValueError("type refine needs policy.tolerance (RMS error per tile, in "
                                 "output units) or policy.tolerance_db (PSNR target)")
            if self.tolerance is not None and self.tolerance_db is not None:
                raise ValueError("type refine takes policy.tolerance or policy.tolerance_db, "
                                 "not both")
        return self


class ContextConfig(_Strict):
    """context: regions of interest that force a stride.

    ``mask``: a raster whose non-zero pixels are regions of interest (any grid or CRS).
    ``geometries``: a GeoJSON file of polygons or boxes (any CRS; ``crs`` member, else
    EPSG:4326 as GeoJSON says). ``detections``: a JSON list of object detections, each with a
    pixel-space ``bbox`` (``bbox_format`` xywh as COCO, or xyxy). Relative paths are relative
    to the config file's folder.
    """

    mask: str | None = None
    geometries: str | None = None
    detections: str | None = None
    bbox_format: Literal["xywh", "xyxy"] = "xywh"
    inside_stride: int = Field(1, ge=1, le=128)
    skip_outside: bool = False
    _base_dir: Path | None = PrivateAttr(None)

    @field_validator("inside_stride")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"inside_stride {v} is not a power of two")
        return v

    def path(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder when it is relative."""
        p = Path(value).expanduser()
        return p if p.is_absolute() or self._base_dir is None else self._base_dir / p

    def sources(self) -> list[str]:
        return [k for k in ("mask", "geometries", "detections") if getattr(self, k)]


class OutputConfig(_Strict):
    """output: data type and encoding of the filtered raster."""

    dtype: Literal["float32", "float64", "same"] = "float32"
    compress: Literal["deflate", "zstd", "lzw", "none"] = "deflate"
    cog: bool = False


class Settings(_Strict):
    """The whole effective configuration of a run."""

    kernel: KernelConfig = KernelConfig()
    boundary: Literal["reflect", "mirror", "nearest", "constant", "wrap"] = "reflect"
    cval: float = 0.0
    tile_size: int = Field(256, ge=1, le=65536)
    strides: list[int] = Field(default_factory=lambda: [1, 2, 4])
    max_stride: Literal["auto", "none"] | int = Field(
        "auto",
        description="auto: cap strides by the kernel's frequency response (kernels.safe_stride); "
        "none: no cap; or a stride to cap at",
    )
    policy: PolicyConfig = PolicyConfig()
    context: ContextConfig | None = None
    reconstruction: Literal["bilinear", "nearest", "cubic"] = "bilinear"
    min_valid_fraction: float = Field(0.5, ge=0, le=1)
    output: OutputConfig = OutputConfig()

    @field_validator("cval")
    @classmethod
    def _cval(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("cval must be finite")
        return v

    @field_validator("strides")
    @classmethod
    def _strides(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("strides must list at least one stride")
        for s in v:
            if s < 1 or s & (s - 1):
                raise ValueError(f"stride {s} is not a power of two")
            if s > 128:
                raise ValueError(f"stride {s} is larger than 128")
        if len(set(v)) != len(v):
            raise ValueError("strides must not repeat")
        return sorted(v)

    @field_validator("max_stride")
    @classmethod
    def _max_stride(cls, v: str | int) -> str | int:
        if isinstance(v, int) and (v < 1 or v & (v - 1)):
            raise ValueError(f"max_stride {v} is not a power of two (or auto, none)")
        return v

    @model_validator(mode="after")
    def _fits(self) -> Settings:
        for s in self.strides:
            if self.tile_size % s:
                raise ValueError(f"tile_size {self.tile_size} is not a multiple of stride {s}")
        if self.context is not None and self.context.inside_stride not in self.strides:
            raise ValueError(f"context.inside_stride {self.context.inside_stride} is not one of "
                             f"strides {self.strides}")
        t = self.policy.thresholds
        if isinstance(t, list) and len(t) != len(self.strides) - 1:
            raise ValueError(
                f"policy.thresholds needs {len(self.strides) - 1} values for strides "
                f"{self.strides}, got {len(t)}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as it would be written in YAML (None values dropped)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def _format_validation(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def from_dict(data: Any, source: str = "config") -> Settings:
    """Validate plain data against the contract."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_format_validation(err)}") from None


def load(path: str | Path | None) -> Settings:
    """Read and validate a YAML config file; ``None`` gives the built-in defaults."""
    if path is None:
        return Settings()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{p}: cannot read config: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: config is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: YAML syntax error{where}: {err.problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: YAML error: {err}") from None
    settings = from_dict(data, str(p))
    if settings.context is not None:  # its paths are relative to the config's folder
        settings.context._base_dir = p.resolve().parent
    return settings


def default_yaml() -> str:
    """The built-in defaults as YAML text (what ``satconv config init`` writes)."""
    return yaml.safe_dump(Settings().to_dict(), sort_keys=False)
