"""Goldens through the plugin: record, compare, missing, stale, other shapes, interrupted, fingerprints.

Inner pytester sessions run the real `hf` backend on tiny-llama (float32, 1 generation step).
"""

import json
import re
import shlex

import pytest
import torch

from ditto.dumps import load_step, save_step

pytest_plugins = ["pytester"]

BASE = ["-p", "harness.pytest_plugin", "--ditto-model=tiny-llama", "--ditto-backends=hf", "--ditto-steps=1",
        "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning", "--assert=plain", "-k", "golden"]


@pytest.fixture(autouse=True, scope="module")
def _imported_before_inner_runs():
    """In-process pytester runs drop modules first imported inside them, which breaks transformers'
    lazy imports; importing tiny-llama's code here keeps it for every inner run."""
    from ditto.runtime.backend import StepwiseRequest, get_backend
    from harness.models import ModelUnderTest

    model = ModelUnderTest("tiny-llama")
    get_backend("hf").run(StepwiseRequest(model.spec, model.prompts, steps=1, probes=model.probes[:1]))


@pytest.fixture
def golden_dir(pytester):
    return pytester.path / "goldens"


def _run(pytester, golden_dir, *extra):
    # no_reraise_ctrlc: an interrupted inner session must not interrupt this one
    return pytester.runpytest(*BASE, f"--golden-dir={golden_dir}", *extra, no_reraise_ctrlc=True)


def _recorded(golden_dir):
    folder = golden_dir / "tiny-llama" / "float32" / "hf"
    return folder, {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _kept(folder):
    """What a folder holds besides the writers' lock files."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_update_golden_round_trip(pytester, golden_dir):
    _run(pytester, golden_dir, "--update-golden").assert_outcomes(passed=1)
    folder, files = _recorded(golden_dir)
    assert sorted(files) == ["manifest.json", "step0.safetensors", "step1.safetensors"]
    manifest = json.loads(files["manifest.json"])
    assert manifest["dtype"] == "float32" and manifest["num_steps"] == 2 and manifest["format"] == "full"
    assert manifest["probes"][-1] == "logits" and manifest["probes"][0] == "layers.0.attn"
    step0 = load_step(folder / "step0.safetensors")
    assert set(step0) == {"input_ids", "position_ids", *manifest["probes"]}
    assert step0["input_ids"].shape == (193,)  # prompts of 61 + 2 + 130 tokens (harness.models), packed
    result = _run(pytester, golden_dir)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["tiny-llama: hf-vs-golden ok logits 0.0e+00"])
    assert _recorded(golden_dir)[1] == files  # comparing does not touch the golden


def test_missing_golden_fails_with_the_command_that_records_it(pytester, golden_dir):
    result = _run(pytester, golden_dir)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert f"no golden for backend hf on tiny-llama at {golden_dir / 'tiny-llama' / 'float32' / 'hf'}" in out
    command = shlex.split(re.search(r"record it with:\n\s+(pytest .*)\n", out).group(1))
    assert command[0] == "pytest" and "--update-golden" in command
    # the command, run as given, records the golden; then the plain run passes
    pytester.runpytest(*command[1:], "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert (golden_dir / "tiny-llama" / "float32" / "hf" / "manifest.json").is_file()
    _run(pytester, golden_dir).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("model_hash", "0123456789abcdef", "model content hash: golden '0123456789abcdef'"),
        ("dtype", "bfloat16", "dtype: golden 'bfloat16', this run 'float32'"),
        ("steps", 3, "steps: golden 3, this run 1"),
    ],
)
def test_stale_golden_is_reported_not_compared(pytester, golden_dir, key, value, shown):
    _run(pytester, golden_dir, "--update-golden").assert_outcomes(passed=1)
    manifest_path = golden_dir / "tiny-llama" / "float32" / "hf" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest[key] = value
    manifest_path.write_text(json.dumps(manifest))
    result = _run(pytester, golden_dir)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "is stale, not compared" in out and shown in out and "re-record it with" in out
    assert "diverges" not in out  # nothing was compared


def test_golden_from_another_environment_is_compared_and_named_when_it_fails(pytester, golden_dir):
    """Other versions and device: compared by the same rule; a real difference fails naming both
    environments (a planted change in one probe), an unchanged golden passes."""
    _run(pytester, golden_dir, "--update-golden").assert_outcomes(passed=1)
    folder = golden_dir / "tiny-llama" / "float32" / "hf"
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["versions"] = {"ditto": "0.0.1", "torch": "2.5", "transformers": "4.50"}
    manifest["device"] = "cuda:7"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = _run(pytester, golden_dir)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["tiny-llama: hf-vs-golden ok logits 0.0e+00"])
    step = dict(load_step(folder / "step1.safetensors"))
    step["layers.1.mlp"] = step["layers.1.mlp"] * 1.01
    save_step(folder / "step1.safetensors", step)
    result = _run(pytester, golden_dir)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "golden recorded in another environment" in out and "device: golden 'cuda:7'" in out
    assert "versions: golden {'ditto': '0.0.1'" in out and "first at layers.1.mlp" in out


def test_golden_with_other_shapes_fails_naming_the_probe(pytester, golden_dir):
    _run(pytester, golden_dir, "--update-golden").assert_outcomes(passed=1)
    step_path = golden_dir / "tiny-llama" / "float32" / "hf" / "step1.safetensors"
    step = dict(load_step(step_path))
    step["layers.1.mlp"] = step["layers.1.mlp"][:, :32].clone()
    save_step(step_path, step)
    result = _run(pytester, golden_dir)
    result.assert_outcomes(failed=1)
    assert "first at layers.1.mlp (layer 1, step 1): shapes differ: [3, 64] here, [3, 32]" in result.stdout.str()


def test_corrupt_golden_file_is_an_error_that_names_it(pytester, golden_dir):
    _run(pytester, golden_dir, "--update-golden").assert_outcomes(passed=1)
    (golden_dir / "tiny-llama" / "float32" / "hf" / "step1.safetensors").write_bytes(b"not a safetensors file")
    result = _run(pytester, golden_dir)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot read step dump*step1.safetensors*", "re-record it with:",
                                 "*pytest*--update-golden*"])


INTERRUPT = """
import harness.goldens

_original = harness.goldens.save_step
_calls = []


def _interrupted(path, dump):
    _calls.append(path)
    if len(_calls) == 2:
        raise KeyboardInterrupt  # as if Ctrl-C hit while the second step was written
    return _original(path, dump)


def pytest_configure(config):
    harness.goldens.save_step = _interrupted


def pytest_unconfigure(config):
    harness.goldens.save_step = _original
"""


def test_interrupted_update_leaves_no_partial_golden(pytester, golden_dir):
    pytester.makeconftest(INTERRUPT)
    result = _run(pytester, golden_dir, "--update-golden")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert not (golden_dir / "tiny-llama" / "float32" / "hf").exists()
    assert _kept(golden_dir / "tiny-llama" / "float32") == []  # no temp folder left either


def test_interrupted_update_keeps_the_old_golden(pytester, golden_dir):
    _run(pytester, golden_dir, "--update-golden").assert_outcomes(passed=1)
    _, before = _recorded(golden_dir)
    pytester.makeconftest(INTERRUPT)
    assert _run(pytester, golden_dir, "--update-golden", "--ditto-steps=2").ret == pytest.ExitCode.INTERRUPTED
    assert _recorded(golden_dir)[1] == before
    assert _kept(golden_dir / "tiny-llama" / "float32") == ["hf"]


PLANTED = """
from ditto.runtime.backend import BACKENDS, get_backend, register_backend


@register_backend("shifted")
class Shifted:
    def unavailable_reason(self):
        return None

    def run(self, request):
        dumps = get_backend("hf").run(request)
        dumps[1]["layers.0.out"] = dumps[1]["layers.0.out"] + 0.01
        return dumps


def pytest_unconfigure(config):
    BACKENDS.pop("shifted", None)
"""


def test_fingerprint_golden_is_small_and_still_catches_a_divergence(pytester, golden_dir):
    full_dir = pytester.path / "full"
    _run(pytester, full_dir, "--update-golden").assert_outcomes(passed=1)
    _run(pytester, golden_dir, "--update-golden", "--golden-format=fingerprint").assert_outcomes(passed=1)
    folder = golden_dir / "tiny-llama" / "float32" / "hf"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "fingerprint"
    step0 = load_step(folder / "step0.safetensors")
    assert step0["layers.0.attn::stats"].shape == (5,)
    assert step0["layers.0.attn::slice"].shape == (3, 32)
    assert step0["logits::topk_index"].shape == (3, 16) and step0["logits::topk_value"].shape == (3, 16)
    assert torch.equal(step0["input_ids"], load_step(full_dir / "tiny-llama" / "float32" / "hf" / "step0.safetensors")["input_ids"])
    size = sum(p.stat().st_size for p in folder.iterdir())
    full_size = sum(p.stat().st_size for p in (full_dir / "tiny-llama" / "float32" / "hf").iterdir())
    assert size < full_size / 2
    _run(pytester, golden_dir, "--golden-format=fingerprint").assert_outcomes(passed=1)
    # a shifted backend compared with hf's fingerprint golden (copied as its own) is caught at its probe
    pytester.makeconftest(PLANTED)
    (golden_dir / "tiny-llama" / "float32" / "shifted").mkdir()
    for p in folder.iterdir():
        (golden_dir / "tiny-llama" / "float32" / "shifted" / p.name).write_bytes(p.read_bytes())
    result = _run(pytester, golden_dir, "--golden-format=fingerprint", "--ditto-backends=shifted")
    result.assert_outcomes(passed=1, failed=1)  # hf still matches its golden
    result.stdout.fnmatch_lines(["*first at layers.0.out::* (layer 0, step 1)*"])
