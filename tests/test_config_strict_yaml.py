"""Issue 7: strict YAML. ``yaml.safe_load`` turns ``yes`` into true and ``1:30`` into 90, keeps
the last of duplicate keys silently, accepts non-string keys and expands alias bombs. satconv's
loader refuses each, naming the line; the command exits 2 with one line. The SPEC's config
contract (section 4) and the shipped configs still load exactly as written.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from satconv import config
from satconv.errors import ConfigError
from satconv.scripts.cli import cli

from .test_config import CONTRACT_YAML

REPO = Path(__file__).resolve().parents[1]

#: SPEC section 4, verbatim: these keys must keep working exactly as written.
SPEC_CONTRACT = CONTRACT_YAML


def write(tmp_path: Path, text: str | bytes, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def test_spec_contract_loads_as_written(tmp_path):
    s = config.load(write(tmp_path, SPEC_CONTRACT))
    assert s.kernel.type == "gaussian" and s.kernel.size == 5 and s.kernel.sigma == 1.0
    assert s.boundary == "reflect" and s.cval == 0.0 and s.tile_size == 256
    assert s.strides == [1, 2, 4]
    assert (s.policy.type, s.policy.window, s.policy.statistic, s.policy.thresholds) == (
        "variance", 8, "max", "auto")
    assert s.context is None and s.reconstruction == "bilinear"
    assert (s.output.dtype, s.output.compress, s.output.cog) == ("float32", "deflate", False)
    # the new keys have their documented defaults
    assert s.input.drivers == ["GTiff"] and s.input.allow_urls is False
    assert s.limits.max_bands == 256 and s.limits.max_pixels == 4_000_000_000


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    assert isinstance(config.load(path), config.Settings)


def test_default_yaml_documents_every_default():
    """configs/default.yaml spells out the built-in defaults, new keys included, and is what
    ``satconv config init`` writes."""
    assert config.load(REPO / "configs" / "default.yaml") == config.Settings()
    assert (REPO / "configs" / "default.yaml").read_text() == config.default_yaml()


# (name, YAML text, line the error must name, what the message must say)
REFUSED = [
    ("duplicate_top", "tile_size: 256\nkernel:\n  type: box\ntile_size: 128\n", 4,
     "duplicate key 'tile_size' (first at line 1)"),
    ("duplicate_nested", "policy:\n  window: 8\n  statistic: max\n  window: 16\n", 4,
     "duplicate key 'window' (first at line 2)"),
    ("duplicate_flow", "output: {cog: false, cog: true}\n", 1, "duplicate key 'cog'"),
    ("yes_for_bool", "output:\n  cog: yes\n", 2, "yes is a YAML 1.1 boolean"),
    ("no_for_string", "boundary: no\n", 1, "no is a YAML 1.1 boolean"),
    ("on_for_number", "cval: 1.0\ntile_size: on\n", 2, "on is a YAML 1.1 boolean"),
    ("off_for_string", "policy:\n  statistic: Off\n", 2, "Off is a YAML 1.1 boolean"),
    ("YES_in_list", "strides: [1, YES]\n", 1, "YES is a YAML 1.1 boolean"),
    ("int_key", "kernel:\n  1: box\n", 2, "key 1 is not a string"),
    ("bool_key", "on: 3\n", 1, "key on (a YAML 1.1 boolean) is not a string"),
    ("null_key", "~: 3\n", 1, "key ~ is not a string"),
    ("float_key", "output:\n  dtype: float32\n  2.5: x\n", 3, "key 2.5 is not a string"),
    ("list_key", "? [a, b]\n: c\n", 1, "key a list or block is not a string"),
    ("base60", "tile_size: 4:16\n", 1, "4:16 reads as a base-60 number"),
    ("octal", "tile_size: 0256\n", 1, "0256 reads as an octal number"),
    ("deep", "a: " + "[" * 100 + "]" * 100 + "\n", 1, "nested more than 64 levels deep"),
]


@pytest.mark.parametrize("name,text,line,message", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_with_line(tmp_path, name, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value).startswith(f"{path}: line {line}: {message}"), str(err.value)
    # the command: exit 2, one line, for `config validate` and for `run`
    for args in (["config", "validate", str(path)], ["run", "x.tif", "-c", str(path)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stderr.splitlines() == [f"satconv: {err.value}"]


def test_safe_load_would_have_accepted_them():
    """The cases above are real traps: plain safe_load takes every one without complaint
    (deep nesting aside), silently changing meaning."""
    assert yaml.safe_load("output:\n  cog: yes\n") == {"output": {"cog": True}}
    assert yaml.safe_load("tile_size: 256\ntile_size: 128\n") == {"tile_size": 128}
    assert yaml.safe_load("tile_size: 4:16\n") == {"tile_size": 256}
    assert yaml.safe_load("tile_size: 0256\n") == {"tile_size": 174}
    assert yaml.safe_load("on: 3\n") == {True: 3}


def test_quoted_or_true_false_are_fine(tmp_path):
    for name in ("on", "yes"):  # the context files it names must be there
        (tmp_path / name).touch()
    s = config.load(write(tmp_path, "output:\n  cog: true\ncontext:\n  mask: 'on'\n"
                                    "  geometries: \"yes\"\n"))
    assert s.output.cog is True
    assert (s.context.mask, s.context.geometries) == ("on", "yes")
    assert config.load(write(tmp_path, "output:\n  cog: False\n", "f.yaml")).output.cog is False


def test_alias_bomb_refused_fast(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    path = write(tmp_path, "\n".join(levels) + "\n")
    # 1 anchor on line 1, then 1 + 9 a line: the 33rd is the first alias of line 5
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r": line 5: more than 32 anchors and aliases"):
        config.load(path)
    assert time.perf_counter() - t0 < 1.0


def test_alias_bound_is_exact():
    ok = "a: &a 1\n" + "".join(f"b{i}: *a\n" for i in range(config.MAX_ALIASES - 1))
    data, _ = config.parse_yaml(ok)
    assert len(data) == config.MAX_ALIASES
    with pytest.raises(ConfigError, match=rf"line {config.MAX_ALIASES + 1}: more than"):
        config.parse_yaml(ok + "z: *a\n")


def test_size_limit_names_the_line(tmp_path):
    row = "# " + "x" * 97 + "\n"  # 100 bytes a line
    path = write(tmp_path, row * (config.MAX_CONFIG_BYTES // 100 + 10))
    with pytest.raises(ConfigError) as err:
        config.load(path)
    line = config.MAX_CONFIG_BYTES // 100 + 1  # the line holding byte MAX_CONFIG_BYTES
    assert str(err.value) == (f"{path}: line {line}: config is larger than "
                              f"{config.MAX_CONFIG_BYTES} bytes")
    # exactly at the limit is still read (and, all comments, is an empty config)
    assert config.load(write(tmp_path, row * (config.MAX_CONFIG_BYTES // 100), "ok.yaml")) \
        == config.Settings()


def test_endless_config_source_is_not_read_forever():
    with pytest.raises(ConfigError, match="config is larger than"):
        config.load("/dev/zero")


def test_not_utf8_names_the_line(tmp_path):
    path = write(tmp_path, b"tile_size: 256\nboundary: \xff\n")
    with pytest.raises(ConfigError, match=r": line 2: config is not UTF-8 text"):
        config.load(path)


def test_other_yaml_errors_still_one_line(tmp_path):
    for text, pattern in (("a: 1\n---\nb: 2\n", r"line 2, column 1: .*another document"),
                          ("x: !!python/object:os.system ls\n", r"line 1, column 4: .*python"),
                          ("kernel: [\n", r"line 2, column 1")):
        with pytest.raises(ConfigError, match=pattern):
            config.load(write(tmp_path, text))


def test_validation_errors_name_the_line(tmp_path):
    path = write(tmp_path, "tile_size: 256\nkernel:\n  type: box\n  size: 4\n"
                           "policy:\n  windw: 8\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    msg = str(err.value)
    assert "kernel.size: kernel size must be odd, got 4 (line 4)" in msg
    assert "policy.windw: unknown key (line 6)" in msg


def test_new_keys_are_validated(tmp_path):
    with pytest.raises(ConfigError, match=r"input\.drivers: .*GDAL has no driver NoSuchFormat "
                                          r"\(line 2\)"):
        config.load(write(tmp_path, "input:\n  drivers: [GTiff, NoSuchFormat]\n"))
    with pytest.raises(ConfigError, match=r"limits\.max_bands: .*greater than or equal to 1"):
        config.load(write(tmp_path, "limits:\n  max_bands: 0\n"))
    s = config.load(write(tmp_path, "input:\n  drivers: [gtiff, png]\n  allow_urls: true\n"
                                    "limits:\n  max_pixels: 10000000000\n"))
    assert s.input.drivers == ["GTiff", "PNG"] and s.input.allow_urls
    assert s.limits.max_pixels == 10**10


def test_numbers_with_an_exponent_and_no_point_are_numbers(tmp_path):
    """YAML 1.1 reads ``1e-3``, and ``1.0e9`` (an exponent without its sign), as text, and
    the config was refused with 'Input should be a valid number'; they are numbers, as in
    YAML 1.2 (quoted, still text)."""
    p = write(tmp_path, "kernel: {type: custom, weights: [[1e-3, 2E0, 1e0]]}\n"
                        "policy: {type: budget, fraction: 25e-2}\n")
    s = config.load(p)
    assert s.kernel.weights == [[0.001, 2.0, 1.0]]
    assert s.policy.fraction == 0.25
    data, _ = config.parse_yaml("a: '1e-3'\nb: 1e\nc: 1_000e-3\n")
    assert data == {"a": "1e-3", "b": "1e", "c": 1.0}
    data, _ = config.parse_yaml("a: 1.0e9\nb: 1.5E3\nc: -2.e2\nd: .5e1\ne: '1.0e9'\n"
                                "f: 1.0e+9\ng: 1.e\n")
    assert data == {"a": 1e9, "b": 1500.0, "c": -200.0, "d": 5.0, "e": "1.0e9", "f": 1e9,
                    "g": "1.e"}
    s = config.load(write(tmp_path, "policy: {thresholds: [1.0e9, 1.5e3]}\n"))
    assert s.policy.thresholds == [1e9, 1500.0]


def test_many_problems_make_one_short_line(tmp_path):
    """A kernel of 51x51 bad weights is one problem per weight: the message names the first
    few and counts the rest."""
    rows = ", ".join(["[" + ", ".join(["x"] * 51) + "]"] * 51)
    p = write(tmp_path, f"kernel: {{type: custom, weights: [{rows}]}}\n")
    with pytest.raises(ConfigError) as err:
        config.load(p)
    text = str(err.value)
    assert "\n" not in text and len(text) < 400
    assert "kernel.weights.0.0" in text and f"and {51 * 51 - 3} more" in text
