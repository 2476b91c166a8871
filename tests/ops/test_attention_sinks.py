"""Attention sinks (a learned per-head logit in the softmax's denominator that attends to nothing)
as a parameter of the one `gpt_attention` op, on a tiny random FLINT model (gpt-oss style:
softmax(cat([scores, sinks])) without the sink column): hf vs fx vs replay (native TensorRT
lowering) logits in float32 within 1e-4 of the largest logit; the sinks reach the op as its
`attention_sinks` input; the GPTAttention plugin lowering refuses them (TensorRT-LLM 1.2's plugin
has no input for them). Also XGLM's eager attention (softmax over flattened heads, clamped scores)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from ditto.errors import DittoError
from ditto.pipeline import load_program
from ditto.trtllm.gpt_attention_plugin import refuse_unmapped_inputs
from tests.pipeline.test_attention_variants import assert_backends_match_hf

_SWEEP = Path(__file__).resolve().parents[2] / "scripts" / "arch_sweep.py"


def save_sweep_model(tmp_path, model_type: str, std: float = 0.2) -> str:
    """The architecture sweep's tiny config of `model_type`, seeded random weights, saved."""
    from transformers import AutoModelForCausalLM

    spec = importlib.util.spec_from_file_location("arch_sweep", _SWEEP)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(sweep.tiny_config(model_type)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, std)
            elif p.dim() == 1 and "sinks" in [n for n, q in model.named_parameters() if q is p][0]:
                p.normal_(0, 2.0)  # sinks large enough to take a visible share of the softmax
    model.save_pretrained(tmp_path)
    return str(tmp_path)


def _sink_weights(program):
    return [program.weights.load(n).float() for n in program.weights.names() if n.startswith("attention_sinks")]


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


def test_xglm_eager_attention_is_recognised(tmp_path):
    path = save_sweep_model(tmp_path, "xglm")
    program = load_program(path)
    assert len(program.attention) == 2
    assert_backends_match_hf(path)
