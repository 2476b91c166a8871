"""The ditto pytest plugin: options, fixtures, the regression module, reports.

Loaded by the `pytest11` entry point `harness.pytest_plugin` (pip-installed ditto) or by the
top-level conftest.py of a checkout. When the command line names no test paths (plain
`pytest`, testpaths or the current folder), the plugin adds its regression module
(harness/regression.py) to the run; it then runs for every `--ditto-model` (default: every
built-in tiny model). Name it explicitly otherwise: `pytest tests/ harness/regression.py`.

Fixtures: `ditto_model` (parametrised by the models), `stepwise`, `golden`, `ditto_engine`,
`trtllm_engine`, and `ditto_harness` (the session's runner, for custom checks).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import gpu, reports
from harness.options import add_options, read_settings

REGRESSION_MODULE = Path(__file__).with_name("regression.py")
_HARNESS = pytest.StashKey["object"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run tests of one group on one xdist worker")
    gpu.assign_gpu(gpu.worker_id(config))  # before anything can initialise CUDA
    settings = read_settings(config)
    _check_models(settings.models)
    if settings.backends:
        _check_backends(settings.backends)
    config.stash[_HARNESS] = _Lazy(config, settings)


def _check_models(specs: list[str]) -> None:
    from ditto.errors import DittoError
    from ditto.models import tiny
    from ditto.models.loader import load_config, resolve_model_dir

    for spec in specs:
        if tiny.is_tiny_name(spec):
            continue
        try:
            load_config(resolve_model_dir(spec))  # a malformed config.json: one usage error, not one per test
        except DittoError as e:
            raise pytest.UsageError(f"--ditto-model {spec}: {e}") from None


def _check_backends(names: list[str]) -> None:
    from ditto.runtime.backend import BACKENDS, available_backends

    available_backends()  # registers the built-in backends
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise pytest.UsageError(f"--ditto-backends: unknown backend(s) {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(BACKENDS))}")


class _Lazy:
    """Builds the Harness on first use: importing backends is not free, and many runs never need it."""

    def __init__(self, config: pytest.Config, settings):
        self.config, self.settings, self.harness = config, settings, None

    def get(self):
        if self.harness is None:
            from harness.session import Harness

            self.harness = Harness(self.settings, _report_dir(self.config, self.settings))
        return self.harness


def harness_of(config: pytest.Config):
    return config.stash[_HARNESS].get()


def _report_dir(config: pytest.Config, settings) -> Path:
    worker = getattr(config, "workerinput", None)
    if worker and worker.get("ditto_report_dir"):
        return Path(worker["ditto_report_dir"])
    if settings.report_dir is not None:
        return settings.report_dir
    factory = getattr(config, "_tmp_path_factory", None)
    return factory.getbasetemp() / "ditto-report" if factory else Path.cwd() / "ditto-report"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist controller: every worker writes its reports into the controller's report folder."""
    node.workerinput["ditto_report_dir"] = str(harness_of(node.config).report_dir)


def pytest_sessionstart(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return
    lazy = session.config.stash[_HARNESS]
    report_dir = _report_dir(session.config, lazy.settings)
    for old in reports.report_files(report_dir):
        old.unlink()  # reports of an earlier session in the same folder


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    if not {"ditto_model", "ditto_backend", "ditto_pair"} & set(names):
        return
    harness = harness_of(metafunc.config)
    if "ditto_model" in names:
        models = harness.models
        metafunc.parametrize("ditto_model", models, ids=[m.key for m in models], indirect=True)
    if "ditto_backend" in names:
        metafunc.parametrize("ditto_backend", harness.backends)
    if "ditto_pair" in names:
        pairs = harness.pairs()
        metafunc.parametrize("ditto_pair", pairs, ids=[f"{a}-vs-{b}" for a, b in pairs])


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselect
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """Add the regression module when no test paths were named; group each model's tests for xdist.

    The module is collected straight from the session, not through its folder, so a ditto
    checkout's own conftest.py is not loaded into other projects' runs.
    """
    named = config.args_source == pytest.Config.ArgsSource.ARGS
    if not named and not any(item.path == REGRESSION_MODULE for item in items):
        nodeid = os.path.relpath(REGRESSION_MODULE, config.rootpath)  # as pytest names files outside rootdir
        items.extend(session.genitems(pytest.Module.from_parent(session, path=REGRESSION_MODULE, nodeid=nodeid)))
    for item in items:
        model = getattr(item, "callspec", None) and item.callspec.params.get("ditto_model")
        if model is not None:
            item.add_marker(pytest.mark.xdist_group(model.key))


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or _HARNESS not in config.stash:
        return
    lazy = config.stash[_HARNESS]
    report_dir = _report_dir(config, lazy.settings)
    lines = reports.summary_lines(report_dir) if report_dir.is_dir() else []
    if not lines:
        return
    try:
        plots = f"{len(reports.plot_models(report_dir))} plots: <model>.png"
    except OSError as e:  # e.g. the default folder under pytest's basetemp, removed by a concurrent session
        plots = f"no plots: {e}"
    terminalreporter.section("ditto regression")
    for line in lines:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"reports: {report_dir} ({plots})")


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def ditto_harness(request):
    """The session's Harness: runs, comparisons and goldens for custom checks."""
    return harness_of(request.config)


@pytest.fixture
def ditto_model(request):
    """The model under test (harness.models.ModelUnderTest); parametrised by --ditto-model."""
    return request.param


@pytest.fixture
def stepwise(ditto_harness, ditto_model):
    """`stepwise(backend)`: that backend's step dumps for the model, hf's tokens forced (run once per session)."""
    return lambda backend: ditto_harness.run(ditto_model, backend)


class GoldenFixture:
    """`golden.check(backend)`: compare the backend's run with its golden, or record it under --update-golden."""

    def __init__(self, harness, model, request):
        self.harness, self.model, self.request = harness, model, request

    def check(self, backend: str) -> None:
        node = self.request.node
        self.harness.check_golden(self.model, backend, node.user_properties, _nodeid(self.request))


@pytest.fixture
def golden(ditto_harness, ditto_model, request):
    return GoldenFixture(ditto_harness, ditto_model, request)


@pytest.fixture
def ditto_engine(ditto_harness, ditto_model) -> Path:
    """ditto's engine directory for the model, built once per model content, options and versions."""
    return ditto_harness.engine_dir(ditto_model, "ditto")


@pytest.fixture
def trtllm_engine(ditto_harness, ditto_model) -> Path:
    """convert_checkpoint.py + trtllm-build's engine directory for the model (needs TensorRT-LLM)."""
    return ditto_harness.engine_dir(ditto_model, "trtllm")


def _nodeid(request) -> str:
    """The test's id as a command-line argument from the current folder."""
    path = Path(request.node.path)
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return f"{shown}::{request.node.name}"
