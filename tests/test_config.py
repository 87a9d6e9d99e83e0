"""satconv.config: the YAML contract of SPEC section 4, defaults, and strict rejections."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from satconv import config, kernels
from satconv.errors import ConfigError

# SPEC section 4, verbatim (comments included): every key must work exactly as written.
CONTRACT_YAML = """\
kernel:                 # one of: a named kernel ...
  type: gaussian        # gaussian | box | sobel_x | sobel_y | laplacian | sharpen | custom
  size: 5               # odd
  sigma: 1.0            # gaussian only
  # weights: [[0, 1, 0], [1, -4, 1], [0, 1, 0]]   # type: custom (odd square or rectangle)
boundary: reflect       # reflect | mirror | nearest | constant | wrap
cval: 0.0               # constant only
tile_size: 256
strides: [1, 2, 4]      # allowed strides (powers of two; tile_size a multiple of each)
policy:
  type: variance        # variance | budget | refine   (context combines with any)
  window: 8
  statistic: max        # max | mean | p90
  thresholds: auto      # auto, or a list of variances, one per step from stride 1 up
  # fraction: 0.3       # budget: share of the full-resolution compute to spend
  # tolerance: 0.5      # refine: largest allowed reconstruction RMSE per tile, in output units
  # tolerance_db: 40    # refine: or a PSNR target for the whole output (peak = its value
                        #   range); tiles share the error budget, none below target - 5 dB
context:                # optional
  # mask: roi.tif       # non-zero pixels are regions of interest
  # geometries: roi.geojson
  # inside_stride: 1
  # skip_outside: false
reconstruction: bilinear  # bilinear | nearest
output:
  dtype: float32        # float32 | float64 | same
  compress: deflate     # deflate | zstd | lzw | none
  cog: false
"""


def test_defaults_load_without_a_file():
    s = config.load(None)
    assert s.kernel.type == "gaussian" and s.kernel.size == 5 and s.kernel.sigma == 1.0
    assert s.boundary == "reflect" and s.cval == 0.0
    assert s.tile_size == 256 and s.strides == [1, 2, 4]
    assert s.policy.type == "variance" and s.policy.window == 8
    assert s.policy.thresholds == "auto"
    assert s.context is None and s.reconstruction == "bilinear"
    assert (s.output.dtype, s.output.compress, s.output.cog) == ("float32", "deflate", False)
    np.testing.assert_allclose(s.kernel.array(), kernels.gaussian(5, 1.0))


def test_default_config_file_matches_built_in_defaults():
    """configs/default.yaml documents the defaults: it must say exactly what no config means
    (statistic: mean, chosen over SPEC's max because it predicts the error; see README)."""
    root = Path(__file__).resolve().parents[1]
    assert config.load(root / "configs" / "default.yaml") == config.load(None)
    assert config.load(None).policy.statistic == "mean"


def test_contract_example_accepted_as_written(write_config):
    s = config.load(write_config(CONTRACT_YAML))
    assert s.kernel.type == "gaussian" and s.kernel.size == 5 and s.kernel.sigma == 1.0
    assert s.boundary == "reflect" and s.cval == 0.0 and s.tile_size == 256
    assert s.strides == [1, 2, 4]
    assert (s.policy.type, s.policy.window, s.policy.statistic) == ("variance", 8, "max")
    assert s.policy.thresholds == "auto"
    assert s.reconstruction == "bilinear"
    assert (s.output.dtype, s.output.compress, s.output.cog) == ("float32", "deflate", False)


def _uncomment(text: str, key: str) -> str:
    """Turn the commented contract line for ``key`` into a real one (same indentation)."""
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(f"# {key}:"):
            indent = line[: len(line) - len(stripped)]
            lines.append(indent + stripped[2:])
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def test_contract_commented_keys_accepted_as_written(write_config):
    """The commented alternatives of the contract, switched on, are accepted too."""
    custom = _uncomment(CONTRACT_YAML, "weights").replace("type: gaussian", "type: custom")
    s = config.load(write_config(custom, "custom.yaml"))
    np.testing.assert_array_equal(s.kernel.array(), [[0, 1, 0], [1, -4, 1], [0, 1, 0]])

    text = CONTRACT_YAML
    for key in ("fraction", "tolerance", "tolerance_db", "mask", "geometries",
                "inside_stride", "skip_outside"):
        text = _uncomment(text, key)
    path = write_config(text, "all.yaml")
    for name in ("roi.tif", "roi.geojson"):  # the context files it names must be there
        (path.parent / name).touch()
    s = config.load(path)
    assert s.policy.fraction == 0.3 and s.policy.tolerance == 0.5
    assert s.policy.tolerance_db == 40
    assert s.context is not None
    assert (s.context.mask, s.context.geometries) == ("roi.tif", "roi.geojson")
    assert s.context.inside_stride == 1 and s.context.skip_outside is False


@pytest.mark.parametrize("yaml_text", [
    "policy: {type: budget, fraction: 0.3}",
    "policy: {type: refine, tolerance: 0.5}",
    "policy: {type: refine, tolerance_db: 40}",
    "policy: {thresholds: [100, 50]}",
    "policy: {thresholds: [100.5, 0]}",
    "policy: {statistic: p90}",
    "kernel: {type: custom, weights: [[1, 2, 3]]}",
    "kernel: {type: custom, weights: [[1], [2], [3], [4], [5], [6], [7]]}",
    "kernel: {type: box, size: 7}",
    "kernel: {type: sobel_y}",
    "kernel: {sigma: 2}",
    "boundary: constant\ncval: -3",
    "boundary: wrap",
    "tile_size: 64\nstrides: [1, 2, 4, 8, 16, 32, 64]",
    "strides: [4, 1, 2]",
    "reconstruction: nearest",
    "output: {dtype: same, compress: zstd, cog: true}",
    "",
])
def test_other_valid_configs(write_config, yaml_text):
    s = config.load(write_config(yaml_text + "\n"))
    # whatever was written comes back out of to_dict
    written = yaml.safe_load(yaml_text) or {}
    effective = s.to_dict()
    for key, value in written.items():
        if isinstance(value, dict):
            for k2, v2 in value.items():
                assert effective[key][k2] == v2, (key, k2)
        elif key == "strides":
            assert effective[key] == sorted(value)
        else:
            assert effective[key] == value


def test_settings_round_trip_through_json_and_yaml(write_config):
    s = config.load(write_config("kernel: {type: custom, weights: [[1, 2, 3]]}\n"
                                 "boundary: mirror\ntile_size: 128\n"))
    again = config.from_dict(json.loads(s.to_json()))
    assert again == s
    assert config.from_dict(yaml.safe_load(config.default_yaml())) == config.Settings()


@pytest.mark.parametrize(("yaml_text", "key", "reason"), [
    ("kernel: {size: 4}", "kernel.size", "odd"),
    ("kernel: {type: custom, weights: [[1, 2], [3, 4]]}", "kernel.weights", "odd"),
    ("kernel: {type: custom, weights: [[1, .nan, 1]]}", "kernel.weights", "finite"),
    ("kernel: {type: custom, weights: [[1, .inf, 1]]}", "kernel.weights", "finite"),
    ("kernel: {type: custom, weights: [[1, 2, 3], [4, 5]]}", "kernel.weights", "rectangular"),
    ("kernel: {type: custom, weights: [[1.0e+308, 1.0e+308, 1.0e+308]]}", "kernel.weights",
     "overflow"),
    ("kernel: {type: custom, weights: [[1.0e-300, 1.0e-300, 1.0e-300]]}", "kernel.weights",
     "vanish"),
    ("kernel: {type: custom}", "kernel", "weights"),
    ("kernel: {type: gaussian, sigma: 0}", "kernel.sigma", "sigma"),
    ("kernel: {type: gaussian, sigma: .nan}", "kernel.sigma", "sigma"),
    ("kernel: {type: mexican_hat}", "kernel.type", "gaussian"),
    ("strides: [1, 3]", "strides", "power of two"),
    ("strides: [1, 2, 6]", "strides", "power of two"),
    ("strides: [0, 1]", "strides", "power of two"),
    ("tile_size: 100\nstrides: [1, 8]", "tile_size", "multiple of stride 8"),
    ("boundary: periodic", "boundary", "reflect"),
    ("boundary: constant\ncval: .nan", "cval", "finite"),
    ("tile_size: big", "tile_size", "integer"),
    ("tile_size: 256.5", "tile_size", "integer"),
    ("tile_size: '256'", "tile_size", "integer"),
    ("output: {cog: maybe}", "output.cog", "bool"),
    ("output: {dtype: int8}", "output.dtype", "float32"),
    ("kernel: {size: 5, colour: red}", "kernel.colour", "unknown key"),
    ("kernal: {size: 5}", "kernal", "unknown key"),
    ("policy: {thresholds: [1, 2]}", "policy.thresholds", "increase"),
    ("policy: {thresholds: [100]}", "policy.thresholds", "2 values"),
    ("policy: {thresholds: sometimes}", "policy.thresholds", ""),
    ("policy: {window: 1}", "policy.window", ""),
    ("policy: {statistic: median}", "policy.statistic", "max"),
    ("policy: {thresholds_relative_to: range}", "policy.thresholds_relative_to", "scene"),
    ("policy: {thresholds_relative_to: scene}", "policy", "list of thresholds"),
    ("reconstruction: bicubic", "reconstruction", "bilinear"),
    ("strides: [1, 2, 512]", "strides", "the largest satconv takes"),
])
def test_rejections_name_the_key(write_config, yaml_text, key, reason):
    path = write_config(yaml_text + "\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    msg = str(info.value)
    assert info.value.exit_code == 2
    assert str(path) in msg
    assert key in msg
    assert reason in msg
    assert "\n" not in msg  # one line


@pytest.mark.parametrize(("yaml_text", "line"), [
    ("kernel: {size: 5}\nstrides: [1, 8]\ntile_size: 100", 3),
    ("strides: [1, 2]\ncontext:\n  inside_stride: 4", 3),
])
def test_rules_across_keys_give_their_keys_line(write_config, yaml_text, line):
    """A rule that spans keys (tile size against strides) names its key in the text; the
    message also gives that key's line, as for any other key."""
    with pytest.raises(ConfigError, match=rf"\(line {line}\)$"):
        config.load(write_config(yaml_text + "\n"))


def test_top_level_must_be_a_mapping(write_config):
    with pytest.raises(ConfigError, match="mapping") as info:
        config.load(write_config("- 1\n- 2\n"))
    assert info.value.exit_code == 2


def test_yaml_syntax_error_names_the_line(write_config):
    text = textwrap.dedent("""\
        kernel:
          type: gaussian
        boundary: [reflect
        tile_size: 256
        """)
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    msg = str(info.value)
    assert info.value.exit_code == 2
    assert str(path) in msg and "YAML syntax error" in msg
    assert "line 4" in msg or "line 3" in msg


def test_yaml_bad_indentation_names_the_line(write_config):
    path = write_config("kernel:\n  type: box\n    size: 3\n")
    with pytest.raises(ConfigError, match=r"line 3"):
        config.load(path)


def test_yaml_is_loaded_safely(write_config):
    path = write_config("kernel: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.exit_code == 2


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config") as info:
        config.load(tmp_path / "nope.yaml")
    assert info.value.exit_code == 2


EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.skipif(not EXAMPLES, reason="no example configs in configs/")
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_are_valid(path):
    """SPEC 4: configs/ holds documented examples; each must load and document itself."""
    s = config.load(path)
    assert isinstance(s, config.Settings)
    assert "#" in path.read_text(encoding="utf-8")  # documented, not bare
    assert s.warnings() == []  # no key an example sets goes unused


@pytest.mark.parametrize("kernel,warned", [
    ({"type": "sobel_x", "size": 5}, "kernel.size: sobel_x is 3x3; size 5 is not used"),
    ({"type": "laplacian", "size": 7}, "kernel.size: laplacian is 3x3; size 7 is not used"),
    ({"type": "box", "sigma": 3.0}, "kernel.sigma: only type gaussian uses it, not box"),
    ({"type": "custom", "size": 7, "weights": [[1.0, 2.0, 1.0]]},
     "kernel.size: a custom kernel is as large as its weights (1x3); size 7 is not used"),
    ({"type": "gaussian", "size": 7, "sigma": 2.0}, None),
    ({"type": "sobel_y"}, None),
    ({"type": "box", "size": 9, "sigma": 1.0}, None),  # the default sigma, as config init writes
])
def test_keys_a_kernel_does_not_use_are_warned_about(kernel, warned):
    """Accepted (a config written for another type still runs), but said: the warning names
    the key and why, and a fixed-size kernel's effective size is its own, 3."""
    s = config.from_dict({"kernel": kernel})
    assert s.warnings() == ([warned] if warned else [])
    if kernel["type"] in config.FIXED_SIZE:
        assert s.kernel.array().shape == (3, 3)
        if "size" not in kernel:
            assert s.to_dict()["kernel"]["size"] == 3


def test_unused_keys_reach_validate_and_the_run(write_config, write_tif, tmp_path):
    """``config validate`` prints the warning; a run prints it as a warning line naming the
    input, records it in the report (plan.config_warnings) and exits 0."""
    from click.testing import CliRunner

    from satconv.scripts.cli import cli

    path = write_config("kernel: {type: sobel_x, size: 5}\nstrides: [1]\n")
    res = CliRunner().invoke(cli, ["config", "validate", str(path)])
    assert res.exit_code == 0
    assert "warning: kernel.size: sobel_x is 3x3" in res.output
    scene = write_tif(np.arange(40 * 30, dtype=np.float32).reshape(1, 40, 30))
    res = CliRunner().invoke(cli, ["run", str(scene), "-c", str(path), "--out-dir",
                                   str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"{scene}: warning: kernel.size: sobel_x is 3x3" in res.output
    rep = json.loads(next(tmp_path.glob("*.satconv.json")).read_text())
    assert rep["plan"]["config_warnings"] == ["kernel.size: sobel_x is 3x3; size 5 is not used"]
