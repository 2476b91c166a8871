"""Shared by the tests of ditto/trtllm/: a Llama-3-like attention layer, plugin options, and a
TEST DOUBLE of the TensorRT module for plugin creation (no TensorRT-LLM plugin library here)."""

from __future__ import annotations

from ditto.ops.params import GPTAttentionParams
from ditto.trtllm.gpt_attention_plugin import PluginOptions

# Llama-3-8B's attention (GQA 32/8, head 128, RoPE base 500000) with linear RoPE scaling, layer 3
LLAMA = GPTAttentionParams(
    layer_idx=3, num_heads=32, num_kv_heads=8, head_size=128, q_scaling=1.0,
    position_embedding_type="rope_gpt_neox", rotary_embedding_dim=128, rotary_embedding_base=500000.0,
    rotary_embedding_scale_type="linear", rotary_embedding_scale=2.0, rotary_embedding_max_positions=8192,
    rotary_embedding_original_max_positions=4096, tokens_per_block=64,
)
# bfloat16 plugin options with the layer's block size
PLUGIN_OPTIONS = PluginOptions(dtype="bfloat16", tokens_per_block=64, max_context_length=1024)


class FakeTrt:
    """Test double of the TensorRT module: records the registry lookup and the plugin fields."""

    class PluginFieldType:
        INT32, FLOAT32, INT8 = "INT32", "FLOAT32", "INT8"

    class PluginField:
        def __init__(self, name, data, type_):
            self.name, self.data, self.type = name, data, type_

    class PluginFieldCollection(list):
        pass

    class Creator:
        def __init__(self, field_names, accept=True):
            self.field_names = [FakeTrt.PluginField(name, None, None) for name in field_names]
            self.accept = accept
            self.created = []

        def create_plugin(self, name, collection):
            self.created.append((name, collection))
            return object() if self.accept else None

    def __init__(self, creator):
        self.creator = creator
        self.lookups = []

    def get_plugin_registry(self):
        fake = self

        class Registry:
            def get_plugin_creator(self, name, version, namespace):
                fake.lookups.append((name, version, namespace))
                return fake.creator

        return Registry()
