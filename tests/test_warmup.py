"""Compiling the kernels ahead of the work: ``satconv warmup`` and the warm-up a batch of child
processes does first (``satconv.warmup``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from satconv import batch, config, warmup
from satconv.events import Event
from satconv.scripts.cli import cli
from satconv.scripts.render import Renderer

from .test_batch import listing, scene

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "sample_scene.tif"
REFINE = REPO / "configs" / "refine-water.yaml"

#: Runs satconv in this process, then prints which of satconv's compiled functions numba had
#: to compile rather than load from its cache (``CACHE``), as JSON {name: count}.
COMPILED = """
import importlib, json, pkgutil, sys
from pathlib import Path
from numba.core.registry import CPUDispatcher
import satconv
from satconv import api, config, warmup
what, cfg, *scenes = sys.argv[1:]
settings = config.load(cfg)
counted = warmup.warm_up_counting(settings)[1] if what == "warmup" else None
for i, src in enumerate(scenes):
    api.run_scene(Path(src), settings, output=Path(sys.argv[0]).parent / f"out{i}.tif",
                  overwrite=True, error_map=True)
compiled = {}
for m in pkgutil.walk_packages(satconv.__path__, "satconv."):
    if m.name.endswith("__main__"):
        continue
    for name, obj in vars(importlib.import_module(m.name)).items():
        if isinstance(obj, CPUDispatcher) and obj.__module__ == m.name:
            n = sum(obj.stats.cache_misses.values())
            if n:
                compiled[f"{m.name}.{name}"] = n
# what the warm-up says it compiled is what numba compiled (nothing ran after it)
assert counted is None or counted == sum(compiled.values()), (counted, compiled)
print(json.dumps(compiled))
"""


def compiled_by(tmp_path: Path, cache: Path, *args: object) -> dict[str, int]:
    script = tmp_path / "compiled.py"
    script.write_text(COMPILED)
    env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_after_a_warm_up_a_real_run_compiles_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"  # empty: as right after an install
    warmed = compiled_by(tmp_path, cache, "warmup", REFINE)
    # (the counter sees compilation: the warm-up compiled the convolution core, among others)
    assert any(name.startswith("satconv.core.conv.") for name in warmed), warmed
    # a real uint16 scene with nodata, 4 bands, its own size and tiles: every kernel it needs
    # is loaded from the cache the warm-up filled
    assert compiled_by(tmp_path, cache, "run", REFINE, SAMPLE) == {}


def test_warm_up_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seconds = warmup.warm_up(config.load(REFINE))
    assert seconds > 0
    assert listing(tmp_path) == []


def test_warm_up_without_context_limits_or_large_tiles(tmp_path: Path) -> None:
    roi = tmp_path / "roi.geojson"
    roi.write_text('{"type": "FeatureCollection", "features": []}')
    settings = config.from_dict({
        "tile_size": 2048, "strides": [1, 2, 4],
        "context": {"geometries": str(roi), "skip_outside": True},
        "limits": {"max_pixels": 100}})
    small = warmup._small(settings)
    assert small.tile_size == warmup.MAX_TILE
    assert small.context is None and small.limits == config.Settings().limits
    assert small.kernel == settings.kernel and small.strides == settings.strides
    warmup.warm_up(settings)  # would fail on the limit or find nothing inside the context


def test_cli_warmup(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["warmup", "-c", str(REPO / "configs" / "steps.yaml")])
    assert res.exit_code == 0, res.output
    assert "kernels ready" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("kernel: {type: gaussian, size: 4}\n")
    res = runner.invoke(cli, ["warmup", "-c", str(bad)])
    assert res.exit_code == 2
    assert "kernel" in res.output and "Traceback" not in res.output


def _events(sources: list[Path], out: Path, jobs: int, timeout: float | None = None,
            ) -> list[Event]:
    got: list[Event] = []
    batch.run_batch([str(s) for s in sources], config.Settings(),
                    batch.RunOptions(out_dir=out), got.append, jobs=jobs, timeout=timeout)
    return got


def test_a_batch_of_child_processes_warms_up_first(tmp_path: Path) -> None:
    a, _ = scene(tmp_path, "a.tif", 1)
    b, _ = scene(tmp_path, "b.tif", 2)
    out = tmp_path / "out"
    out.mkdir()
    kinds = [e.kind for e in _events([a, b], out, jobs=2)]
    assert kinds.count("warmup") == 1
    assert kinds.index("warmup") < kinds.index("start")
    assert kinds.count("done") == 2
    kinds = [e.kind for e in _events([a], out, jobs=1, timeout=60)]
    assert kinds.index("warmup") < kinds.index("start")
    # in this process (no children) each kernel is compiled where it is first needed
    assert "warmup" not in [e.kind for e in _events([a, b], out, jobs=1)]


def test_a_failed_warm_up_is_reported_and_the_batch_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(settings: config.Settings | None = None) -> float:
        raise OSError("No space left on device")

    monkeypatch.setattr(warmup, "warm_up", broken)
    a, _ = scene(tmp_path, "a.tif", 1)
    out = tmp_path / "out"
    out.mkdir()
    got = _events([a], out, jobs=2)
    warm = [e for e in got if e.kind == "warmup"]
    assert warm and warm[0].fields == {"error": "No space left on device"}
    assert [e.kind for e in got].count("done") == 1


@pytest.mark.parametrize(("fields", "shown"), [
    ({"seconds": 1.2}, None),
    ({"seconds": 41.0}, "satconv: compiled the kernels in 41 s (once after an install or "
                        "upgrade)"),
    ({"seconds": 6.1, "workers": 2, "slowest": 2.1}, None),  # loading on three processes
    ({"seconds": 95.0, "workers": 2, "slowest": 50.0},
     "satconv: compiled the kernels here and on 2 Dask workers in 95 s (once after an install "
     "or upgrade)"),
    ({"error": "disk full"}, "satconv: compiling the kernels ahead of the inputs failed (disk "
                             "full); each input compiles what it needs"),
    # a warm-up that says what it compiled is taken at its word, however long it took
    ({"seconds": 12.0, "compiled": 0}, None),  # loading on a busy machine
    ({"seconds": 3.0, "compiled": 7}, "satconv: compiled the kernels in 3 s (once after an "
                                      "install or upgrade)"),
    ({"seconds": 30.0, "workers": 2, "slowest": 20.0, "compiled": 0}, None),
])
def test_warmup_event_in_text_logs(fields: dict, shown: str | None,
                                   capsys: pytest.CaptureFixture) -> None:
    render = Renderer("text")
    render(Event("warmup", None, fields))
    render.close()
    err = capsys.readouterr().err.strip()
    assert err == (shown or "")


#: In a process with its own NUMBA_CACHE_DIR: ``compile`` caches one real kernel; ``repair``
#: runs ``warm_up`` with no scenes and that kernel as the per-type kernels (the rest of a
#: warm-up is what the other tests run) and prints what it saw, as JSON.
REPAIR = """
import json, sys
from pathlib import Path
import numpy as np
from satconv import warmup
from satconv.core import stats

def kernel():
    return stats.valid_range(np.arange(6.0).reshape(2, 3), np.ones((2, 3), bool))

folder = Path(stats.valid_range._cache.cache_path)
if sys.argv[1] == "compile":
    kernel()
    print(json.dumps([p.name for p in folder.glob("stats.valid_range-*.nbi")]))
else:
    calls = []
    def one_kernel():
        calls.append(1)
        assert kernel() == (0.0, 5.0)
    warmup._scenes = lambda tile: []
    warmup._per_type_kernels = one_kernel
    warmup.warm_up()
    print(json.dumps({"calls": len(calls), "files": sorted(p.name for p in folder.iterdir())}))
"""


def _repair_step(tmp_path: Path, cache: Path, step: str):
    script = tmp_path / "repair.py"
    script.write_text(REPAIR)
    env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, str(script), step], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_damaged_cache_is_cleared_and_compiled_anew(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"
    (index,) = _repair_step(tmp_path, cache, "compile")
    (path,) = cache.rglob(index)
    path.write_bytes(b"garbage\n")  # as a process killed while writing it leaves it
    stale = path.parent / "conv.gone-12.py311.nbi"  # an older version's kernel
    stale.write_bytes(b"old")
    seen = _repair_step(tmp_path, cache, "repair")
    assert seen["calls"] == 2  # failed on the damaged file, then ran again after clearing
    assert stale.name not in seen["files"]
    assert index in seen["files"] and path.read_bytes() != b"garbage\n"  # written anew
    assert _repair_step(tmp_path, cache, "repair")["calls"] == 1  # and loads from now on


def test_a_run_failing_on_a_damaged_cache_makes_the_warm_up_start_over(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from satconv import batch
    from satconv.core import cache_dir

    first = []

    def run_one(src, settings, opts, *args, **kwargs):
        first.append(src)
        if len(first) == 1:
            return batch.Outcome(src, "failed", f"{src}: unexpected error: ValueError: x "
                                 f"({cache_dir.DAMAGED})", 1, "ValueError")
        return batch.Outcome(src, "done")

    cleared = []
    monkeypatch.setattr(batch, "run_one", run_one)
    monkeypatch.setattr(warmup, "_per_type_kernels", lambda: None)
    monkeypatch.setattr(warmup, "clear_cache", lambda: cleared.append(1) or 0)
    warmup.warm_up()
    assert cleared == [1] and len(first) > 2


def test_cli_warmup_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    order = []
    monkeypatch.setattr(warmup, "clear_cache", lambda: order.append("clear") or 7)
    monkeypatch.setattr(warmup, "warm_up", lambda settings=None: order.append("warm") or 0.5)
    res = CliRunner().invoke(cli, ["warmup", "--fresh"])
    assert res.exit_code == 0, res.output
    assert order == ["clear", "warm"]
    assert ("removed 7 cached kernel files; kernels ready (all from the cache, 0.5 s)"
            in res.output)
    order.clear()
    import satconv.core

    counts = iter([10, 13])  # numba's compile count before and after the warm-up
    monkeypatch.setattr(satconv.core, "compiled_count", lambda: next(counts))
    res = CliRunner().invoke(cli, ["warmup"])
    assert res.exit_code == 0, res.output
    assert order == ["warm"]
    assert "kernels ready (3 compiled, 0.5 s)" in res.output


def test_warmup_fresh_names_a_cache_file_it_cannot_remove(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": str(cache)}
    make = ("from pathlib import Path; from satconv.core import stats; "
            "d = Path(stats.valid_range._cache.cache_path) / 'stats.stuck-1.py311.nbi'; "
            "d.mkdir(parents=True); print(d)")  # a folder: unlink fails, for root too
    stuck = subprocess.run([sys.executable, "-c", make], env=env, capture_output=True,
                           text=True, timeout=120, check=True).stdout.strip()
    res = subprocess.run([sys.executable, "-m", "satconv", "warmup", "--fresh"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"satconv: {stuck}: cannot remove"), lines
