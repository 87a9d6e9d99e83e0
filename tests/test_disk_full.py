"""Issue 7, the output side: a disk that fills up, a file-size limit, a read-only or missing
output folder, an output that would overwrite its input. Each: exit 1, one line, nothing
partial left (no final name and no staged ``.partial`` file).

The full disk is a real one: a small tmpfs mounted by the test (we run as root in CI); where
mounting is not permitted those tests skip with the reason, and the ``ulimit -f`` test still
runs everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from satconv.scripts.cli import cli

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
OUTPUTS = ("scene.satconv.tif", "scene.stride.tif", "scene.satconv.json")


def satconv(*args: str, preexec_fn=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "satconv", *args], env=env, text=True,
                          capture_output=True, timeout=120, preexec_fn=preexec_fn)


def lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_here(*args: str) -> tuple[int, list[str]]:
    """The command in this process (quicker; the real-process runs above check stderr)."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, lines(result.stderr)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """Noise that barely compresses: its float32 output is about 630 KB."""
    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    data = np.random.default_rng(3).random((1, 384, 512)).astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=512, height=384, count=1,
                       dtype="float32", crs="EPSG:32618",
                       transform=from_origin(500000, 4000000, 10, 10)) as dst:
        dst.write(data)
    return path


def _mount_tmpfs(where: Path, size: str, *options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    opts = ",".join([f"size={size}", *options])
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'}); "
                    "the ulimit -f test covers a failing write instead")


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size, *options)`` mounts a tmpfs under tmp_path; all are unmounted after."""
    mounted: list[Path] = []

    def mount(size: str, *options: str) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        _mount_tmpfs(where, size, *options)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], capture_output=True)


@pytest.mark.parametrize("cog", [False, True], ids=["geotiff", "cog"])
def test_full_disk_one_line_nothing_left(scene, tmpfs, tmp_path, cog):
    fs = tmpfs("256k")
    args = ["run", str(scene), "--out-dir", str(fs)]
    if cog:
        cfg = tmp_path / "cog.yaml"
        cfg.write_text("output:\n  cog: true\n")
        args += ["-c", str(cfg)]
    before = digest(scene)
    proc = satconv(*args)
    assert proc.returncode == 1
    assert lines(proc.stderr) == [
        f"satconv: {scene}: {fs}/scene.satconv.tif: write failed: no space left on device"]
    assert list(fs.iterdir()) == []
    assert digest(scene) == before


def test_disk_filling_up_at_each_output(scene, tmpfs, tmp_path):
    """Leave room for the raster but not for everything: whichever output hits the full disk,
    the ones already written are removed too. Then, with room, the same run succeeds."""
    ref = tmp_path / "ref"
    ref.mkdir()
    assert run_here("run", str(scene), "--out-dir", str(ref))[0] == 0
    raster = (ref / "scene.satconv.tif").stat().st_size
    fs = tmpfs("2m")
    failed_at = set()
    for extra in (4096, 8192, 12288):  # (beyond the two lock files' page each)
        filler = fs / "filler"
        filler.unlink(missing_ok=True)
        st = os.statvfs(fs)
        filler.write_bytes(bytes(st.f_bavail * st.f_frsize - raster - extra))
        code, out = run_here("run", str(scene), "--out-dir", str(fs))
        assert code == 1, (extra, out)
        (line,) = out
        m = re.fullmatch(rf"satconv: {scene}: {fs}/(\S+): write failed: no space left on "
                         "device", line)
        assert m and m.group(1) in OUTPUTS, line
        failed_at.add(m.group(1))
        assert [p.name for p in fs.iterdir()] == ["filler"]
    assert len(failed_at) >= 2, failed_at  # not only the raster: later outputs too
    (fs / "filler").unlink()
    code, out = run_here("run", str(scene), "--out-dir", str(fs), "-q")
    assert code == 0, out
    assert sorted(p.name for p in fs.iterdir()) == sorted(OUTPUTS)


def test_a_disk_too_full_for_the_lock_file_is_one_line_and_leaves_nothing(scene, tmpfs):
    """Not a byte free: the lock file is created but its holder cannot be written in it.
    That was an 'unexpected error' naming no file, and left the empty lock file behind."""
    fs = tmpfs("256k")
    (fs / "filler").write_bytes(b"")
    with contextlib.suppress(OSError), open(fs / "filler", "ab") as f:
        while True:
            f.write(bytes(4096))
            f.flush()
    code, out = run_here("run", str(scene), "--out-dir", str(fs))
    assert code == 1
    assert out == [f"satconv: {scene}: {fs}/scene.satconv.tif: cannot write lock file "
                   ".scene.satconv.tif.lock (no space left on device)"]
    assert [p.name for p in fs.iterdir()] == ["filler"]


def test_full_disk_under_resume_keeps_only_the_checkpoint(scene, tmpfs, tmp_path):
    """A --resume run on a full disk: one line naming the output (not a hidden part file),
    no part file left holding the space, only the checkpoint (the plan) for the next run;
    given room, that run finishes with the same output as a run that never failed."""
    ref = tmp_path / "ref"
    ref.mkdir()
    assert run_here("run", str(scene), "--out-dir", str(ref))[0] == 0
    fs = tmpfs("256k")
    code, out = run_here("run", str(scene), "--out-dir", str(fs), "--resume")
    assert (code, out) == (
        1, [f"satconv: {scene}: {fs}/scene.satconv.tif: write failed: no space left on device"])
    assert [p.name for p in fs.iterdir()] == [".scene.satconv.tif.satconv.ckpt"]
    subprocess.run(["mount", "-o", "remount,size=4m", str(fs)], check=True)
    code, out = run_here("run", str(scene), "--out-dir", str(fs), "--resume", "-q")
    assert code == 0, out
    assert sorted(p.name for p in fs.iterdir()) == sorted(OUTPUTS)
    with rasterio.open(fs / "scene.satconv.tif") as got, \
            rasterio.open(ref / "scene.satconv.tif") as want:
        np.testing.assert_array_equal(got.read(), want.read())


def test_file_size_limit(scene, tmp_path):
    """``ulimit -f``: the raster cannot grow past 256 KiB (Python ignores SIGXFSZ, so the write
    fails with EFBIG, which GDAL only logs): exit 1, one line, nothing left."""
    out = tmp_path / "out"
    out.mkdir()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))

    proc = satconv("run", str(scene), "--out-dir", str(out), preexec_fn=limit)
    assert proc.returncode == 1
    assert lines(proc.stderr) == [
        f"satconv: {scene}: {out}/scene.satconv.tif: write failed: file size limit reached "
        "(ulimit -f)"]
    assert list(out.iterdir()) == []


def test_read_only_output_folder(scene, tmp_path, tmpfs):
    if os.geteuid() == 0:  # root writes through permission bits: use a read-only mount
        out = tmpfs("1m", "ro")
        reason = "is on a read-only file system"
    else:
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o555)
        reason = "is not writable"
    assert run_here("run", str(scene), "--out-dir", str(out)) == (
        1, [f"satconv: {scene}: {out}/scene.satconv.tif: output folder {out} {reason}"])
    assert list(out.iterdir()) == []


def _copy(scene: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    return Path(shutil.copy(scene, folder / "scene.tif"))


def test_output_equal_to_input_is_refused(scene, tmp_path, monkeypatch):
    src = _copy(scene, tmp_path / "data")
    os.link(src, tmp_path / "data" / "alias.tif")
    before = digest(src)
    monkeypatch.chdir(tmp_path)
    for output in ("data/scene.tif", str(src), "data/../data/scene.tif", "data/alias.tif"):
        result = CliRunner().invoke(cli, ["run", "data/scene.tif", "-o", output])
        assert result.exit_code == 1, output
        assert lines(result.stderr) == [
            f"satconv: data/scene.tif: output {output} would overwrite the input"]
    # -o x.tif also writes x.stride.tif: that one may not be the input either
    stride_named = tmp_path / "data" / "b.stride.tif"
    shutil.copy(src, stride_named)
    result = CliRunner().invoke(cli, ["run", "data/b.stride.tif", "-o", "data/b.tif"])
    assert result.exit_code == 1
    assert lines(result.stderr) == [
        "satconv: data/b.stride.tif: output data/b.stride.tif would overwrite the input"]
    assert digest(src) == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "alias.tif", "b.stride.tif", "scene.tif"]


def test_output_folder_missing(scene, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run", str(scene), "-o", "missing/x.tif"])
    assert result.exit_code == 1
    assert lines(result.stderr) == [
        f"satconv: {scene}: missing/x.tif: output folder missing does not exist"]
    result = CliRunner().invoke(cli, ["run", str(scene), "--out-dir", "missing"])
    assert result.exit_code == 1
    assert lines(result.stderr) == ["satconv: missing: output folder does not exist"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_disk_with_room_for_the_outputs_only_keeps_no_decoded_tiles(tmp_path, tmpfs):
    """A compressed input, planned by a policy, whose plan pass would keep its decoded tiles
    beside the outputs (``satconv.tile_cache``): on a disk with room for the outputs but not
    for them too, the run decodes the input again and succeeds, and says why."""
    src = tmp_path / "packed.tif"
    data = np.random.default_rng(5).integers(0, 60000, (1, 384, 512), dtype=np.uint16)
    with rasterio.open(src, "w", driver="GTiff", width=512, height=384, count=1,
                       dtype="uint16", compress="deflate", crs="EPSG:32618",
                       transform=from_origin(500000, 4000000, 10, 10)) as dst:
        dst.write(data)
    ref = tmp_path / "ref"
    ref.mkdir()
    assert run_here("run", str(src), "--out-dir", str(ref), "-q")[0] == 0
    report = (ref / "packed.satconv.json").read_text()
    assert "the input was decoded once" in report  # with room, the tiles are kept
    outputs = sum(p.stat().st_size for p in ref.iterdir())
    fs = tmpfs("4m")
    st = os.statvfs(fs)
    spare = 200_000  # less than the 393 KB of decoded tiles
    (fs / "filler").write_bytes(bytes(st.f_bavail * st.f_frsize - outputs - spare))
    code, out = run_here("run", str(src), "--out-dir", str(fs), "-q")
    assert code == 0, out
    read = json.loads((fs / "packed.satconv.json").read_text())["plan"]["read"]
    assert read.endswith(f"too little free space in {fs} beside the outputs"), read
    with rasterio.open(fs / "packed.satconv.tif") as a, \
            rasterio.open(ref / "packed.satconv.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
