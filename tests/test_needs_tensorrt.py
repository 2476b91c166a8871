"""The `needs_tensorrt` marker (tests/needs_tensorrt.py, applied by tests/conftest.py): a marked test
is skipped with the machine fact exactly where its provider is not installed, and runs wherever it
is; unmarked tests and other backend parameters always run. Checked in an inner session on a
pretended machine, so that it holds on CI (tensorrt_rtx) and on a GPU node without TensorRT alike."""

import pytest

from ditto.trt import provider

pytest_plugins = ["pytester"]

TESTS = '''
import pytest
from tests.needs_tensorrt import REPLAY


@pytest.mark.needs_tensorrt
def test_any():
    pass


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_rtx():
    pass


def test_plain():
    pass


@pytest.mark.parametrize("backend", ["fx", REPLAY])
def test_sweep(backend):
    pass
'''


@pytest.mark.parametrize("installed, passed, skipped", [
    ((), ["test_plain", "test_sweep[fx]"], ["test_any", "test_rtx", "test_sweep[replay]"]),
    (("tensorrt",), ["test_any", "test_plain", "test_sweep[fx]", "test_sweep[replay]"], ["test_rtx"]),
    (("tensorrt_rtx",), ["test_any", "test_plain", "test_rtx", "test_sweep[fx]", "test_sweep[replay]"], []),
])
def test_marked_tests_skip_exactly_where_their_provider_is_missing(pytester, monkeypatch, installed, passed, skipped):
    monkeypatch.delenv("DITTO_TRT_PROVIDER", raising=False)
    monkeypatch.setattr(provider, "_installed", lambda name: name in installed)
    pytester.makeconftest("from tests.conftest import pytest_addoption, pytest_collection_modifyitems, pytest_configure  # noqa: F401")
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:harness.pytest_plugin", "-rs")
    outcomes = {report.head_line: report.outcome for report in result.reprec.getreports("pytest_runtest_logreport")
                if report.when == "call" or report.skipped}
    assert sorted(n for n, o in outcomes.items() if o == "passed") == passed
    assert sorted(n for n, o in outcomes.items() if o == "skipped") == skipped
    for name in skipped:
        wanted = "tensorrt_rtx" if name == "test_rtx" else "tensorrt or tensorrt_rtx"
        result.stdout.fnmatch_lines([f"SKIPPED*no TensorRT Python package ({wanted}) is installed on this machine"])
