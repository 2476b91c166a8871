"""Progress display for long CLI stages: the stage name, then its time, on stderr."""

from __future__ import annotations

import contextlib
import sys
import time


@contextlib.contextmanager
def stage(name: str):
    print(f"[ditto] {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    print(f"[ditto] {name} done in {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
