"""Where numba keeps the compiled kernels, settled before the first kernel module is imported.

numba caches a ``cache=True`` function beside its source (``__pycache__``), else in the user's
cache folder (``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``); when neither is writable it
refuses to import the module at all ("cannot cache function ...: no locator available"). That
is the case of a read-only install run by an account without a usable home (a service user, a
read-only container, a Nix store), so satconv then points ``NUMBA_CACHE_DIR`` at a private
folder of its own in the temporary directory. A folder set by the user is always respected.

numba checks a cached kernel against its own source file only: a kernel that calls one of
another module keeps the callee it was compiled with when only the callee's module changes (an
upgrade or a checkout that edits ``window_dot.py`` but not ``conv.py``). :func:`drop_stale`
therefore keys the cache on every kernel module at once, and clears it when any changed.

This module imports nothing of numba: the variable must be set before numba reads it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

#: Why the cache is where it is, for ``satconv warmup`` (None until :func:`settle` ran).
chosen: tuple[str, Path | None] | None = None

#: Added to the error of a run that failed while numba read a cached kernel.
DAMAGED = "satconv's compiled-kernel cache looks damaged; 'satconv warmup --fresh' rebuilds it"


def writable(folder: Path) -> bool:
    """Whether ``folder`` exists or can be created, and a file can be written in it (numba's
    own test of a cache location)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def user_cache() -> Path:
    """numba's per-user cache folder on this platform."""
    if sys.platform == "darwin":
        return Path("~/Library/Caches/numba").expanduser()
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", "~")).expanduser() / "numba" / "Cache"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "numba"


def private_folder(path: Path) -> bool:
    """Create ``path`` readable by this user only, or accept it if it already is such a folder
    owned by this user (a folder in a shared temporary directory that someone else made could
    hand us their compiled code)."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022:
        return False
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return False
    return writable(path)


def fallback() -> Path:
    """The private folder used when numba has no writable location of its own."""
    who = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"satconv-kernels-{who}"


def settle(kernels: Path) -> tuple[str, Path | None]:
    """Make sure numba can cache the kernels in ``kernels`` (the folder of their modules).

    Returns how: ``("NUMBA_CACHE_DIR", folder)`` when the user set one, ``("beside the code",
    folder)`` or ``("user cache", folder)`` when numba's own choice works, ``("temporary",
    folder)`` when satconv set ``NUMBA_CACHE_DIR`` to its private folder, and ``("none",
    None)`` when nothing is writable (numba then refuses to import the kernels).
    """
    global chosen
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given:
        chosen = ("NUMBA_CACHE_DIR", Path(given))
    elif writable(kernels / "__pycache__"):
        chosen = ("beside the code", kernels / "__pycache__")
    elif writable(user_cache()):
        chosen = ("user cache", user_cache())
    elif private_folder(fallback()):
        chosen = ("temporary", fallback())
        _point_numba_at(fallback())
    else:
        chosen = ("none", None)
    return chosen


def _point_numba_at(folder: Path) -> None:
    os.environ["NUMBA_CACHE_DIR"] = str(folder)  # child processes inherit it
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is not None:  # numba was imported before satconv: tell it directly
        numba_config.CACHE_DIR = str(folder)


#: Beside the cached kernels: the hash of the kernel modules they were compiled from.
SOURCES = "satconv-kernels.sha256"


def sources_hash(kernels: Path) -> str:
    """One hash of every module in ``kernels`` (names and contents)."""
    h = hashlib.sha256()
    for path in sorted(kernels.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def remove_cached(folder: Path) -> int:
    """Delete numba's cache files in ``folder``; return how many. A file that cannot be
    removed raises its ``OSError`` (which names it)."""
    removed = 0
    for f in folder.glob("*.nb[ci]"):
        try:
            f.unlink()
        except FileNotFoundError:  # another process cleared it first
            continue
        removed += 1
    return removed


def drop_stale(kernels: Path, folders: Iterable[Path]) -> int:
    """In each cache folder of the kernels in ``kernels``: when the kernels were compiled from
    other sources than the present ones (or it is not known from which), delete every cached
    kernel and record the present sources; return how many files went. Nothing is loaded from
    the cache before this runs (numba reads it at a kernel's first call). A folder that cannot
    be changed is left alone: numba cannot have cached anything new there either."""
    digest = sources_hash(kernels)
    removed = 0
    for folder in folders:
        marker = folder / SOURCES
        try:
            if marker.read_text().strip() == digest:
                continue
        except OSError:
            pass
        try:
            removed += remove_cached(folder)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{SOURCES}.{os.getpid()}"
            tmp.write_text(digest + "\n")
            os.replace(tmp, marker)
        except OSError:
            continue
    return removed


def damaged(err: BaseException) -> bool:
    """Whether ``err`` was raised while numba loaded a kernel from its cache (a truncated or
    garbled cache file: a process killed while writing it, a full disk, two processes writing
    the same file), as opposed to a failure of the kernel itself."""
    tb = err.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if (code.co_filename.replace("\\", "/").endswith("numba/core/caching.py")
                and code.co_name.lstrip("_").startswith("load")):
            return True
        tb = tb.tb_next
    return False
