"""Shared test setup: the ditto cache lives in the test session's temp folder unless set; tests
marked `slow` run only with `--slow` (the nightly command passes it; CI runs the fast cut)."""

import os
import tempfile

import pytest

os.environ.setdefault("DITTO_CACHE_DIR", os.path.join(tempfile.gettempdir(), "ditto-test-cache"))


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False, help="also run the tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes of CPU time; skipped unless --slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)
