"""A per-position query scale (Beam's NoPE layers: q * (1 + (position + 1) / 2048) ** 0.1, the
"scalable softmax" / attention temperature) recognised from the graph as the op's
`query_position_scale` table, on a tiny random Beam model: the table's values, hf vs fx vs
replay logits in float32 within 1e-4 of the largest logit, and the plugin lowering's refusal
(TensorRT-LLM's nearest field indexes its table by token index in the step, not position)."""

import pytest
import torch

from ditto.errors import DittoError
from ditto.pipeline import load_program
from ditto.trtllm.gpt_attention_plugin import refuse_unmapped_inputs
from tests.tiny_models import assert_backends_match_hf, save_sweep_model


@pytest.mark.needs_tensorrt
def test_beam_query_scale_is_a_parameter(tmp_path):
    path = save_sweep_model(tmp_path, "beam")
    program = load_program(path)
    tables = [n for n in program.weights.names() if n.startswith("query_position_scale")]
    assert len(tables) == 1  # the full-attention (NoPE) layer; the sliding layers use RoPE
    table = program.weights.load(tables[0]).float()
    positions = torch.arange(table.shape[0], dtype=torch.float32)
    assert torch.allclose(table, (1 + (positions + 1) / 2048) ** 0.1, rtol=1e-6)
    assert_backends_match_hf(path)


def test_plugin_lowering_refuses_a_query_scale():
    with pytest.raises(DittoError, match=r"per-position query scale[\s\S]*use_logn_scaling"):
        refuse_unmapped_inputs(1, {"qkv", "query_position_scale"})
