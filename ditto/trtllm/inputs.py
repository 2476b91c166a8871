"""The engine inputs TensorRT-LLM's runtime feeds a GPT model built with the GPTAttention plugin.

Configuration covered: `gpt_attention_plugin` on, paged KV cache, `remove_input_padding`,
beam width 1, one pipeline/tensor-parallel rank, no LoRA, no prompt tuning, no speculative
decoding, no streamingllm, a single KV-cache pool (every layer has the same number of KV heads).
The FX pipeline creates its graph placeholders from `ENGINE_INPUTS`, and the TensorRT network
its inputs and optimization profile from it plus `dim_ranges()`.

Source (read, not copied): NVIDIA/TensorRT-LLM `tensorrt_llm/models/generation_mixin.py`
(stored version at commit 03ec464e; the TensorRT engine path is unchanged through the 1.2
line, whose `version.py` reads "1.2.0rc2" at commit b35ac1b6):
- `prepare_basic_inputs` creates `input_ids`, `position_ids`, `last_token_ids`, then calls
  `prepare_attention_inputs`, which creates the KV-cache tensors first, then the attention
  inputs. Each `Tensor(...)` adds a network input when constructed, so this is the engine's
  input order.
- With gpt_attention_plugin + remove_input_padding + paged KV cache, `has_ctx_gen_opt_profiles`
  is False (in-flight batching), so there is ONE optimization profile (unless
  `multiple_profiles`), whose ranges `dim_ranges()` reproduces.
- The output: `logits` [batch, vocab_size] in `logits_dtype` (float32), marked in
  `tensorrt_llm/models/modeling_utils.py` `DecoderModelForCausalLM.forward` (commit 01ea6d79).

Dimension names (ours -> TensorRT-LLM's `dim_range` names):
- "num_tokens": `num_tokens` (input_ids) and `position_ids_num_tokens_range` (position_ids);
  equal ranges when there are no draft tokens, so one symbol here.
- "batch": `batch_size_beam_width`, `batch_size_last_token_ids`, `batch_size_cache` (beam 1).
- "max_blocks_per_seq": `max_blocks_per_seq` (KV-cache blocks per sequence).
- "max_seq_len": `max_seq_len` (cache_indirection's last dim).
- "num_layers": `pools_mapping` / `num_layers`, the number of attention layers: a model
  constant (static in the engine), not a profile dimension.
Integers are static sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EngineInput:
    name: str
    dtype: torch.dtype
    dims: tuple[str | int, ...]


# In TensorRT-LLM's creation order (see the module docstring).
ENGINE_INPUTS: list[EngineInput] = [
    EngineInput("input_ids", torch.int32, ("num_tokens",)),
    EngineInput("position_ids", torch.int32, ("num_tokens",)),
    EngineInput("last_token_ids", torch.int32, ("batch",)),
    # [num_pools, batch * beam, 2 (K, V), max_blocks_per_seq]
    EngineInput("kv_cache_block_offsets", torch.int32, (1, "batch", 2, "max_blocks_per_seq")),
    EngineInput("host_kv_cache_block_offsets", torch.int32, (1, "batch", 2, "max_blocks_per_seq")),
    # [num_pools, 2]: (primary, secondary) pool base pointers
    EngineInput("host_kv_cache_pool_pointers", torch.int64, (1, 2)),
    # [num_attn_layers, 2]: (pool index, layer index within the pool)
    EngineInput("host_kv_cache_pool_mapping", torch.int32, ("num_layers", 2)),
    EngineInput("sequence_length", torch.int32, ("batch",)),
    EngineInput("host_request_types", torch.int32, ("batch",)),
    EngineInput("host_past_key_value_lengths", torch.int32, ("batch",)),
    EngineInput("context_lengths", torch.int32, ("batch",)),
    EngineInput("host_runtime_perf_knobs", torch.int64, (16,)),
    EngineInput("host_context_progress", torch.int64, (1,)),
    EngineInput("host_context_lengths", torch.int32, ("batch",)),
    EngineInput("host_max_attention_window_sizes", torch.int32, ("num_layers",)),
    EngineInput("host_sink_token_length", torch.int32, (1,)),
    # [batch, beam, max_seq_len]
    EngineInput("cache_indirection", torch.int32, ("batch", 1, "max_seq_len")),
]

ENGINE_OUTPUTS: list[EngineInput] = [
    EngineInput("logits", torch.float32, ("batch", "vocab_size")),
]


def _default_range(max_value: int) -> tuple[int, int, int]:
    # generation_mixin.GenerationMixin.default_range with offset 0, min 1
    return (1, (max_value + 1) // 2, max_value)


def dim_ranges(
    *,
    max_batch_size: int,
    max_seq_len: int,
    max_num_tokens: int,
    tokens_per_block: int,
    opt_num_tokens: int | None = None,
) -> dict[str, tuple[int, int, int]]:
    """(min, opt, max) of every dynamic dimension name, as TensorRT-LLM's single profile sets them.

    Beam width 1. num_tokens: [1, min(max_num_tokens, max_batch_size), max_num_tokens] by
    default (`get_profiles_ranges`); max_blocks_per_seq: the KV range default_range(max_seq_len)
    divided by tokens_per_block, rounded up (`prepare_attention_inputs`).
    """
    if opt_num_tokens is None:
        opt_num_tokens = min(max_num_tokens, max_batch_size)
    kv_range = _default_range(max_seq_len)
    return {
        "num_tokens": (1, opt_num_tokens, max_num_tokens),
        "batch": _default_range(max_batch_size),
        "max_blocks_per_seq": tuple(math.ceil(v / tokens_per_block) for v in kv_range),
        "max_seq_len": kv_range,
    }
