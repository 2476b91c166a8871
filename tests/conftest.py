"""Shared test setup: the ditto cache lives in the test session's temp folder unless set; tests
marked `slow` run only with `--slow` (the nightly command passes it; CI runs the fast cut); tests
marked `needs_tensorrt` are skipped with the machine fact where no TensorRT package is installed
(tests/needs_tensorrt.py)."""

import os
import tempfile

import pytest

from tests.needs_tensorrt import skip_reason

os.environ.setdefault("DITTO_CACHE_DIR", os.path.join(tempfile.gettempdir(), "ditto-test-cache"))


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False, help="also run the tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes of CPU time; skipped unless --slow")
    config.addinivalue_line("markers", "needs_tensorrt(provider=None): needs a TensorRT Python module (any, or the "
                            "one named); skipped with the reason where it is not installed")


def pytest_collection_modifyitems(config, items):
    for item in items:
        reason = skip_reason(item)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


XDIST_VARIABLES = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


@pytest.fixture
def pytester(pytester, monkeypatch):
    """An inner pytest run is a session of its own, not this xdist worker: under `pytest -n N` it
    must not inherit the worker's PYTEST_XDIST_* variables (code in the inner run that reads them,
    such as a test's fake builder naming its worker, would take itself for worker gwN)."""
    for name in XDIST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return pytester
