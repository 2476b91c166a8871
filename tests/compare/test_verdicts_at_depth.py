"""Verdicts at depth in half precision: a deep random model passes the harness's default rule
(calibrated against the float32 oracle), and every planted attention bug fails it, first at
layer 0's attention in the context step, where each bug first acts.

Models (tests/deep_models.py): on a CPU, 24-layer hidden-256 Llama- and Qwen2-shaped models in
bfloat16 (CI runs the Llama shape, ~25 s of CPU, most of it ditto's export; the Qwen2 shape
is marked slow). On a GPU, the real shapes, random weights:

    DITTO_TEST_DEVICE=cuda DITTO_DEEP_SHAPES=qwen2.5-1.5b,llama-3.1-8b pytest tests/compare/test_verdicts_at_depth.py

(DITTO_DEEP_DTYPE=float16 for float16.) The verdict is Harness.judge, the code the regression
module's `X-vs-hf` test runs; the harness settings are this session's (its defaults unless
--ditto-* options are given), with the model, dtype and device set here.
"""

import dataclasses
import os

import pytest

from ditto.models.loader import DTYPES
from ditto.models.tiny import cache_root
from ditto.pipeline import load_program
from ditto.runtime.fx import run_program
from harness.comparison import failure_message, first_divergence, worst_by_name
from harness.options import read_settings
from harness.session import Harness
from tests.deep_models import make_deep_model
from tests.parity import DEVICE, materialized
from tests.planted_bugs import BUGS, planted

DTYPE = os.environ.get("DITTO_DEEP_DTYPE", "bfloat16")
if "DITTO_DEEP_SHAPES" in os.environ:  # asked for by name: all run
    SHAPES = [pytest.param(s, marks=pytest.mark.xdist_group(f"deep-{s}"))
              for s in os.environ["DITTO_DEEP_SHAPES"].split(",")]
else:
    SHAPES = [pytest.param("llama-deep", marks=pytest.mark.xdist_group("deep-llama-deep")),
              pytest.param("qwen2-deep", marks=[pytest.mark.slow, pytest.mark.xdist_group("deep-qwen2-deep")])]


@pytest.fixture(scope="module", params=SHAPES)
def deep(request, tmp_path_factory):
    """(harness, model, program): the shape's model, a Harness for it, and ditto's program loaded once."""
    folder = make_deep_model(request.param, cache_root() / "deep" / request.param, DEVICE)
    settings = dataclasses.replace(read_settings(request.config), models=[str(folder)], dtype=DTYPE, device=DEVICE,
                                   oracle_device=DEVICE)
    harness = Harness(settings, tmp_path_factory.mktemp("report"))
    assert harness.calibrated
    (model,) = harness.models
    program = materialized(load_program(str(folder), DTYPES[DTYPE]))
    yield harness, model, program
    del program


def test_correct_model_passes(deep):
    harness, model, program = deep
    run = harness.judge(model, "fx", run_program(program, harness.request(model)))
    assert first_divergence(run) is None, failure_message(run, "(not written)")
    assert set(worst_by_name(run)) >= {"layers.0.attn", f"layers.{model.config.num_hidden_layers - 1}.out", "logits"}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_planted_bug_fails(deep, bug):
    harness, model, program = deep
    with planted(program, bug):
        dumps = run_program(program, harness.request(model))
    div = first_divergence(harness.judge(model, "fx", dumps))
    assert div is not None, f"{bug} passed"
    assert (div.name, div.step) == ("layers.0.attn", 0), div
