"""Attention sinks (a learned per-head logit in the softmax's denominator that attends to nothing)
as a parameter of the one `gpt_attention` op, on a tiny random FLINT model (gpt-oss style:
softmax(cat([scores, sinks])) without the sink column): hf vs fx vs replay (native TensorRT
lowering) logits in float32 within 1e-4 of the largest logit; the sinks reach the op as its
`attention_sinks` input; the GPTAttention plugin lowering refuses them (TensorRT-LLM 1.2's plugin
has no input for them). Also XGLM's eager attention (softmax over flattened heads, clamped scores)."""

import pytest
import torch

from ditto.errors import DittoError
from ditto.pipeline import load_program
from ditto.trtllm.gpt_attention_plugin import refuse_unmapped_inputs
from tests.tiny_models import assert_backends_match_hf, save_sweep_model


def _sink_weights(program):
    return [program.weights.load(n).float() for n in program.weights.names() if n.startswith("attention_sinks")]


@pytest.mark.needs_tensorrt
def test_flint_sinks_are_a_parameter(tmp_path):
    path = save_sweep_model(tmp_path, "flint")
    program = load_program(path)
    sinks = _sink_weights(program)
    assert len(sinks) == len(program.attention) and all(s.shape == (program.attention[0].num_heads,) for s in sinks)
    attention = [n for n in program.graph_module.graph.nodes if n.target == torch.ops.ditto.gpt_attention.default]
    assert all(n.kwargs.get("attention_sinks") is not None for n in attention)
    assert_backends_match_hf(path)


def test_plugin_lowering_refuses_sinks():
    with pytest.raises(DittoError, match=r"attention sinks[\s\S]*no input or field[\s\S]*native"):
        refuse_unmapped_inputs(0, {"qkv", "attention_sinks"})
    refuse_unmapped_inputs(0, {"qkv", "alibi_slopes"})  # no refusal without sinks


@pytest.mark.needs_tensorrt
def test_xglm_eager_attention_is_recognised(tmp_path):
    path = save_sweep_model(tmp_path, "xglm")
    program = load_program(path)
    assert len(program.attention) == 2
    assert_backends_match_hf(path)
