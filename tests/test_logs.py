"""Issue 6: logs for cron and log collectors — JSON lines, quiet, no progress bar without a
terminal, tracebacks only with --debug."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from .conftest import write_geotiff

REPO = Path(__file__).resolve().parents[1]


def satconv(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm"}
    return subprocess.run([sys.executable, "-m", "satconv", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def scenes(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    good = write_geotiff(tmp_path / "good.tif",
                         rng.integers(0, 9999, size=(1, 100, 130), dtype=np.uint16))
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 64)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tile_size: 32\n")  # 4 x 5 = 20 tiles
    return good, bad, cfg


def parse_lines(text: str) -> list[dict]:
    events = []
    for line in text.splitlines():
        obj = json.loads(line)  # every line is one JSON object
        assert isinstance(obj, dict) and "event" in obj and "time" in obj
        events.append(obj)
    return events


def test_json_log_parses_line_by_line(tmp_path):
    good, bad, cfg = scenes(tmp_path)
    proc = satconv("run", good, bad, "-c", cfg, "--log-format", "json", "--progress-every", "5")
    assert proc.returncode == 1
    assert proc.stdout == ""
    events = parse_lines(proc.stderr)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "batch_start" and kinds[-1] == "batch_done"
    for_good = [e for e in events if e.get("input") == str(good)]
    assert [e["event"] for e in for_good][0] == "start"
    assert for_good[-1]["event"] == "done"
    progress = [(e["phase"], e["done"], e["total"]) for e in for_good
                if e["event"] == "progress"]
    assert progress == [(p, n, 20) for p in ("plan", "execute") for n in (5, 10, 15, 20)]
    failed = [e for e in events if e["event"] == "failed"]
    assert len(failed) == 1 and failed[0]["input"] == str(bad)
    assert failed[0]["error"].startswith(f"{bad}: ") and failed[0]["exit_code"] == 1
    assert "traceback" not in failed[0]
    end = events[-1]
    assert (end["inputs"], end["done"], end["skipped"], end["failed"]) == (2, 1, 0, 1)
    assert end["failures"] == [{"input": str(bad), "error": failed[0]["error"]}]
    report = json.loads((tmp_path / "good.satconv.json").read_text())
    assert for_good[-1]["report"] == str(tmp_path / "good.satconv.json")
    assert report["input"] == str(good)


def test_json_log_with_debug_carries_the_traceback_and_config_errors_are_json(tmp_path):
    good, bad, cfg = scenes(tmp_path)
    proc = satconv("run", bad, "--log-format", "json", "--debug")
    failed = [e for e in parse_lines(proc.stderr) if e["event"] == "failed"]
    assert "Traceback" in failed[0]["traceback"]
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("kernel: {size: 4}\n")
    proc = satconv("run", good, "-c", bad_cfg, "--log-format", "json")
    assert proc.returncode == 2
    (err,) = parse_lines(proc.stderr)
    assert err["event"] == "error" and err["exit_code"] == 2 and "kernel.size" in err["error"]


def test_text_logs_without_a_terminal(tmp_path):
    good, bad, cfg = scenes(tmp_path)
    proc = satconv("run", good, bad, "-c", cfg, "--overwrite")
    assert proc.returncode == 1
    assert "\r" not in proc.stderr and "tile/s" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"{good}: 20 tiles")
    assert lines[1].startswith(f"satconv: {bad}: ")
    assert lines[2] == "satconv: 1 of 2 inputs failed; 1 done, 0 skipped"
    assert len(lines) == 3
    # --progress-every gives plain progress lines for cron logs
    proc = satconv("run", good, "-c", cfg, "--overwrite", "--progress-every", "10")
    assert proc.returncode == 0
    assert proc.stderr.splitlines()[:4] == [f"{good}: {phase} {n}/20 tiles"
                                            for phase in ("plan", "execute") for n in (10, 20)]


def test_quiet_prints_failures_only(tmp_path):
    good, bad, cfg = scenes(tmp_path)
    proc = satconv("run", good, "-c", cfg, "-q")
    assert proc.returncode == 0 and proc.stderr == ""
    proc = satconv("run", good, bad, "-c", cfg, "-q", "--skip-existing")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[1:] == ["satconv: 1 of 2 inputs failed"]
    assert proc.stderr.splitlines()[0].startswith(f"satconv: {bad}: ")


def test_option_errors_are_one_line_in_either_log_format(tmp_path):
    """An unknown option or a bad value is a usage error like a bad config: one line (exit 2),
    with --log-format json one JSON error event, not click's usage text."""
    good, _, _ = scenes(tmp_path)
    for args in (["--jobs", "0", "--log-format", "json"], ["--bogus", "--log-format=json"]):
        done = satconv("run", good, *args)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        event = json.loads(lines[0])
        assert event["event"] == "error" and event["exit_code"] == 2
        assert ("--jobs" in event["error"]) or ("--bogus" in event["error"])
    for args, problem in ((["--bogus"], "No such option '--bogus'"),
                          (["--jobs", "0"], "Invalid value for '--jobs'")):
        text = satconv("run", good, *args)  # text logs: one line too, saying where help is
        assert text.returncode == 2
        (line,) = text.stderr.splitlines()
        assert line.startswith(f"satconv: run: {problem}"), line
        assert line.endswith("(see satconv run --help)"), line
    bare = satconv()
    assert bare.returncode == 2 and bare.stderr.startswith("Usage: satconv")  # the help
