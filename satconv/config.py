"""The YAML configuration contract as validated models, and strict loading.

Every key of the contract has a built-in default, so no file is needed. Unknown keys and bad
values raise :class:`~satconv.errors.ConfigError` with the key path and the reason.
"""

from __future__ import annotations

import json
import math
import re
from importlib import resources
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


#: The range of a custom kernel's absolute weight sum: beyond it, filtered values overflow
#: float32 (3.4e38) or sink under its smallest normal number (1.2e-38) for inputs of any type.
WEIGHT_SUM = (1e-20, 1e20)


_DEFAULT_SIZE = 5
_DEFAULT_SIGMA = 1.0
#: Kernel types of a fixed size (3x3): their ``size`` is 3 whatever the config says.
FIXED_SIZE = frozenset({"sobel_x", "sobel_y", "laplacian", "sharpen"})


class KernelConfig(_Strict):
    """kernel: a named kernel, or custom weights."""

    type: Literal["gaussian", "box", "sobel_x", "sobel_y", "laplacian", "sharpen", "custom"] = (
        "gaussian"
    )
    size: int = Field(_DEFAULT_SIZE, ge=1, le=255)
    sigma: float = _DEFAULT_SIGMA
    weights: list[list[float]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _fixed_size(cls, data: Any) -> Any:
        # the effective config of a 3x3 kernel says 3 (not the default 5) unless told otherwise
        if isinstance(data, dict) and data.get("type") in FIXED_SIZE and "size" not in data:
            return {**data, "size": 3}
        return data

    def unused(self, where: str = "kernel") -> list[str]:
        """The keys set to a value this kernel type does not use, one line each. Warned about,
        not refused: a config written for another type still runs as before."""
        found = []
        if self.type in FIXED_SIZE and self.size != 3:
            found.append(f"{where}.size: {self.type} is 3x3; size {self.size} is not used")
        if self.type == "custom" and self.size != _DEFAULT_SIZE and self.weights:
            found.append(f"{where}.size: a custom kernel is as large as its weights "
                         f"({len(self.weights)}x{len(self.weights[0])}); size {self.size} is "
                         "not used")
        if self.type != "gaussian" and self.sigma != _DEFAULT_SIGMA:
            found.append(f"{where}.sigma: only type gaussian uses it, not {self.type}")
        return found

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
        total = sum(abs(x) for row in v for x in row)  # inf past the float range
        if not WEIGHT_SUM[0] <= total <= WEIGHT_SUM[1]:
            raise ValueError(f"weights' absolute sum {total:.3g} is outside "
                             f"[{WEIGHT_SUM[0]:g}, {WEIGHT_SUM[1]:g}]: the output would "
                             "overflow or vanish; scale the kernel")
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
    thresholds_relative_to: Literal["absolute", "scene", "dtype"] = Field(
        "absolute",
        description="a list of thresholds: variances as given (absolute), or shares of the "
        "square of each band's value range over the scene (scene) or of its data type's "
        "range (dtype, integer inputs), so one config fits uint8 and uint16 scenes alike",
    )
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
        if self.thresholds_relative_to != "absolute" and self.thresholds == "auto":
            raise ValueError("thresholds_relative_to applies to a list of thresholds; auto "
                             "thresholds follow each band's range already (target_error)")
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

    ``mask``: a raster whose non-zero pixels are regions of interest (any grid or CRS; one
    without a CRS, or over a scene without one, is matched pixel for pixel and must have the
    scene's size). ``geometries``: a GeoJSON file of polygons or boxes (any CRS; ``crs``
    member, else EPSG:4326 as GeoJSON says). ``detections``: a JSON list of object detections,
    each with a ``bbox`` (``bbox_format`` xywh as COCO, or xyxy), in pixels of the scene, or
    with ``bbox_crs`` in map coordinates of that CRS (x east, y north). At least one of
    the three is required (the settings refuse a context without). Relative paths are
    relative to the config file's folder.
    """

    mask: str | None = None
    geometries: str | None = None
    detections: str | None = None
    bbox_format: Literal["xywh", "xyxy"] = "xywh"
    bbox_crs: str | None = None
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
        """The keys of the region sources given: ``mask``, ``geometries``, ``detections``."""
        return [k for k in ("mask", "geometries", "detections") if getattr(self, k)]


class OutputConfig(_Strict):
    """output: data type and encoding of the filtered raster."""

    dtype: Literal["float32", "float64", "same"] = "float32"
    compress: Literal["deflate", "zstd", "lzw", "none"] = "deflate"
    cog: bool = False


class InputConfig(_Strict):
    """input: what satconv agrees to open. Inputs are untrusted: GDAL picks a format by a
    file's content, and some formats (VRT) read other files or the network."""

    drivers: list[str] = Field(default_factory=lambda: ["GTiff"])
    allow_urls: bool = False

    @field_validator("drivers")
    @classmethod
    def _drivers(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("drivers must list at least one GDAL driver, e.g. [GTiff]")
        if len({d.casefold() for d in v}) != len(v):
            raise ValueError("drivers must not repeat")
        # GDAL's list of drivers (imported here, late, so plain config use stays light).
        import rasterio

        with rasterio.Env() as env:
            known = {d.casefold(): d for d in env.drivers()}
        unknown = [d for d in v if d.casefold() not in known]
        if unknown:
            raise ValueError(f"GDAL has no driver {', '.join(unknown)}")
        return [known[d.casefold()] for d in v]


class LimitsConfig(_Strict):
    """limits: the largest input satconv accepts, checked right after opening it, before any
    pixel is read. Raise them for scenes that legitimately exceed them."""

    max_pixels: int = Field(4_000_000_000, ge=1)
    max_bands: int = Field(256, ge=1)
    max_block_bytes: int = Field(64 * 1024 * 1024, ge=1)
    max_tiles: int = Field(1_000_000, ge=1)


class StepConfig(_Strict):
    """steps[]: one of several kernels run over the same input in one pass of reading, with
    its own policy (default: the top-level one) and outputs ``NAME<suffix>.satconv.tif``,
    ``.stride.tif``, ``.satconv.json`` (suffix default: ``.<name>``)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    kernel: KernelConfig
    policy: PolicyConfig | None = None
    suffix: str | None = Field(None, min_length=1, max_length=64,
                               pattern=r"^[.A-Za-z0-9_-]+$")

    def output_suffix(self) -> str:
        return self.suffix if self.suffix is not None else f".{self.name}"


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
    reconstruction: Literal["bilinear", "nearest", "cubic", "spline"] = "bilinear"
    min_valid_fraction: float = Field(0.5, ge=0, le=1)
    output: OutputConfig = OutputConfig()
    input: InputConfig = InputConfig()
    limits: LimitsConfig = LimitsConfig()
    steps: list[StepConfig] | None = None

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[StepConfig] | None) -> list[StepConfig] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("steps must list at least one step (or be left out)")
        for what, values in (("names", [st.name for st in v]),
                             ("output suffixes", [st.output_suffix() for st in v])):
            if len(set(values)) != len(values):
                raise ValueError(f"steps must have distinct {what}")
        return v

    def warnings(self) -> list[str]:
        """Keys set to a value the configured kernels do not use (``KernelConfig.unused``)."""
        found = self.kernel.unused()
        for st in self.steps or []:
            found += st.kernel.unused(f"steps[{st.name}].kernel")
        return found

    def step_settings(self) -> list[tuple[StepConfig, Settings]]:
        """Each step as the settings of a single-kernel run: these settings with the step's
        kernel and policy, and no steps."""
        out = []
        base = self.to_dict()
        base.pop("steps", None)
        for st in self.steps or []:
            d = {**base, "kernel": st.kernel.model_dump(mode="json", exclude_none=True)}
            if st.policy is not None:
                d["policy"] = st.policy.model_dump(mode="json", exclude_none=True)
            out.append((st, Settings.model_validate(d)))
        return out

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
                raise ValueError(f"stride {s} is larger than 128, the largest satconv takes")
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
        if self.context is not None and not self.context.sources():
            # no region: inside_stride forces nothing, skip_outside would skip every tile
            key = "context.skip_outside" if self.context.skip_outside else "context"
            raise ValueError(f"{key} needs a mask, geometries or detections")
        t = self.policy.thresholds
        if isinstance(t, list) and len(t) != len(self.strides) - 1:
            raise ValueError(
                f"policy.thresholds needs {len(self.strides) - 1} values for strides "
                f"{self.strides}, got {len(t)}"
            )
        return self

    @model_validator(mode="after")
    def _steps_fit(self) -> Settings:
        for i, st in enumerate(self.steps or []):
            t = (st.policy or self.policy).thresholds
            if isinstance(t, list) and len(t) != len(self.strides) - 1:
                raise ValueError(
                    f"steps.{i}.policy.thresholds needs {len(self.strides) - 1} values for "
                    f"strides {self.strides}, got {len(t)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as it would be written in YAML (None values dropped)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


#: Problems a config error names; the rest are counted (a kernel of strings would otherwise
#: give one message per weight, on one line).
MAX_PROBLEMS = 3


def _format_validation(err: ValidationError, lines: dict[tuple, int] | None = None) -> str:
    parts = []
    errors = err.errors()
    for e in errors[:MAX_PROBLEMS]:
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        key = tuple(e["loc"])
        if not key:  # a rule across keys names its key first: "tile_size 100 is not ..."
            key = tuple(msg.split(" ", 1)[0].rstrip(":").split("."))
        line = _line_of(key, lines or {})
        where = f" (line {line})" if line else ""
        parts.append(f"{loc}: {msg}{where}" if loc else f"{msg}{where}")
    if len(errors) > MAX_PROBLEMS:
        parts.append(f"and {len(errors) - MAX_PROBLEMS} more")
    return "; ".join(parts)


def _line_of(loc: tuple, lines: dict[tuple, int]) -> int | None:
    """The line of the deepest key or item of ``loc`` the YAML file has."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def from_dict(data: Any, source: str = "config", lines: dict[tuple, int] | None = None,
              ) -> Settings:
    """Validate plain data against the contract (``lines``: YAML line of each key path)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_format_validation(err, lines)}") from None


# ---------------------------------------------------------------- strict YAML

#: A config larger than this is refused before parsing (the largest custom kernel, 255x255
#: weights, is well under it).
MAX_CONFIG_BYTES = 1024 * 1024
#: Anchors plus aliases a config may use: enough for sharing a few blocks, far too few for an
#: exponential "billion laughs" expansion.
MAX_ALIASES = 32
#: Nesting depth of blocks and lists (PyYAML recurses once per level).
MAX_DEPTH = 64

_STR, _BOOL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"


class StrictYAMLError(yaml.MarkedYAMLError):
    """YAML that parses but is refused: ambiguous, duplicated or too large."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without YAML 1.1's surprises.

    Refused, each with its line: duplicate keys (YAML keeps the last silently), keys that are
    not strings (``1:``, ``on:``, ``[a, b]:``), the YAML 1.1 booleans ``yes/no/on/off`` (write
    ``true``/``false``, or quote them to mean text), base-60 numbers (``1:30`` is 90) and
    leading-zero octals (``010`` is 8), more than :data:`MAX_ALIASES` anchors and aliases, and
    nesting deeper than :data:`MAX_DEPTH`. Numbers with an exponent but no decimal point
    (``1e-3``) or no sign after the ``e`` (``1.0e9``), which YAML 1.1 reads as text, are
    numbers, as in YAML 1.2.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._anchors = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            self._anchors += 1
            if self._anchors > MAX_ALIASES:
                raise StrictYAMLError(None, None, f"more than {MAX_ALIASES} anchors and "
                                      "aliases (&name, *name)", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise StrictYAMLError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                      event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, _ in node.value:
                if key.tag == _MERGE:
                    continue
                if not isinstance(key, yaml.ScalarNode) or key.tag != _STR:
                    what = key.value if isinstance(key, yaml.ScalarNode) else "a list or block"
                    hint = (" (a YAML 1.1 boolean)" if key.tag == _BOOL else "")
                    raise StrictYAMLError(None, None, f"key {what!s}{hint} is not a string; "
                                          "quote it", key.start_mark)
                if key.value in seen:
                    raise StrictYAMLError(None, None, f"duplicate key {key.value!r} (first at "
                                          f"line {seen[key.value]})", key.start_mark)
                seen[key.value] = key.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_bool(self, node: yaml.ScalarNode) -> bool:
        if node.value.lower() not in ("true", "false"):
            raise StrictYAMLError(None, None, f"{node.value} is a YAML 1.1 boolean; write true "
                                  f"or false, or quote it ('{node.value}') to mean text",
                                  node.start_mark)
        return node.value.lower() == "true"

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        v = node.value.replace("_", "").lstrip("+-")
        if ":" in v or (len(v) > 1 and v[0] == "0" and v[1].isdigit()):
            kind = "a base-60 number" if ":" in v else "an octal number"
            raise StrictYAMLError(None, None, f"{node.value} reads as {kind} in YAML 1.1; "
                                  "quote it, or write a plain decimal", node.start_mark)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        if ":" in node.value:
            raise StrictYAMLError(None, None, f"{node.value} reads as a base-60 number in YAML "
                                  "1.1; quote it, or write a plain decimal", node.start_mark)
        return super().construct_yaml_float(node)


StrictLoader.add_constructor(_BOOL, StrictLoader.construct_yaml_bool)
StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_yaml_float)
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                   re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)"
                                              r"[eE][-+]?[0-9]+$"),
                                   list("-+.0123456789"))


def _key_lines(node: yaml.Node | None) -> dict[tuple, int]:
    """The line of every key and list item, by path (``("policy", "window")``)."""
    lines: dict[tuple, int] = {}
    seen: set[int] = set()

    def walk(n: yaml.Node, path: tuple) -> None:
        if id(n) in seen:  # a node shared through an alias: walked once
            return
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode):
                    lines.setdefault(path + (k.value,), k.start_mark.line + 1)
                    walk(v, path + (k.value,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                lines.setdefault(path + (i,), v.start_mark.line + 1)
                walk(v, path + (i,))

    if node is not None:
        walk(node, ())
    return lines


def parse_yaml(text: str, source: str = "config") -> tuple[Any, dict[tuple, int]]:
    """Parse one YAML document strictly (:class:`StrictLoader`); return the data and the line
    of each key path. Raise :class:`ConfigError` naming the line."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except StrictYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"{source}: {where}{err.problem}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: YAML syntax error{where}: {err.problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: YAML error: {err}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None
    finally:
        loader.dispose()
    return data, _key_lines(node)


def load(path: str | Path | None) -> Settings:
    """Read and validate a YAML config file; ``None`` gives the built-in defaults.

    The file is read strictly (:func:`parse_yaml`) and must be at most
    :data:`MAX_CONFIG_BYTES`. Every problem is a :class:`ConfigError` of one line naming the
    file and, where there is one, the line.
    """
    if path is None:
        return Settings()
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{p}: cannot read config: {err.strerror or err}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        line = raw[:MAX_CONFIG_BYTES].count(b"\n") + 1
        raise ConfigError(f"{p}: line {line}: config is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ConfigError(f"{p}: line {line}: config is not UTF-8 text") from None
    data, lines = parse_yaml(text, str(p))
    settings = from_dict(data, str(p), lines)
    if settings.context is not None:  # its paths are relative to the config's folder
        settings.context._base_dir = p.resolve().parent
        _check_context_files(settings.context, str(p), lines)
    return settings


def _check_context_files(ctx: ContextConfig, source: str, lines: dict[tuple, int]) -> None:
    """A context file that is not there fails the config (exit 2, before any input), not
    every input of a batch one after the other. URLs and GDAL paths are left to GDAL."""
    for key in ctx.sources():
        value = getattr(ctx, key)
        if "://" in value or value.startswith("/vsi"):
            continue
        target = ctx.path(value)
        if not target.is_file():
            what = "is not a file" if target.exists() else "no such file"
            line = _line_of(("context", key), lines)
            where = f" (line {line})" if line else ""
            raise ConfigError(f"{source}: context.{key}: {what}: {target}{where}")


def check_context_contents(settings: Settings) -> None:
    """Read the context's geometries and detections files now and raise a
    :class:`ConfigError` naming the file for what is wrong with one (exit 2, before any
    input); otherwise every input of a batch would fail on the same file."""
    if settings.context is not None:
        from .planning import context

        context.check_files(settings.context)


def default_yaml() -> str:
    """The built-in defaults as YAML text, every key with a comment that says what it does
    (what ``satconv config init`` writes; ``configs/default.yaml`` is the same file)."""
    return (resources.files(__package__) / "default_config.yaml").read_text(encoding="utf-8")
