"""Tests that need a TensorRT Python module run wherever one is installed and are skipped, with
the machine fact as reason (`missing_provider()`), where none is: a GPU node without TensorRT
runs the rest of the suite green. An installed module that fails to import still fails.

Per test or module: `@pytest.mark.needs_tensorrt` (any provider) or
`@pytest.mark.needs_tensorrt("tensorrt_rtx")` (that one), applied by tests/conftest.py; per
backend parameter: `REPLAY`. A module that needs the module at import time takes it from
`tensorrt_or_skip`, so that collection never errors for lack of TensorRT.
"""

from __future__ import annotations

import pytest

from ditto.trt.provider import missing_provider, trt_module

# the `replay` backend runs ditto's TensorRT network: the one parameter of a backend sweep that needs it
REPLAY = pytest.param("replay", marks=pytest.mark.needs_tensorrt)


def skip_reason(item: pytest.Item) -> str | None:
    """Why `item` cannot run here: its `needs_tensorrt` marker names a provider that is not installed."""
    marker = item.get_closest_marker("needs_tensorrt")
    return None if marker is None else missing_provider(*marker.args, **marker.kwargs)


def tensorrt_or_skip(provider: str | None = None):
    """The TensorRT module, for module-level use; skips the importing test module where none is installed."""
    __tracebackhide__ = True  # the skip is reported at the importing module's line
    reason = missing_provider(provider)
    if reason is not None:
        pytest.skip(reason, allow_module_level=True)
    return trt_module(provider)
