"""Tiny random Hugging Face models for tests that need an architecture no built-in tiny model has:
save one from a transformers config (or from the architecture sweep's shrunk config), check that
ditto's backends give Hugging Face's logits on it, and read the GPTAttention plugin field its
attention becomes.

The parity bound is the project's float32 one (tests/parity.py): 1e-4 of the largest value.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from ditto.runtime.backend import get_backend
from ditto.trtllm.gpt_attention_plugin import PluginOptions, gpt_attention_fields
from tests.parity import FLOAT32_BOUND, forced_request, worst_errors

# the size of a model that runs in a second: 2 layers, hidden 64, 4 heads
COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=256)
# COMMON with grouped KV heads (4 query heads over 2) and an explicit head size
SMALL = dict(COMMON, num_key_value_heads=2, head_dim=16)

SWEEP_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "arch_sweep.py"
SWEEP_RESULTS = SWEEP_SCRIPT.parents[1] / "bench" / "arch_sweep.json"


def require_model_type(model_type: str) -> None:
    """Skip, naming the fact, when the installed transformers has no `model_type` (an architecture
    added after an older release, e.g. the GPU node's 5.17). A name that no transformers the
    architecture sweep measured has (bench/arch_sweep.json) is a typo in the test: it fails."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if model_type in CONFIG_MAPPING_NAMES:
        return
    if model_type not in json.loads(SWEEP_RESULTS.read_text()):
        pytest.fail(f"{model_type!r} is neither in this transformers ({transformers.__version__}) nor in "
                    f"{SWEEP_RESULTS.name}: a misspelt model type?")
    pytest.skip(f"this transformers ({transformers.__version__}) has no model type {model_type!r} (added in a later release)")


def save_tiny(folder, model_type: str, weight_std: float | None = 0.2, **config) -> str:
    """A seeded random model of `model_type` with `config`, saved as a Hugging Face directory.

    `weight_std`: matrices redrawn ~ N(0, weight_std), larger than transformers' init so that
    every term shows in the logits; None keeps transformers' init."""
    from transformers import AutoConfig

    require_model_type(model_type)
    return _save(folder, AutoConfig.for_model(model_type, **config), weight_std)


@functools.cache
def arch_sweep():
    """scripts/arch_sweep.py as a module (its `tiny_config`, `family`, ...)."""
    spec = importlib.util.spec_from_file_location("arch_sweep", SWEEP_SCRIPT)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    return sweep


def save_sweep_model(folder, model_type: str, std: float = 0.2, **overrides) -> str:
    """The architecture sweep's tiny config of `model_type` (with `overrides` set on it), seeded
    random weights, saved; returns the folder."""
    require_model_type(model_type)
    config = arch_sweep().tiny_config(model_type)
    for key, value in overrides.items():
        setattr(config, key, value)
    return _save(folder, config, std)


def _save(folder, config, std: float | None) -> str:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    if std is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() > 1:
                    p.normal_(0, std)
                elif p.dim() == 1 and "sinks" in name:
                    p.normal_(0, 2.0)  # attention sinks large enough to take a visible share of the softmax
            for name, buffer in model.named_buffers():
                if name.endswith("e_score_correction_bias"):  # zero at init: a nonzero bias is the case to get right
                    buffer.copy_(torch.randn(buffer.shape) * 0.05)
    model.save_pretrained(folder)
    return str(folder)


def assert_backends_match_hf(path, backends=("fx", "replay"), steps: int = 3) -> None:
    """Each of `backends` gives Hugging Face's logits and layer-0 attention output on `path`,
    within the float32 parity bound, on HF's own greedy tokens."""
    request = forced_request(path, steps=steps, probes=["layers.0.attn"])
    reference = get_backend("hf").run(request)
    for backend in backends:
        errors = worst_errors(reference, get_backend(backend).run(request))
        assert max(errors.values()) <= FLOAT32_BOUND, (backend, errors)


def plugin_field(params, name: str):
    """The value of the GPTAttention plugin field `name` for the attention parameters `params`."""
    options = PluginOptions(dtype="float32", tokens_per_block=params.tokens_per_block, max_context_length=64)
    return dict(gpt_attention_fields(params, options))[name]
