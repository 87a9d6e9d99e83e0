"""Where the compiled kernels are cached when numba has no writable place of its own
(``satconv.core.cache_dir``): a read-only install run by an account without a usable home."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from satconv.core import cache_dir
from satconv.scripts.cli import cli

REPO = Path(__file__).resolve().parents[1]


def _blocked(base: Path) -> Path:
    """A folder path nobody can create, root included: it lies under a regular file."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "file").write_text("")
    return base / "file" / "sub"


def _unset_numba_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, and restored to its state before the test whatever ``settle`` sets meanwhile
    (``delenv`` of an absent variable alone records nothing to undo)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", "")
    monkeypatch.delenv("NUMBA_CACHE_DIR")


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No NUMBA_CACHE_DIR, an unusable home, and a temporary directory of the test's own."""
    _unset_numba_cache_dir(monkeypatch)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(_blocked(tmp_path)))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(cache_dir.tempfile, "tempdir", None)  # re-read TMPDIR
    # restore what the test changes in this process
    monkeypatch.setattr(cache_dir, "chosen", cache_dir.chosen)
    config_mod = sys.modules.get("numba.core.config")
    if config_mod is not None:
        monkeypatch.setattr(config_mod, "CACHE_DIR", config_mod.CACHE_DIR)
    return tmp


def test_numba_own_places_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _unset_numba_cache_dir(monkeypatch)
    monkeypatch.setattr(cache_dir, "chosen", cache_dir.chosen)
    assert cache_dir.settle(tmp_path / "pkg") == ("beside the code", tmp_path / "pkg" /
                                                   "__pycache__")
    assert "NUMBA_CACHE_DIR" not in os.environ
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir.settle(_blocked(tmp_path)) == ("user cache", tmp_path / "xdg" / "numba")
    assert "NUMBA_CACHE_DIR" not in os.environ


def test_a_folder_the_user_set_is_respected(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_dir, "chosen", cache_dir.chosen)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir.settle(tmp_path) == ("NUMBA_CACHE_DIR", tmp_path / "mine")
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "mine")


def test_nothing_writable_falls_back_to_a_private_temporary_folder(
        nowhere: Path, tmp_path: Path) -> None:
    how, folder = cache_dir.settle(_blocked(tmp_path / "pkg"))
    assert how == "temporary"
    assert folder is not None and folder.parent == nowhere
    assert os.environ["NUMBA_CACHE_DIR"] == str(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is not None:  # already imported in this test process: told directly
        assert numba_config.CACHE_DIR == str(folder)


def test_a_shared_folder_someone_else_could_write_is_refused(nowhere: Path,
                                                              tmp_path: Path) -> None:
    target = cache_dir.fallback()
    target.mkdir(mode=0o777)
    target.chmod(0o777)  # group and others may write: they could plant compiled code
    assert not cache_dir.private_folder(target)
    assert cache_dir.settle(_blocked(tmp_path / "pkg")) == ("none", None)
    assert "NUMBA_CACHE_DIR" not in os.environ


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a folder to another user needs root")
def test_a_folder_owned_by_another_user_is_refused(nowhere: Path) -> None:
    target = cache_dir.fallback()
    target.mkdir(mode=0o700)
    os.chown(target, 65534, -1)
    assert not cache_dir.private_folder(target)


def test_a_read_only_install_without_a_home_imports_and_says_where(tmp_path: Path) -> None:
    """The kernels' modules import (numba refuses a cache=True function it cannot cache
    anywhere), and ``satconv warmup`` says where they went."""
    pkg = tmp_path / "install"
    shutil.copytree(REPO / "satconv", pkg / "satconv",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [pkg / "satconv", *(p for p in (pkg / "satconv").rglob("*") if p.is_dir())]:
        (folder / "__pycache__").write_text("")  # a file: no cache beside the code
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(_blocked(tmp_path)), TMPDIR=str(tmp), PYTHONPATH=str(pkg))
    code = ("import os, satconv.core.conv, satconv.core.stats, satconv.core.reconstruct; "
            "print(os.environ['NUMBA_CACHE_DIR'])")
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    folder = Path(res.stdout.strip())
    assert folder.parent == tmp and folder.is_dir()


def test_warmup_says_where_the_kernels_are(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setattr(cache_dir, "chosen", ("temporary", tmp_path / "k"))
    monkeypatch.setattr("satconv.warmup.warm_up", lambda settings=None: 0.5)
    res = CliRunner().invoke(cli, ["warmup"])
    assert res.exit_code == 0, res.output
    assert f"cached in {tmp_path / 'k'}" in res.output
    assert "NUMBA_CACHE_DIR" in res.output


# ---------------------------------------------------------------- a kernel module changes

LEAF = "from numba import njit\n\n\n@njit(cache=True)\ndef leaf(x):\n    return x + {add}\n"
CALLER = """from numba import njit

from .zz_leaf import leaf


@njit(cache=True)
def caller(x):
    return leaf(x) * 2
"""


def test_a_changed_kernel_module_recompiles_the_kernels_calling_it(tmp_path: Path) -> None:
    """numba checks a cached kernel against its own module only, and a caller keeps the callee
    it was compiled with: after an upgrade that changes only the callee's module, the caller
    must still run the new callee (and, back to the old module, the old one)."""
    pkg = tmp_path / "install"
    shutil.copytree(REPO / "satconv", pkg / "satconv",
                    ignore=shutil.ignore_patterns("__pycache__"))
    core = pkg / "satconv" / "core"
    (core / "zz_caller.py").write_text(CALLER)
    env = {**os.environ, "PYTHONPATH": str(pkg), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    code = "from satconv.core.zz_caller import caller; print(caller(1))"
    outs = []
    for add in (1, 1, 10, 1):
        (core / "zz_leaf.py").write_text(LEAF.format(add=add))
        res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        outs.append(res.stdout.strip())
    assert outs == ["4", "4", "22", "4"]
    cached = list((tmp_path / "cache").rglob("zz_caller.caller-*.nbi"))
    assert len(cached) == 1  # the caller was cached, and is reused while nothing changes
    assert (cached[0].parent / cache_dir.SOURCES).read_text().strip() == \
        cache_dir.sources_hash(core)


# ---------------------------------------------------------------- a damaged cache

KERNEL = """
from numba import njit

@njit(cache=True)
def twice(x):
    return 2 * x
"""


def _load(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def damaged_cache_error(tmp_path: Path) -> BaseException:
    """The exception numba raises for a cached kernel whose index file was garbled: the kernel
    compiled and cached once, then its index overwritten, then loaded by a fresh module."""
    src = tmp_path / "kernel_mod.py"
    src.write_text(KERNEL)
    assert _load(src, "kernel_mod_a").twice(3) == 6
    index = list((tmp_path / "__pycache__").glob("kernel_mod.twice-*.nbi"))
    assert index, "numba wrote no cache"
    index[0].write_bytes(b"garbage\n")
    with pytest.raises(Exception) as caught:  # noqa: PT011 - numba's own error, whatever it is
        _load(src, "kernel_mod_b").twice(3)
    return caught.value


def test_a_garbled_cache_file_is_told_from_other_errors(tmp_path: Path) -> None:
    assert cache_dir.damaged(damaged_cache_error(tmp_path))
    try:
        int("garbage")
    except ValueError as err:
        assert not cache_dir.damaged(err)


def test_a_run_failing_on_a_damaged_cache_names_the_repair(tmp_path: Path) -> None:
    from satconv import batch

    outcome = batch.failure("scene.tif", damaged_cache_error(tmp_path))
    assert outcome.message.startswith("scene.tif: unexpected error: ")
    assert outcome.message.endswith(f"({cache_dir.DAMAGED})")
    assert "satconv warmup --fresh" in outcome.message and "\n" not in outcome.message
    plain = batch.failure("scene.tif", ValueError("bad"))
    assert cache_dir.DAMAGED not in plain.message
