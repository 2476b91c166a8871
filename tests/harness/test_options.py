"""Option parsing (command line over ini over defaults), bad option values, what gets collected."""

import json
import os
from pathlib import Path

import pytest

import harness

pytest_plugins = ["pytester"]

PLUGIN = ["-p", "harness.pytest_plugin", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning"]

SHOW_SETTINGS = """
import json
from dataclasses import asdict

from harness.pytest_plugin import harness_of


def test_show(pytestconfig):
    harness = harness_of(pytestconfig)
    values = {k: (str(v) if v is not None and not isinstance(v, (bool, int, float, list)) else v)
              for k, v in asdict(harness.settings).items()}
    values["model_specs"] = [m.spec for m in harness.models]
    print("SETTINGS=" + json.dumps(values))
"""


def _settings(pytester, *args) -> dict:
    pytester.makepyfile(test_show=SHOW_SETTINGS)
    result = pytester.runpytest(*PLUGIN, "test_show.py", "-s", *args)
    result.assert_outcomes(passed=1)
    line = next(line for line in result.outlines if "SETTINGS=" in line)
    return json.loads(line.split("SETTINGS=", 1)[1].removesuffix("."))


def test_defaults(pytester):
    s = _settings(pytester)
    assert s["models"] == [] and s["backends"] is None
    from ditto.models.tiny import TINY_MODELS

    assert s["model_specs"] == sorted(TINY_MODELS)
    assert (s["dtype"], s["steps"], s["update_golden"], s["golden_format"]) == ("float32", 8, False, "auto")
    import torch

    assert (s["atol"], s["rtol"], s["report_dir"]) == (None, None, None)
    assert (s["oracle_device"], s["oracle_dtype"]) == (s["device"], "float32")  # the oracle runs where the run does
    assert s["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert s["golden_dir"] == str(pytester.path / "golden")
    assert s["engine_cache"] == os.path.join(os.environ["DITTO_CACHE_DIR"], "engines")


INI = """
[pytest]
ditto_models = tiny-llama tiny-gpt2
ditto_backends = hf
ditto_dtype = bfloat16
ditto_steps = 3
golden_dir = goldens/here
update_golden = true
golden_format = fingerprint
ditto_atol = 1e-3
ditto_engine_cache = engines
"""


def test_ini_options(pytester):
    pytester.makeini(INI)
    s = _settings(pytester)
    assert s["models"] == ["tiny-llama", "tiny-gpt2"] and s["backends"] == ["hf"]
    assert (s["dtype"], s["steps"], s["update_golden"], s["golden_format"], s["atol"]) == (
        "bfloat16", 3, True, "fingerprint", 1e-3)
    assert s["golden_dir"] == str(pytester.path / "goldens" / "here")  # relative to the ini file
    assert s["engine_cache"] == str(pytester.path / "engines")


def test_command_line_wins_over_ini(pytester):
    pytester.makeini(INI)
    sub = pytester.mkdir("sub")
    s = _settings(pytester, "--ditto-model=tiny-qwen2", "--ditto-model", "tiny-gemma", "--ditto-backends=hf,fx",
                  "--ditto-steps=5", f"--golden-dir={sub}", "--ditto-dtype=float16", "--ditto-rtol=0.5")
    assert s["models"] == ["tiny-qwen2", "tiny-gemma"] and s["backends"] == ["hf", "fx"]
    assert (s["steps"], s["dtype"], s["rtol"], s["atol"]) == (5, "float16", 0.5, 1e-3)
    assert s["golden_dir"] == str(sub)


@pytest.mark.parametrize(
    "args, ini, message",
    [
        (["--ditto-steps=-1"], "", "--ditto-steps must be 0 or more, got -1"),
        ([], "ditto_steps = many", "--ditto-steps (ini ditto_steps) must be a number, got 'many'"),
        ([], "ditto_dtype = int8", "--ditto-dtype (ini ditto_dtype): 'int8' is not one of float32, float16, bfloat16"),
        (["--ditto-backends=hf,nope"], "", "--ditto-backends: unknown backend(s) nope; known: *fx*hf*"),
        (["--ditto-model=tiny-nonesuch"], "", "*unknown built-in model 'tiny-nonesuch'*"),
        (["--ditto-model=./missing-model"], "", "*model './missing-model' not found: pass a local Hugging Face directory*"),
    ],
    ids=["negative steps", "ini steps not a number", "ini dtype", "unknown backend", "unknown tiny", "missing path"],
)
def test_bad_values_are_usage_errors(pytester, args, ini, message):
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest(*PLUGIN, "test_x.py", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_model_path_that_is_not_a_model(pytester):
    not_a_model = pytester.mkdir("weights")
    (not_a_model / "model.safetensors").write_bytes(b"")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest(*PLUGIN, "test_x.py", f"--ditto-model={not_a_model}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--ditto-model {not_a_model}: {not_a_model} has no config.json; pass a Hugging Face "
                                 "model directory*"])
    result = pytester.runpytest(*PLUGIN, "test_x.py", f"--ditto-model={not_a_model / 'model.safetensors'}")
    result.stderr.fnmatch_lines(["*is a file; pass the Hugging Face model directory that contains config.json*"])


def test_regression_module_is_added_only_when_no_test_paths_are_named(pytester):
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    args = [*PLUGIN, "--collect-only", "-q", "--ditto-model=tiny-llama", "--ditto-backends=hf,fx"]
    result = pytester.runpytest(*args)
    collected = [line for line in result.outlines if "::" in line]
    module = os.path.relpath(Path(harness.__file__).with_name("regression.py"), pytester.path)
    assert collected == [
        "test_x.py::test_x",
        f"{module}::test_backends_agree[tiny-llama-fx-vs-hf]",
        f"{module}::test_matches_golden[tiny-llama-hf]",
        f"{module}::test_matches_golden[tiny-llama-fx]",
    ]
    result = pytester.runpytest(*args, "test_x.py")
    assert [line for line in result.outlines if "::" in line] == ["test_x.py::test_x"]


def test_pairs_cover_every_backend_against_hf_and_each_other(pytester):
    pytester.makeconftest(
        "from ditto.runtime.backend import BACKENDS, register_backend\n"
        "for name in ('zeta', 'alpha'):\n"
        "    register_backend(name)(type(name, (), {'unavailable_reason': lambda self: None}))\n"
        "def pytest_unconfigure(config):\n"
        "    BACKENDS.pop('zeta', None); BACKENDS.pop('alpha', None)\n"
    )
    result = pytester.runpytest(*PLUGIN, "--collect-only", "-q", "--ditto-model=tiny-gpt2",
                                "--ditto-backends=zeta,hf,alpha", "-k", "agree")
    ids = [line.split("[", 1)[1].rstrip("]") for line in result.outlines if "::" in line]
    assert ids == ["tiny-gpt2-alpha-vs-hf", "tiny-gpt2-zeta-vs-hf", "tiny-gpt2-zeta-vs-alpha"]


def test_oracle_options(pytester):
    s = _settings(pytester, "--ditto-dtype=bfloat16", "--ditto-oracle-device=cpu", "--ditto-oracle-dtype=float64")
    assert (s["oracle_device"], s["oracle_dtype"]) == ("cpu", "float64")
