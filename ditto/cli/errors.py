"""The CLI's error policy, written once: every failure is one line naming the problem and the fix.

- `DittoError` (bad input, bad environment): its message, exit 2.
- `OSError` (full disk, read-only or immutable folder, missing file): the path, the system's
  reason and what to do, exit 2.
- Ctrl-C: `interrupted`, exit 130; SIGTERM: `terminated`, exit 143. Writers are atomic
  (ditto.fsutil), so an interrupt leaves nothing that looks complete.
- Anything else is ditto's own bug: one line with the exception, exit 3, and the advice to
  rerun with `--debug` (or DITTO_DEBUG=1), which also prints the traceback for every kind.
"""

from __future__ import annotations

import errno

from ditto.errors import DittoError

EXIT_USER = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

_OS_FIXES = {
    errno.ENOSPC: "free disk space or choose a folder on another disk",
    errno.EDQUOT: "free disk space or choose a folder on another disk",
    errno.EROFS: "choose a folder on a writable file system",
    errno.EACCES: "choose a folder you can write, or fix its permissions",
    errno.EPERM: "the file or folder is protected (immutable?); choose another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file; check the path",
    errno.EISDIR: "the path is a folder; pass a file",
    errno.EEXIST: "remove it or choose another path",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup runs."""


def error_line(e: BaseException, debug: bool = False) -> tuple[int, str]:
    """(exit status, one line) for an exception that ended a command."""
    if isinstance(e, Terminated):
        return EXIT_TERMINATED, "terminated; nothing was left half-written"
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted; nothing was left half-written"
    if isinstance(e, DittoError):
        return EXIT_USER, f"error: {one_line(str(e))}"
    if isinstance(e, MemoryError):
        return EXIT_USER, "error: out of memory; use a machine with more memory or a smaller model"
    if isinstance(e, OSError) and e.errno is not None:
        where = f"{e.filename}: " if e.filename else ""
        fix = _OS_FIXES.get(e.errno, "check the path and its permissions")
        return EXIT_USER, f"error: {where}{e.strerror or errno.errorcode.get(e.errno, e.errno)}; {fix}"
    hint = "" if debug else "; rerun with --debug for the traceback"
    return EXIT_INTERNAL, f"internal error: {type(e).__name__}: {one_line(str(e)) or 'no message'}{hint}, and report it"


def one_line(text: str) -> str:
    """A multi-line message folded into one line."""
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())
