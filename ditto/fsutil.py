"""The one way ditto writes what a user keeps: atomic files and folders, locks, leftover sweeping.

Every engine dir, golden, dump, cache entry and report goes through here, so one set of rules
holds everywhere:

- A file or folder is written under a temporary name beside its target,
  `.<name>.partial-<pid>-<hex>` (a streamed engine plan: `.<name>.plan-<pid>-<hex>`), and
  renamed into place only once complete and flushed. An interrupted or crashed writer leaves
  nothing at the target that looks complete.
- Replacing an existing folder is one atomic exchange (Linux `renameat2(RENAME_EXCHANGE)`);
  where the file system lacks it, two renames with SIGINT deferred between them, and a
  retired copy (`.<name>.old-<pid>-<hex>`) that the next sweep puts back if the process died
  in between. The target is never missing.
- Leftovers carry their writer's pid: `sweep_leftovers` removes those whose writer is dead and
  never another live writer's work in progress.
- `locked(target)` is a file lock (`.<name>.lock` beside the target) for targets two
  processes can write at once (goldens, cache entries).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import signal
import threading
import uuid
from pathlib import Path

from ditto.errors import DittoError

TEMP_KINDS = ("partial", "plan", "old")
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|plan|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


# ---- names and leftovers --------------------------------------------------------------------


def temp_path(target: str | os.PathLike, kind: str = "partial") -> Path:
    """A fresh temporary name beside `target`, tagged with this process's pid."""
    if kind not in TEMP_KINDS:
        raise ValueError(f"unknown temp kind {kind!r}")
    target = Path(target)
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def sweep_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders in `folder` whose writing process is dead.

    A retired folder (`.old-`) whose target is missing is put back instead: its process died
    between the two renames of a replace. Returns what was removed or restored.
    """
    folder = Path(folder)
    done = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return done
    for path in entries:
        m = _TEMP_NAME.match(path.name)
        if not m or _pid_alive(int(m["pid"])):
            continue
        target = folder / m["name"]
        try:
            if m["kind"] == "old" and not os.path.lexists(target):
                os.rename(path, target)
            else:
                _remove(path)
        except OSError:
            continue
        done.append(path)
    return done


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


# ---- interrupts ---------------------------------------------------------------------------


@contextlib.contextmanager
def deferred_interrupts(signals=(signal.SIGINT, signal.SIGTERM)):
    """Hold SIGINT/SIGTERM until the block ends, then deliver the first one to its usual handler.

    Yields the list of signals received so far, for code that can stop early (a TensorRT
    build polls it). Used where an exception must not be raised: between a replace's two
    renames, and inside TensorRT's callbacks, which catch and log what Python raises there
    and carry on. Only the main thread can set handlers; elsewhere the block runs as is.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in signals}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signal.raise_signal(received[0])  # KeyboardInterrupt, the CLI's SIGTERM handler, or the default


# ---- atomic writes ------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb"):
    """Open a temp file beside `path`; on a clean exit it is flushed, synced and renamed to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data) -> Path:
    with atomic_file(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode())


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, *, replace: bool = False):
    """Yield an empty staging folder beside `target`; on a clean exit it becomes `target`.

    An existing `target` is refused unless `replace` (callers decide what they may replace:
    `check_replaceable`); it is then exchanged atomically and removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(target.parent)
    staging = temp_path(target)
    staging.mkdir()
    os.chmod(staging, 0o755)
    try:
        yield staging
        _fsync_dir(staging)
        if os.path.lexists(target):
            if not replace:
                raise DittoError(f"{target} already exists; pass --force to replace it, or choose another path")
            _replace_dir(staging, target)
        else:
            os.rename(staging, target)
        _fsync_dir(target.parent)
    finally:
        if os.path.lexists(staging):
            _remove(staging)


def _replace_dir(staging: Path, target: Path) -> None:
    """Put `staging` at `target`, whose old content is then deleted; `target` is never missing."""
    if _exchange(staging, target):
        _remove(staging)  # now holds the old content
        return
    retired = temp_path(target, "old")
    try:
        with deferred_interrupts():
            os.rename(target, retired)
            try:
                os.rename(staging, target)
            except BaseException:
                os.rename(retired, target)
                raise
    finally:  # also when a Ctrl-C held off above is raised now
        if os.path.lexists(retired) and os.path.lexists(target):
            _remove(retired)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one syscall; False where the OS or file system cannot."""
    if not _exchange.available:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        _exchange.available = False
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        _exchange.available = False
        return False
    raise OSError(err, os.strerror(err), str(b))


_exchange.available = True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- locks --------------------------------------------------------------------------------


def locked(target: str | os.PathLike):
    """A file lock for `target` (`.<name>.lock` beside it): one writer at a time, across processes."""
    from filelock import FileLock

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(target.parent / f".{target.name}.lock"))


# ---- checks before long stages -------------------------------------------------------------


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> None:
    """Fail now, not after a long stage, when `path` cannot become a folder we write into.

    `path` may exist (a folder) or not; its nearest existing ancestor must be a writable
    folder, tried by creating a temp file there (catches read-only mounts and immutable folders).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DittoError(f"{what} {path} is a file, not a folder; remove it or choose another path")
    probe_in = path if path.is_dir() else path.parent
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise DittoError(f"{what} {path}: {probe_in} is a file, not a folder; choose another path")
    probe = temp_path(probe_in / "write-check")
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise DittoError(f"{what} {path} is not writable ({os_reason(e)}); choose a writable folder") from None


def os_reason(e: OSError) -> str:
    """`No space left on device` etc., without the path (callers name the path themselves)."""
    return e.strerror or type(e).__name__
