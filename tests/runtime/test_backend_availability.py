"""Failures are failures: a backend is skipped only for a named machine fact (a package not
installed), checked without loading it; any error while loading an installed backend fails the
test with that error.

Planted bug these kill: `ditto/replay/backend.py` turning every exception into "unavailable"
(a typo in `ditto/trt/provider.py` then gave three skips and exit 0).
"""

import importlib.util

from ditto.runtime.backend import available_backends, get_backend
from ditto.trt import provider

pytest_plugins = ["pytester"]


MISSING = "no TensorRT Python package (tensorrt or tensorrt_rtx) is installed on this machine"


def test_replay_is_available_exactly_when_a_tensorrt_package_is_installed(monkeypatch):
    """Asked of this machine (CI and CPU machines have tensorrt_rtx; a GPU node may have none),
    then of a pretended machine with every package and with none."""
    monkeypatch.delenv("DITTO_TRT_PROVIDER", raising=False)
    installed = any(importlib.util.find_spec(name) is not None for name in provider.PROVIDERS)
    assert available_backends()["replay"] == (None if installed else MISSING)
    monkeypatch.setattr(provider, "_installed", lambda name: True)
    assert available_backends()["replay"] is None
    monkeypatch.setattr(provider, "_installed", lambda name: False)
    assert available_backends()["replay"] == MISSING


def test_a_backend_that_fails_to_load_is_not_reported_unavailable(monkeypatch):
    def typo(provider=None):
        raise NameError("name 'imporlib' is not defined")

    monkeypatch.delenv("DITTO_TRT_PROVIDER", raising=False)
    monkeypatch.setattr(provider, "_installed", lambda name: True)  # installed, on any machine
    monkeypatch.setattr(provider, "trt_module", typo)
    assert get_backend("replay").unavailable_reason() is None


# the typo in an installed provider (pretended installed, so that this runs on any machine)
TYPO_CONFTEST = '''
import ditto.trt.provider as provider


def _typo(provider=None):
    raise NameError("name 'imporlib' is not defined")


provider._installed = lambda name: True
provider.trt_module = _typo
'''


def test_harness_fails_a_backend_that_cannot_load(pytester):
    """In a subprocess: the planted typo must not leak into this session."""
    pytester.makeconftest(TYPO_CONFTEST)
    result = pytester.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--ditto-model=tiny-llama", "--ditto-steps=1", "--ditto-backends=hf,replay",
        "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning", "--assert=plain",
        "-k", "agree",
    )
    result.assert_outcomes(failed=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*NameError: name 'imporlib' is not defined*"])
