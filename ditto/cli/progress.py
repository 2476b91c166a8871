"""Progress display for long CLI stages: the stage name, then its time, on stderr."""

from __future__ import annotations

import sys

from ditto.progress import Stages


def show(line: str) -> None:
    """One progress line on stderr (the `progress` callback the CLI gives ditto's functions)."""
    print(f"[ditto] {line}", file=sys.stderr, flush=True)


stage = Stages(show)  # `with stage("name"): ...`
