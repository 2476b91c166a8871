"""`ditto_engine` through the plugin, with a cheap fake builder: xdist workers share one build;
a corrupt cache entry is rebuilt with a warning."""

import pytest

pytest_plugins = ["pytester"]

FAKE_BUILDER = """
import json
import os
import time
from pathlib import Path

from harness import engine_cache
from harness.engines import ENGINE_BUILDERS, EngineBuilder, register_engine_builder

BUILDS = Path(__file__).with_name("builds.txt")
_original = ENGINE_BUILDERS["ditto"]


def fake_build(model, folder, options):
    with open(BUILDS, "a") as f:
        f.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")
    time.sleep({sleep})  # long enough for the other worker to ask for the same engine meanwhile
    (folder / "rank0.engine").write_bytes(b"engine" * 1000)
    (folder / "config.json").write_text(json.dumps(options))


def pytest_configure(config):
    register_engine_builder("ditto", EngineBuilder(fake_build))
    engine_cache._VERIFIED.clear()  # in-process runs: verify as a new process would


def pytest_unconfigure(config):
    register_engine_builder("ditto", _original)
"""

USES_ENGINE = """
def test_engine(ditto_engine):
    assert (ditto_engine / "rank0.engine").read_bytes() == b"engine" * 1000
    print("ENGINE_DIR=" + str(ditto_engine))
"""


@pytest.fixture(autouse=True, scope="module")
def _imported_before_inner_runs():
    """In-process pytester runs drop modules first imported inside them, which breaks transformers'
    lazy imports; loading tiny-llama here keeps its modules for every inner run."""
    from harness.models import ModelUnderTest

    _ = ModelUnderTest("tiny-llama").probes


@pytest.fixture
def project(pytester):
    pytester.makepyfile(test_engine=USES_ENGINE)
    return pytester


def _builds(pytester) -> list[str]:
    path = pytester.path / "builds.txt"
    return path.read_text().split() if path.exists() else []


def _args(pytester):
    return ["-p", "harness.pytest_plugin", "--ditto-model=tiny-llama", f"--ditto-engine-cache={pytester.path / 'cache'}",
            "test_engine.py", "-p", "no:cacheprovider", "-s"]


def test_two_xdist_workers_build_one_engine(project):
    project.makeconftest(FAKE_BUILDER.format(sleep=3))
    # --dist each: both workers run the test, so both ask for the same engine at about the same time
    result = project.runpytest_subprocess(*_args(project), "-n", "2", "--dist", "each")
    result.assert_outcomes(passed=2)
    assert len(_builds(project)) == 1
    entries = [p for p in (project.path / "cache").iterdir() if p.is_dir()]
    assert len(entries) == 1 and entries[0].name.startswith("tiny-llama-ditto-")


def test_corrupt_cache_entry_is_rebuilt(project):
    project.makeconftest(FAKE_BUILDER.format(sleep=0))
    project.runpytest(*_args(project)).assert_outcomes(passed=1)
    assert _builds(project) == ["main"]
    project.runpytest(*_args(project)).assert_outcomes(passed=1)
    assert _builds(project) == ["main"]  # warm: not built again
    (engine,) = (project.path / "cache").glob("tiny-llama-ditto-*/rank0.engine")
    engine.write_bytes(b"truncat")
    result = project.runpytest(*_args(project), "-W", "default")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*engine cache entry tiny-llama-ditto-* was rebuilt: rank0.engine has 7 bytes, "
                                 "6000 recorded*"])
    assert _builds(project) == ["main", "main"]
    assert engine.read_bytes() == b"engine" * 1000


def test_engine_key_follows_options(project):
    project.makeconftest(FAKE_BUILDER.format(sleep=0))
    project.runpytest(*_args(project)).assert_outcomes(passed=1)
    project.runpytest(*_args(project), "--ditto-dtype=float16").assert_outcomes(passed=1)
    project.runpytest(*_args(project), "--ditto-steps=2").assert_outcomes(passed=1)
    assert len(_builds(project)) == 3
    assert len([p for p in (project.path / "cache").iterdir() if p.is_dir()]) == 3
