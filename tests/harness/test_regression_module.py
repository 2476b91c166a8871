"""The plugin's regression module, run in a pytester session: planted divergences, skips, reports.

Fake backends are registered by the inner session's conftest (and removed when it ends); the
reference is always the real `hf` backend on tiny-llama, float32, 3 steps.
"""

import json
import re
import xml.etree.ElementTree as ET

import pytest

pytest_plugins = ["pytester"]

COMMON = ["-p", "harness.pytest_plugin", "--ditto-model=tiny-llama", "--ditto-steps=3", "-p", "no:cacheprovider",
          "-W", "ignore::pytest.PytestAssertRewriteWarning", "--assert=plain"]

FAKE_BACKENDS = """
from ditto.runtime.backend import BACKENDS, get_backend, register_backend
from harness.models import probe_depth

PLANT_LAYER, PLANT_STEP, SHIFT = {layer}, {step}, {shift}


@register_backend("planted")
class Planted:
    '''hf, with layer PLANT_LAYER's MLP output (and everything after it) shifted from step PLANT_STEP on.'''

    def unavailable_reason(self):
        return None

    def run(self, request):
        dumps = get_backend("hf").run(request)
        for dump in dumps[PLANT_STEP:]:
            for name, value in dump.items():
                if value.is_floating_point() and probe_depth(name) >= (PLANT_LAYER, 1):
                    dump[name] = value + SHIFT
        return dumps


@register_backend("frobnicator")
class NeedsHardware:
    def unavailable_reason(self):
        return "needs a frobnicator card"

    def run(self, request):
        raise AssertionError("an unavailable backend must not run")


def pytest_unconfigure(config):
    BACKENDS.pop("planted", None)
    BACKENDS.pop("frobnicator", None)
"""


@pytest.fixture(autouse=True, scope="module")
def _imported_before_inner_runs():
    """In-process pytester runs drop modules first imported inside them, which breaks transformers'
    lazy imports; importing tiny-llama's code here keeps it for every inner run."""
    from ditto.runtime.backend import StepwiseRequest, get_backend
    from harness.models import ModelUnderTest

    model = ModelUnderTest("tiny-llama")
    get_backend("hf").run(StepwiseRequest(model.spec, model.prompts, steps=1, probes=model.probes[:1]))


def _conftest(pytester, layer=1, step=2, shift=0.5):
    pytester.makeconftest(FAKE_BACKENDS.format(layer=layer, step=step, shift=shift))


def test_planted_divergence_is_reported_at_its_layer_and_step(pytester):
    _conftest(pytester, layer=1, step=2)
    report_dir = pytester.path / "reports"
    result = pytester.runpytest(*COMMON, "--ditto-backends=hf,planted", f"--ditto-report-dir={report_dir}",
                                "-k", "agree")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "planted diverges from hf: first at layers.1.mlp (layer 1, step 2)" in out
    # the errors: shifted by exactly 0.5 everywhere from there on
    match = re.search(r"layers\.1\.mlp \(layer 1, step 2\): max abs ([0-9.e+-]+)", out)
    assert match and float(match.group(1)) == pytest.approx(0.5, abs=1e-5)
    # the earlier probes of that step and the earlier steps passed
    assert re.search(r"ok\s+layers\.1\.attn", out)
    # where the full comparison was written, and that it is there
    report = re.search(r"full comparison: (\S+)", out).group(1)
    text = open(report).read()
    assert "layers.1.mlp" in text and "FAIL" in text
    record = json.loads((report_dir / "tiny-llama" / "planted-vs-hf.json").read_text())
    assert record["first_divergence"]["name"] == "layers.1.mlp" and record["first_divergence"]["step"] == 2
    assert (report_dir / "tiny-llama.png").stat().st_size > 1000
    assert "tiny-llama: planted-vs-hf FAIL at layers.1.mlp step 2" in out  # the session summary


def test_shallowest_probe_wins_within_the_first_failing_step(pytester):
    _conftest(pytester, layer=0, step=0, shift=1e-3)  # above float32's 1e-4 tolerance
    result = pytester.runpytest(*COMMON, "--ditto-backends=hf,planted", "-k", "agree")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*first at layers.0.mlp (layer 0, step 0)*"])


def test_small_differences_within_tolerance_pass_and_land_in_junit(pytester):
    _conftest(pytester, layer=0, step=0, shift=1e-6)  # far below float32's 1e-4 tolerance
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(*COMMON, "--ditto-backends=hf,planted", "-k", "agree", f"--junitxml={junit}")
    result.assert_outcomes(passed=1)
    props = {p.get("name"): float(p.get("value")) for p in ET.parse(junit).iter("property")}
    assert props["max_abs:layers.0.attn"] == 0.0
    assert props["max_abs:layers.1.out"] == pytest.approx(1e-6, rel=0.1)
    assert props["max_abs:logits"] == pytest.approx(1e-6, rel=0.1)
    assert props["max_abs:input_ids"] == 0.0


def test_a_backend_that_cannot_run_is_skipped_with_its_reason(pytester):
    _conftest(pytester)
    result = pytester.runpytest(*COMMON, "--ditto-backends=hf,frobnicator", "-rs", "--update-golden",
                                f"--golden-dir={pytester.path / 'g'}")
    # agree[frobnicator-vs-hf] and golden[frobnicator] skip; golden[hf] records
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*backend frobnicator: needs a frobnicator card*"])


def test_trtllm_engine_is_skipped_without_tensorrt_llm(pytester):
    pytester.makepyfile(test_engine="def test_needs_engine(trtllm_engine):\n    raise AssertionError\n")
    result = pytester.runpytest("-p", "harness.pytest_plugin", "--ditto-model=tiny-llama", "test_engine.py", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*TensorRT-LLM is not installed on this machine*"])


def test_fixtures_in_a_users_own_test(pytester):
    pytester.makepyfile(test_mine="""
def test_mine(ditto_model, stepwise, golden):
    dumps = stepwise("hf")
    assert ditto_model.key == "tiny-llama" and len(dumps) == 4  # context step + 3 forced steps
    assert dumps[0]["layers.1.out"].shape == (193, 64) and dumps[1]["logits"].shape == (3, 512)  # 61 + 2 + 130 tokens
    assert stepwise("hf") is dumps  # run once per session
    golden.check("hf")
""")
    golden_dir = pytester.path / "g"
    args = [*COMMON, "test_mine.py", f"--golden-dir={golden_dir}"]
    pytester.runpytest(*args, "--update-golden").assert_outcomes(passed=1)
    assert (golden_dir / "tiny-llama" / "float32" / "hf" / "step3.safetensors").is_file()
    pytester.runpytest(*args).assert_outcomes(passed=1)


def test_half_precision_is_judged_against_the_oracle_within_hf_noise(pytester):
    # planted = hf in bfloat16 + 0.5 from layer 1's MLP at step 2: far outside hf's own noise
    _conftest(pytester, layer=1, step=2, shift=0.5)
    report_dir = pytester.path / "reports"
    args = [*COMMON, "--ditto-backends=hf,planted", "--ditto-dtype=bfloat16", f"--ditto-report-dir={report_dir}"]
    result = pytester.runpytest(*args, "-k", "agree")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*rule: each probe and step within min(4 x |hf bfloat16 - oracle| + 2 ulp x "
                                 "max|oracle|, 0.5 x max|oracle|) of the oracle (hf in float32)*",
                                 "*planted diverges from oracle (hf float32): first at layers.1.mlp (layer 1, step 2)*"])
    record = json.loads((report_dir / "tiny-llama" / "planted-vs-hf.json").read_text())
    assert record["tolerance"]["rule"] == "calibrated" and len(record["band_by_step"]) == 4
    noise = record["noise_by_step"][2]["layers.1.mlp"]
    assert 0 < noise < 0.1 and record["band_by_step"][2]["layers.1.mlp"] >= 4 * noise
    assert (report_dir / "tiny-llama.png").stat().st_size > 1000


def test_half_precision_within_the_band_passes(pytester):
    _conftest(pytester, layer=0, step=0, shift=1e-4)  # hf's own bfloat16 run, barely moved
    result = pytester.runpytest(*COMMON, "--ditto-backends=hf,planted", "--ditto-dtype=bfloat16", "-k", "agree")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*tiny-llama: planted-vs-hf ok logits *, worst 0.* of allowed*"])
