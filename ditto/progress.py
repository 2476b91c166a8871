"""Progress of long stages: a line when a stage starts and one with its wall time when it ends.

Lines go to a `progress(line)` callback (the CLI prints them on stderr, ditto.cli.progress),
else to the `ditto` logger at INFO, so that a library caller sees nothing unless it asks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Callable

Progress = Callable[[str], None]


def or_log(progress: Progress | None) -> Progress:
    """`progress`, or the `ditto` logger's INFO when None."""
    return progress or logging.getLogger("ditto").info


class Stages:
    """`with stages("network"): ...` tells `progress` the stage's start and time; `seconds` keeps the times."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = or_log(progress)
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.progress(f"{name} ...")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.progress(f"{name} done in {time.perf_counter() - start:.1f}s")
