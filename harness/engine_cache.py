"""An on-disk cache of built engines, safe for many processes (`pytest -n N`) at once.

An entry is a folder `<cache>/<name>-<key>/` holding what a builder wrote plus
`ditto-cache.json`: the key's inputs (for people) and the size and sha256 of every file. The
key hashes everything that changes an engine: the model's content hash, the builder, its
options and the versions of the software that builds it.

- One builder per key at a time: a file lock `<name>-<key>.lock` beside the entry. A process
  that waits for the lock finds the entry built and uses it.
- Atomic: the builder writes into a temp folder beside the entry, which is renamed into place
  once complete; a killed build leaves only a temp folder, removed by the next build of the
  key (under the lock, so it is nobody's work in progress).
- Verified: an entry is used only if its record parses and every file it lists has its size
  and sha256; anything else (a truncated engine, a deleted file, a half-written record) is
  reported and rebuilt. Hashing reads the engine once per process and entry.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from filelock import FileLock

from ditto import fsutil

RECORD = "ditto-cache.json"
_VERIFIED: set[Path] = set()


@dataclass
class CacheResult:
    path: Path
    built: bool  # False: taken from the cache
    problem: str | None = None  # why an existing entry was rebuilt


def cache_key(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def get_or_build(cache_dir: Path, name: str, inputs: dict, build: Callable[[Path], None]) -> CacheResult:
    """The verified entry for `inputs`, built into a fresh folder by `build(folder)` if needed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    entry = cache_dir / f"{name}-{cache_key(inputs)}"
    if entry in _VERIFIED and entry.is_dir():
        return CacheResult(entry, built=False)
    with FileLock(str(entry) + ".lock"):
        problem = verify(entry) if entry.exists() else "missing"
        if problem is None:
            _VERIFIED.add(entry)
            return CacheResult(entry, built=False)
        for leftover in cache_dir.glob(f".{entry.name}.*"):  # this key's leftovers (we hold its lock)
            if not leftover.name.endswith(".lock"):
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
        fsutil.sweep_leftovers(cache_dir)  # any build's plans and staging of dead processes
        with fsutil.atomic_dir(entry, replace=True) as tmp:
            build(tmp)
            _write_record(tmp, inputs)
        _VERIFIED.add(entry)
        return CacheResult(entry, built=True, problem=None if problem == "missing" else problem)


def verify(entry: Path) -> str | None:
    """None when the entry is complete and intact, else what is wrong with it."""
    try:
        record = json.loads((entry / RECORD).read_text())
        files = record["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"its record {RECORD} is unreadable ({type(e).__name__})"
    for rel, want in files.items():
        path = entry / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != want["size"]:
            return f"{rel} has {path.stat().st_size} bytes, {want['size']} recorded"
        if _sha256(path) != want["sha256"]:
            return f"{rel} does not match its recorded sha256"
    return None


def _write_record(folder: Path, inputs: dict) -> None:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        files[str(path.relative_to(folder))] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    fsutil.write_text(folder / RECORD, json.dumps({"inputs": inputs, "files": files}, indent=1, default=str))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
