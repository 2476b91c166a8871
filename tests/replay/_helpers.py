"""Shared by the replay tests: a TensorRT-RTX network built by hand (`Net`), and the GPTAttention
plugin called through replay's test double (TensorRT-RTX has no TensorRT-LLM plugins) on a small
paged layer: its fields, its inputs in the plugin's order, the reference op's attributes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from hypothesis import settings

from ditto.ops.kv_cache import block_offset, register_pool
from ditto.replay import replay_network
from ditto.replay.registry import LayerCall
from tests.needs_tensorrt import tensorrt_or_skip

trt = tensorrt_or_skip("tensorrt_rtx")
TRT_TYPES = {"float32": trt.float32, "float16": trt.float16, "int32": trt.int32, "int64": trt.int64, "bool": trt.bool}


class Net:
    """A strongly typed network under construction: keeps its constants' memory alive and the
    arrays given to its inputs (`replay()` feeds them); `output` names an output by default."""

    def __init__(self, output: str = "out"):
        self.builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        self.network = self.builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        self.keep = []
        self.feeds = {}
        self.output = output

    def input(self, name: str, array: np.ndarray):
        """A network input shaped and typed as `array`, which `replay()` feeds to it."""
        self.feeds[name] = array
        return self.network.add_input(name, TRT_TYPES[array.dtype.name], array.shape)

    def const(self, array) -> object:
        """A constant tensor of `array` (a copy the network points into, 0-d kept 0-d)."""
        array = np.array(array, order="C")
        self.keep.append(array)
        return self.network.add_constant(array.shape, trt.Weights(array)).get_output(0)

    def out(self, layer_or_tensor, name: str | None = None):
        """Mark a layer's first output (or a tensor) as the network output `name`."""
        tensor = layer_or_tensor.get_output(0) if hasattr(layer_or_tensor, "get_output") else layer_or_tensor
        tensor.name = name or self.output
        self.network.mark_output(tensor)
        return tensor

    def shuffle(self, tensor, first, dims, second):
        """A shuffle layer on `tensor`: transpose `first`, reshape to `dims`, transpose `second`."""
        layer = self.network.add_shuffle(tensor)
        layer.first_transpose = tuple(first)
        layer.reshape_dims = tuple(dims)
        layer.second_transpose = tuple(second)
        return layer

    def run(self, outputs=None, **inputs) -> dict[str, np.ndarray]:
        """Replay the network on `inputs` (numpy arrays by input name)."""
        tensors = {k: torch.from_numpy(np.array(v, order="C")) for k, v in inputs.items()}
        return {k: v.numpy() for k, v in replay_network(self.network, tensors, outputs).items()}

    def replay(self) -> dict[str, np.ndarray]:
        """Replay the network on the arrays its inputs were made from."""
        return self.run(**self.feeds)

    def builds(self) -> bool:
        """TensorRT's builder accepts the network."""
        return self.builder.build_serialized_network(self.network, self.builder.create_builder_config()) is not None


# ---- the GPTAttention plugin on a small paged layer -----------------------------------------

HEADS, KV_HEADS, HEAD_SIZE, TOKENS_PER_BLOCK = 4, 2, 8, 4
LENGTHS = [3, 2]  # two context sequences
# the plugin fields that are the reference op's attributes of the same name
OP_FIELDS = ("layer_idx", "num_heads", "num_kv_heads", "head_size", "q_scaling", "attn_logit_softcapping_scale",
             "rotary_embedding_dim", "rotary_embedding_base", "rotary_embedding_scale", "rotary_embedding_max_positions",
             "rotary_embedding_original_max_positions", "tokens_per_block")


def plugin_fields(position_embedding_type: int, rotary_dim: int) -> dict:
    """The plugin fields of the small layer (TensorRT-LLM's PositionEmbeddingType number)."""
    return {
        "layer_idx": 0, "num_heads": HEADS, "num_kv_heads": KV_HEADS, "num_kv_heads_origin": KV_HEADS, "head_size": HEAD_SIZE,
        "q_scaling": 1.0, "attn_logit_softcapping_scale": 0.0, "position_embedding_type": position_embedding_type,
        "rotary_embedding_dim": rotary_dim, "rotary_embedding_base": 10000.0, "rotary_embedding_scale_type": 0,
        "rotary_embedding_scale": 1.0, "rotary_embedding_max_positions": 16, "rotary_embedding_original_max_positions": 16,
        "tokens_per_block": TOKENS_PER_BLOCK, "unidirectional": 1, "mask_type": [1], "paged_kv_cache": 1,
        "remove_input_padding": 1, "type_id": [0],
    }


def new_pool() -> torch.Tensor:
    """An empty KV pool for the small layer: 8 blocks."""
    return torch.zeros((8, 1, 2, KV_HEADS, TOKENS_PER_BLOCK, HEAD_SIZE))


def plugin_inputs(pool: torch.Tensor, qkv: torch.Tensor, position_inputs: dict) -> dict:
    """The plugin's inputs, in its order, for the LENGTHS context sequences with K/V in `pool`
    (registered here: unregister it after); `position_inputs` (RoPE tables or ALiBi slopes) in
    their place."""
    i32 = torch.int32
    pointer = register_pool(pool)
    blocks = 4
    offsets = torch.tensor([[[[block_offset(b * blocks + j, 1, kv) for j in range(blocks)] for kv in (0, 1)] for b in range(2)]],
                           dtype=i32)
    return {
        "qkv": qkv, "sequence_length": torch.tensor(LENGTHS, dtype=i32), "host_past_key_value_lengths": torch.zeros(2, dtype=i32),
        "host_max_attention_window_sizes": torch.tensor([16], dtype=i32), "host_sink_token_length": torch.zeros(1, dtype=i32),
        "context_lengths": torch.tensor(LENGTHS, dtype=i32), "cache_indirection": torch.zeros((2, 1, 16), dtype=i32),
        "host_request_types": torch.zeros(2, dtype=i32), "kv_cache_block_offsets": offsets, "host_kv_cache_block_offsets": offsets,
        "host_kv_cache_pool_pointers": torch.tensor([[pointer, 0]], dtype=torch.int64),
        "host_kv_cache_pool_mapping": torch.tensor([[0, 0]], dtype=i32),
        **position_inputs,
        "host_context_lengths": torch.tensor(LENGTHS, dtype=i32), "host_runtime_perf_knobs": torch.full((16,), -1, dtype=torch.int64),
        "host_context_progress": torch.zeros(1, dtype=torch.int64),
    }


def gpt_attention_call(fields, inputs) -> LayerCall:
    """A replay call of a PLUGIN_V2 layer holding TensorRT-LLM's GPTAttention plugin with `fields`."""
    plugin = SimpleNamespace(plugin_namespace="tensorrt_llm", plugin_type="GPTAttention", plugin_version="1")
    layer = SimpleNamespace(name="attn0", plugin=plugin)
    return LayerCall(layer, "PLUGIN_V2", trt, inputs, torch.device("cpu"), fields)


FAST = settings(max_examples=25, deadline=None)  # hypothesis: enough cases per layer, CI-sized
rng = np.random.default_rng(0)


def randn(*shape, dtype=np.float32):
    """Standard-normal numpy data of `shape` from the shared seeded generator."""
    return rng.standard_normal(shape).astype(dtype)
