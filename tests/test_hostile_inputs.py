"""Issue 7: hostile, broken and odd inputs.

Every input of the corpus (``make_corpus.py``, built at test time) is either refused with exit
1, one line ``satconv: <input>: <reason>`` and nothing written, or processed exactly (compared
with ``scipy.ndimage.convolve``, never with satconv's own output). Inputs are unchanged after
every run (checksums of the whole corpus tree), nothing outside an input's folder is read
(``strace`` of the real command), and ``--timeout`` stops an input that would run for minutes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from scipy.ndimage import convolve

from satconv import raster_io
from satconv.errors import InputError
from satconv.scripts.cli import cli

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def _load(name: str):
    """Import a sibling file by path (works whatever tests/ is as a package)."""
    spec = importlib.util.spec_from_file_location(f"satconv_tests_{name}",
                                                  Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mc = _load("make_corpus")


# ---------------------------------------------------------------- helpers and fixtures


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root``: regular files by SHA-256, links by target, others by type.
    Never opens a FIFO or follows a link."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir" if p.is_dir() else "special"
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    c = mc.build(tmp_path_factory.mktemp("corpus"))
    c.digest = tree_digest(c.root)
    return c


def assert_inputs_unchanged(c) -> None:
    assert tree_digest(c.root) == c.digest, "the run changed, added or removed input files"


def satconv(*args: str, cwd: Path, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """The real command, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "satconv", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# ---------------------------------------------------------------- refusals, one by one


@pytest.mark.parametrize("case", mc.REFUSALS, ids=lambda c: c.name)
def test_refused_with_one_line_and_nothing_written(corpus, case, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(corpus.inputs)
    result = CliRunner().invoke(cli, ["run", case.arg, "--out-dir", str(out)])
    lines = error_lines(result.stderr)
    assert result.exit_code == 1, (result.exit_code, result.stderr)
    assert len(lines) == 1, lines
    prefix = f"satconv: {case.arg}: "
    assert lines[0].startswith(prefix), lines[0]
    assert re.search(case.pattern, lines[0][len(prefix):]), lines[0]
    assert result.stdout == ""
    assert list(out.iterdir()) == []
    assert_inputs_unchanged(corpus)


def test_garbage_tile_during_execute_removes_the_partial_output(corpus, tmp_path, monkeypatch):
    """With a saved plan the first read of the bad tile happens while the output is being
    written: the run fails naming input and window, and no staged file survives."""
    plan = tmp_path / "plan.tif"
    with rasterio.open(plan, "w", driver="GTiff", width=2, height=2, count=1,
                       dtype="uint8") as dst:
        dst.write(np.ones((1, 2, 2), np.uint8))
    cfg = tmp_path / "t32.yaml"
    cfg.write_text("tile_size: 32\nstrides: [1]\n")
    out = tmp_path / "out"
    out.mkdir()
    seen: list[str] = []
    real_open_output = raster_io.open_output

    def spy(path, profile):  # record that an output really was being written
        seen.append(Path(path).name)
        return real_open_output(path, profile)

    monkeypatch.setattr(raster_io, "open_output", spy)
    monkeypatch.chdir(corpus.inputs)
    arg = "hostile/garbage_tile.tif"
    result = CliRunner().invoke(cli, ["run", arg, "--out-dir", str(out), "-c", str(cfg),
                                      "--plan", str(plan)])
    lines = error_lines(result.stderr)
    assert result.exit_code == 1
    assert len(lines) == 1, lines
    assert re.match(rf"satconv: {arg}: read failed at rows \d+-\d+, columns \d+-\d+ ", lines[0])
    assert seen and seen[0].endswith(".partial"), seen
    assert list(out.iterdir()) == []
    assert_inputs_unchanged(corpus)


def test_shared_corrupt_file_is_refused_before_reading(tmp_path):
    data = Path(os.environ.get("SATCONV_TEST_DATA", REPO.parent / "shared" / "data"))
    corrupt = data / "corrupt.tif"
    if not corrupt.is_file():
        pytest.skip(f"reference data not found at {data} (set SATCONV_TEST_DATA)")
    result = CliRunner().invoke(cli, ["run", str(corrupt), "--out-dir", str(tmp_path)])
    assert result.exit_code == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1
    assert re.match(rf"satconv: {re.escape(str(corrupt))}: image directory 0: block \d+ "
                    r"\(bytes \d+-\d+\) lies outside the file \(298232 bytes\)", lines[0])
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- odd rasters, exactly


@pytest.fixture(scope="module")
def odd_run(corpus, tmp_path_factory):
    """One real run of every odd raster, every tile at stride 1 (see make_corpus)."""
    work = tmp_path_factory.mktemp("odd")
    cfg = work / "exact.yaml"
    cfg.write_text(mc.EXACT_CONFIG)
    out = work / "out"
    out.mkdir()
    proc = satconv("run", *[o.arg for o in mc.ODD], "--out-dir", str(out), "-c", str(cfg),
                   "-q", cwd=corpus.inputs)
    return proc, out


def test_odd_rasters_run_clean(corpus, odd_run):
    proc, out = odd_run
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert_inputs_unchanged(corpus)


@pytest.mark.parametrize("case", mc.ODD, ids=lambda c: c.name)
def test_odd_raster_equals_dense_convolution(corpus, odd_run, case):
    proc, out = odd_run
    assert proc.returncode == 0, proc.stderr
    stem = Path(case.arg).name[: -len(".tif")]
    kernel = np.array(mc.KERNEL)
    with rasterio.open(corpus.inputs / case.arg) as src, \
            rasterio.open(out / f"{stem}.satconv.tif") as res, \
            rasterio.open(out / f"{stem}.stride.tif") as smap:
        x = src.read().astype(np.float64)
        expected = np.stack([convolve(band, kernel, mode="reflect") for band in x])
        got = res.read().astype(np.float64)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
        assert res.crs == src.crs
        assert smap.read(1).min() == 1
        assert smap.shape == (-(-src.height // 16), -(-src.width // 16))
        if case.georef == "gcps":
            gcps, gcp_crs = src.gcps
            out_gcps, out_crs = res.gcps
            assert out_crs == gcp_crs == rasterio.crs.CRS.from_epsg(4326)
            assert [(g.row, g.col, g.x, g.y) for g in out_gcps] == \
                [(g.row, g.col, g.x, g.y) for g in gcps]
            assert [(g.row * 16, g.col * 16, g.x, g.y) for g in smap.gcps[0]] == \
                [(g.row, g.col, g.x, g.y) for g in gcps]
        elif case.georef == "transform":
            assert res.transform.almost_equals(src.transform)
            assert smap.transform.almost_equals(src.transform @ src.transform.scale(16))
        else:
            assert res.crs is None and src.crs is None
            assert res.transform.is_identity and not res.gcps[0]


# ---------------------------------------------------------------- the whole batch, for real


def test_whole_corpus_in_one_batch_no_traceback(corpus, tmp_path):
    """What a server does: every input in one run, default config. One line per failed
    input, the odd ones done, no traceback or stray output from any library, exit 1."""
    out = tmp_path / "out"
    out.mkdir()
    args = [r.arg for r in mc.REFUSALS] + [o.arg for o in mc.ODD]
    proc = satconv("run", *args, "--out-dir", str(out), "-q", cwd=corpus.inputs)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = error_lines(proc.stderr)
    assert lines[-1] == f"satconv: {len(mc.REFUSALS)} of {len(args)} inputs failed"
    body = lines[:-1]
    assert len(body) == len(mc.REFUSALS), "\n".join(body)
    for case, line in zip(mc.REFUSALS, body, strict=True):
        prefix = f"satconv: {case.arg}: "
        assert line.startswith(prefix) and re.search(case.pattern, line[len(prefix):]), line
    made = sorted(p.name for p in out.iterdir())
    stems = [Path(o.arg).name[:-4] for o in mc.ODD]
    assert made == sorted(f"{s}{ext}" for s in stems
                          for ext in (".satconv.json", ".satconv.tif", ".stride.tif"))
    assert_inputs_unchanged(corpus)


# ---------------------------------------------------------------- nothing read outside


def _touched_paths(log: Path, cwd: Path) -> list[Path]:
    """Every path a traced process named in a file system call (strace -e trace=%file)."""
    paths = []
    call = re.compile(r'^\d+\s+(\w+)\((AT_FDCWD, |\d+, )?"((?:[^"\\]|\\.)*)"')
    for line in log.read_text(errors="replace").splitlines():
        m = call.match(line)
        if not m:
            continue
        dirfd, raw = m.group(2), m.group(3)
        name = raw.encode().decode("unicode_escape")
        if dirfd and dirfd != "AT_FDCWD, " and not name.startswith("/"):
            continue  # relative to an open folder: not resolvable here (satconv uses none)
        paths.append(Path(os.path.normpath(cwd / name)))
    return paths


def _strace_usable() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(["strace", "-f", "-qq", "-e", "trace=%file", "-o", os.devnull,
                            "true"], capture_output=True)
    return probe.returncode == 0


needs_strace = pytest.mark.skipif(not _strace_usable(),
                                  reason="strace is not installed or may not trace here")


def _strace(args: list[str], cwd: Path, log: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(["strace", "-f", "-qq", "-e", "trace=%file", "-o", str(log),
                           *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@needs_strace
def test_reads_nothing_outside_the_inputs_folder(corpus, tmp_path):
    """Trace every file system call of the real command (all threads) on every input that
    tries to reach outside its folder, plus sound ones with legitimate side files. No call
    may name the secret file, or anything in the corpus outside ``in/`` and the output."""
    out = corpus.root / "out-strace"
    out.mkdir()
    try:
        hostile = ["vrt_relative", "vrt_absolute", "ovr_vrt", "msk_vrt", "msk_link", "tfw_link",
                   "url_http_colon", "vsicurl", "gdal_prefix"]
        args = [corpus.refusal(n).arg for n in hostile]
        sound = ["odd/single_strip.tif", str(corpus.masked.relative_to(corpus.inputs))]
        log = tmp_path / "satconv.strace"
        proc = _strace([sys.executable, "-m", "satconv", "run", *args, *sound, "--out-dir",
                        str(out), "-q"], corpus.inputs, log)
        assert proc.returncode == 1, proc.stderr
        assert len(error_lines(proc.stderr)) == len(hostile) + 1, proc.stderr
        assert (out / "with_mask.satconv.tif").exists()
        touched = _touched_paths(log, corpus.inputs)
        assert corpus.masked.with_name("with_mask.tif.msk") in touched  # the tracing works
        assert corpus.secret not in touched
        # Outside the input's tree and the output folder, only the folders above them may be
        # named (resolving any path walks them); nothing else of the corpus.
        outside = sorted({str(p) for p in touched if p.is_relative_to(corpus.root)
                          and not p.is_relative_to(corpus.inputs) and not p.is_relative_to(out)
                          and not corpus.inputs.is_relative_to(p)})
        assert outside == [], outside
    finally:
        shutil.rmtree(out)
    assert_inputs_unchanged(corpus)


@needs_strace
def test_strace_check_would_catch_a_read_outside(corpus, tmp_path):
    """The check above can fail: opening the VRT the way GDAL does by default (any driver)
    reads the secret file outside the input's folder, and the trace shows it."""
    log = tmp_path / "plain.strace"
    code = ("import rasterio, sys\n"
            "with rasterio.open(sys.argv[1]) as ds: ds.read()\n")
    proc = _strace([sys.executable, "-c", code, corpus.refusal("vrt_relative").arg],
                   corpus.inputs, log)
    assert proc.returncode == 0, proc.stderr
    assert corpus.secret in _touched_paths(log, corpus.inputs)


def test_vetted_open_refuses_before_gdal_reads(corpus, monkeypatch):
    """Without strace: the VRT is refused even when its target does not exist, and GDAL is
    never asked to open it with any driver but GTiff."""
    opened: list[tuple[str, object]] = []
    real_open = rasterio.open

    def spy(fp, *a, **kw):
        opened.append((str(fp), kw.get("driver")))
        return real_open(fp, *a, **kw)

    monkeypatch.setattr(rasterio, "open", spy)
    with pytest.raises(InputError, match="is a GDAL VRT"):
        with raster_io.open_input(corpus.inputs / "hostile/vrt_absolute.tif",
                                  raster_io.InputPolicy()):
            pass
    assert opened and all(driver == "GTiff" for _, driver in opened)


# ---------------------------------------------------------------- --timeout


def _raised_limits(tmp: Path) -> Path:
    cfg = tmp / "raised.yaml"
    cfg.write_text("limits:\n  max_block_bytes: 1000000000\n")
    return cfg


def _big_strip_bomb(path: Path, side: int = 30000) -> None:
    """One DEFLATE strip of side x side zero bytes (900 MB decoded, about 1 MB on disk): far
    larger than GDAL's block cache, so every tile read decodes the strip again."""
    comp = zlib.compressobj(1)
    chunk = bytes(16 * 1024 * 1024)
    parts, left = [], side * side
    while left:
        n = min(left, len(chunk))
        parts.append(comp.compress(chunk[:n]))
        left -= n
    parts.append(comp.flush())
    path.write_bytes(mc.craft_tiff(side, side, [b"".join(parts)], compression=8))


def test_timeout_stops_a_pathological_input_and_goes_on(corpus, tmp_path):
    """With the block limit raised, a decompression bomb larger than the block cache takes
    minutes (each tile decodes the single strip from its start): --timeout stops it, and the
    next input is done."""
    out = tmp_path / "out"
    out.mkdir()
    bomb, small = tmp_path / "big_strip_bomb.tif", "odd/single_strip.tif"
    _big_strip_bomb(bomb)
    proc = satconv("run", str(bomb), small, "--out-dir", str(out), "-c",
                   str(_raised_limits(tmp_path)),
                   "--timeout", "4", "-q", cwd=corpus.inputs)
    # (the message is the proof that the limit stopped it, not the wall clock: a loaded
    # machine can take 30 s to start the two processes)
    assert proc.returncode == 1, proc.stderr
    assert error_lines(proc.stderr) == [
        f"satconv: {bomb}: timed out after 4 s; stopped, nothing written",
        "satconv: 1 of 2 inputs failed",
    ]
    assert sorted(p.name for p in out.iterdir()) == [
        "single_strip.satconv.json", "single_strip.satconv.tif", "single_strip.stride.tif"]
    assert_inputs_unchanged(corpus)


def test_timeout_removes_the_killed_runs_partial_outputs(corpus, tmp_path):
    """With a saved plan the bomb is killed while its output is being written: the staged
    file existed during the run, and is gone after it."""
    bomb = tmp_path / "big_strip_bomb.tif"
    _big_strip_bomb(bomb)
    plan = tmp_path / "plan.tif"
    tiles = -(-30000 // 256)
    with rasterio.open(plan, "w", driver="GTiff", width=tiles, height=tiles, count=1,
                       dtype="uint8") as dst:
        dst.write(np.ones((1, tiles, tiles), np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "satconv", "run", str(bomb), "--plan", str(plan),
           "--out-dir", str(out), "-c", str(_raised_limits(tmp_path)), "--timeout", "4"]
    seen: set[str] = set()
    with subprocess.Popen(cmd, cwd=corpus.inputs, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        while proc.poll() is None:
            seen.update(p.name for p in out.iterdir())
            time.sleep(0.05)
        stderr = proc.stderr.read()
    assert proc.returncode == 1
    assert error_lines(stderr) == [
        f"satconv: {bomb}: timed out after 4 s; stopped, nothing written"]
    assert any(name.endswith(".partial") for name in seen), seen
    assert list(out.iterdir()) == []
    assert_inputs_unchanged(corpus)


def test_remove_partials_removes_only_that_process_files(tmp_path):
    finals = [tmp_path / "a.satconv.tif", tmp_path / "a.stride.tif"]
    mine = [raster_io.staging_path(f, 4242) for f in finals]
    derived = mine[0].with_name(mine[0].name + ".body")
    other = raster_io.staging_path(finals[0], 4343)
    for p in [*mine, derived, other]:
        p.write_bytes(b"x")
    raster_io.remove_partials(finals, 4242)
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]


def test_killed_batch_does_not_leave_children(corpus, tmp_path):
    """Killing the parent of a --timeout run also ends its child (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux only")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "satconv", "run", "hostile/strip_bomb.tif", "--out-dir",
           str(tmp_path), "-c", str(_raised_limits(tmp_path)), "--timeout", "60"]
    proc = subprocess.Popen(cmd, cwd=corpus.inputs, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    task = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    children: list[int] = []
    deadline = time.monotonic() + 20
    while not children and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        if not task.exists():
            break
        children = [int(x) for x in task.read_text().split()]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not children and not task.exists():
        pytest.skip("this kernel does not list a process's children in /proc")
    assert children
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.1)
    alive = [c for c in children if Path(f"/proc/{c}").exists()
             and "Z" not in Path(f"/proc/{c}/stat").read_text().split()[2]]
    assert alive == []


def test_url_like_name_of_an_existing_file_is_that_file(corpus, monkeypatch):
    """``http:local.tif`` in the working folder is a local file, never a URL."""
    monkeypatch.chdir(corpus.inputs / "odd")
    target, local = raster_io.input_path("http:local.tif")
    assert local and target == str((corpus.inputs / "odd" / "http:local.tif").resolve())
    with pytest.raises(InputError, match="looks like a URL"):
        raster_io.input_path("http:other.tif")
    target, local = raster_io.input_path("https://example.com/a.tif",
                                         raster_io.InputPolicy(allow_urls=True))
    assert (target, local) == ("https://example.com/a.tif", False)
