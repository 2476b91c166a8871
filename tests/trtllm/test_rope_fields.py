"""The RoPE fields ditto hands to TensorRT-LLM (base, scaling type and factor, original
context) come from the model's config, not from defaults. The cos/sin table ditto computes
with is measured from the graph, so numerical tests cannot see these fields; the GPTAttention
plugin computes its own table from them."""

import pytest
from transformers import AutoConfig

from ditto.models.tiny import tiny_model_dir
from ditto.pipeline import load_program


@pytest.mark.parametrize("model, scale_type", [("tiny-llama", "llama3"), ("tiny-phi3", "none")])
def test_rope_fields_follow_the_config(model, scale_type):
    config = AutoConfig.from_pretrained(tiny_model_dir(model))
    rope = config.rope_parameters
    for params in load_program(model).attention:
        assert params.rotary_embedding_base == rope["rope_theta"]
        assert params.rotary_embedding_scale_type == scale_type
        assert params.rotary_embedding_scale == rope.get("factor", 1.0)
        expected_original = rope.get("original_max_position_embeddings", config.max_position_embeddings)
        assert params.rotary_embedding_original_max_positions == expected_original
