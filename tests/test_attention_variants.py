"""Attention variants as parameters of the one `gpt_attention` op, checked on tiny random
models of the architectures that use them: hf vs fx vs replay logits (float32, 1e-4 of the
largest logit, the parity bound), the recognised parameter, and the TensorRT-LLM plugin field
it becomes."""

import pytest
import torch

from ditto.errors import DittoError
from ditto.pipeline import load_program
from ditto.runtime.backend import get_backend
from ditto.trtllm.plugin import PluginOptions, gpt_attention_fields
from tests.parity import forced_request, worst_errors

_SMALL = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=256)


def save_tiny(tmp_path, model_type, **kwargs):
    """A seeded random model of `model_type`, saved as a Hugging Face directory."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **kwargs))
    with torch.no_grad():  # larger weights than the init, so that every term shows in the logits
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    model.save_pretrained(tmp_path)
    return str(tmp_path)


def assert_backends_match_hf(path, backends=("fx", "replay"), steps=3):
    request = forced_request(path, steps=steps, probes=["layers.0.attn"])
    reference = get_backend("hf").run(request)
    for backend in backends:
        errors = worst_errors(reference, get_backend(backend).run(request))
        assert max(errors.values()) <= 1e-4, (backend, errors)


def plugin_field(params, name):
    options = PluginOptions(dtype="float32", tokens_per_block=params.tokens_per_block, max_context_length=64)
    return dict(gpt_attention_fields(params, options))[name]


def test_gemma2_logit_softcapping_is_a_parameter(tmp_path):
    # a cap of 1 bends scores of the size random weights give: ignoring it fails the parity bound
    path = save_tiny(tmp_path, "gemma2", **_SMALL, attn_logit_softcapping=1.0, final_logit_softcapping=5.0,
                     sliding_window=4, query_pre_attn_scalar=16)
    program = load_program(path)
    assert [p.attn_logit_softcapping_scale for p in program.attention] == [1.0, 1.0]
    assert float(plugin_field(program.attention[0], "attn_logit_softcapping_scale")) == 1.0
    assert_backends_match_hf(path)


def test_attention_sink_beside_the_attention_is_refused_not_miscomputed(tmp_path):
    # Granite-SWA scales each head's output by sigmoid(logsumexp(scores) - sink): a second reader
    # of the scores. Converted with only the softmax replaced, generation steps took the
    # logsumexp over the new token alone (layers.0.attn diverged from HF); it must be refused.
    path = save_tiny(tmp_path, "granite_swa", **_SMALL, layer_types=["sliding_attention", "full_attention"],
                     sliding_window=4)
    with pytest.raises(DittoError, match=r"pairs of tokens[\s\S]*logsumexp[\s\S]*modeling_granite_swa.py"):
        load_program(path)
