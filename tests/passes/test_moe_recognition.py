"""MoE routers and activations recognised by what they compute, on tiny random models of the
architectures that have them (transformers' own modeling code, shrunk as scripts/arch_sweep.py
shrinks it): the parameters the pass reads off, and fx against HF.

- GLM-4-MoE with n_group=2, topk_group=1: DeepSeek-V3's group-limited top-k (sum of the top 2
  per group; sigmoid scores, expert bias).
- Kolibri1: top-k of the raw logits plus an expert bias, weights sigmoid(logit).
- PhiMoE: the sparse mixer (epsilon 0.01 measured by probing, not read from the config).
- MiniMax-M3 (text): the clamped SwiGLU of its experts (alpha 1.702, +1, limit 7).
"""

from __future__ import annotations

import pytest

from ditto.pipeline import load_program
from ditto.runtime.backend import get_backend
from ditto.runtime.fx import run_program
from tests.parity import forced_request, materialized, worst_errors
from tests.tiny_models import save_sweep_model

MODELS = {
    "glm4_moe-grouped": ("glm4_moe", dict(n_group=2, topk_group=1, n_routed_experts=8),
                         dict(n_group=2, topk_group=1, group_top=2, scoring="sigmoid", has_expert_bias=True)),
    "kolibri1": ("kolibri1", {}, dict(selection="logits", scoring="sigmoid", has_expert_bias=True, normalization_mode=0)),
    "phimoe": ("phimoe", {}, dict(normalization_mode=2, sparse_mixer_epsilon=0.01)),
    "minimax_m3_vl_text": ("minimax_m3_vl_text", {}, dict(activation="swiglu_clamped",
                                                         activation_params=(1.702, 1.0, 7.0))),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_router_is_recognised_and_fx_matches_hf(name, tmp_path):
    model_type, overrides, expected = MODELS[name]
    directory = save_sweep_model(tmp_path, model_type, std=0.1, **overrides)
    program = load_program(directory)
    assert program.moe, "no MoE layer recognised"
    for layer in program.moe:
        assert {k: layer[k] for k in expected} == expected
    request = forced_request(directory, steps=2, probes=[])
    errors = worst_errors(get_backend("hf").run(request), run_program(materialized(program), request))
    # the project's float32 bound (tests/parity.py); a wrong router moves the MoE output by O(1)
    assert errors["logits"] <= 1e-4, errors
