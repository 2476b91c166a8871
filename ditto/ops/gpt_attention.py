"""`torch.ops.ditto.gpt_attention`: TensorRT-LLM's GPTAttention plugin as a torch op.

Semantics follow the plugin in its "remove input padding + paged KV cache" mode:

- `qkv` [num_tokens, (num_heads + 2 * num_kv_heads) * head_size] packs the tokens of all
  requests of the step without padding: context requests contribute their whole prompt
  (`host_context_lengths[b]` tokens), generation requests one token, in batch order.
- RoPE (when `position_embedding_type` is rope_*) is applied here to Q and K, at positions
  `past + i` where `past = sequence_length[b] - new_tokens` (the plugin ignores
  `position_ids`); cos/sin come from `rotary_cos_sin` [max_positions, rotary_dim] float32,
  first half cos, second half sin. (The plugin wants the same values interleaved per
  frequency as [1, max_positions * rotary_dim]; `ditto.trtllm.gpt_attention_plugin.plugin_rotary_cos_sin`
  converts when lowering.)
- K and V are written into the paged cache (see `ditto.ops.kv_cache`), then each query
  attends causally to its own sequence's keys (optionally within a sliding window).
- softmax scale = 1 / (sqrt(head_size) * q_scaling); scores and softmax in float32.
- ALiBi (`position_embedding_type` "alibi", TensorRT-LLM's kALIBI: bmm1 * scale + alibi):
  `alibi_slopes` [num_heads] float32, slope_h * (key_pos - query_pos) added to the scaled
  scores (after any soft-cap). Equal, after softmax, to any bias slope_h * key_pos + c(query).
- Attention sinks (`attention_sinks` [num_heads] float32, gpt-oss style): a learned logit per head
  joins the softmax's denominator and attends to nothing: probs = softmax([scores, sink])[:-1].
- RMSNorm after RoPE (`query_norm_after_rope` / `key_norm_after_rope` [head_size + 1] float32, HunYuan's
  QK-norm): each rotated head y becomes y * rsqrt(mean(y^2) + eps) * weight (weight first, eps last).

- `value_head_size` / `query_key_head_size` (multi-head latent attention): informational, nonzero
  when the model's value (query/key) head is narrower than `head_size`; the attention pass padded
  it with zero features, so the kernel computes with `head_size` alone.

The output is [num_tokens, num_heads * head_size] in the dtype of `qkv`.
"""

from __future__ import annotations

import inspect
from typing import Optional

import torch

from ditto.ops.kv_cache import layer_unit, pool_at
from ditto.ops.rope import apply_rope

# The op's tensor inputs, in the plugin's order (see ditto/trtllm/gpt_attention_plugin.py for the plugin).
TENSOR_INPUTS = (
    "qkv",
    "sequence_length",
    "host_past_key_value_lengths",
    "host_max_attention_window_sizes",
    "host_sink_token_length",
    "context_lengths",
    "cache_indirection",
    "host_request_types",
    "kv_cache_block_offsets",
    "host_kv_cache_block_offsets",
    "host_kv_cache_pool_pointers",
    "host_kv_cache_pool_mapping",
    "rotary_inv_freq",
    "rotary_cos_sin",
    "host_context_lengths",
    "host_runtime_perf_knobs",
    "host_context_progress",
)
# Tensor inputs of attention variants, keyword arguments defaulting to None (off):
# - alibi_slopes [num_heads] float32: the plugin's ALIBI_SLOPES input (between ROTARY_COS_SIN and
#   HOST_CONTEXT_LENGTH in its order), used when position_embedding_type is "alibi";
# - attention_sinks [num_heads] float32: ditto's own, not a GPTAttention plugin input (TensorRT-LLM's
#   engine path has no sinks; its PyTorch backend's attention op takes `attention_sinks`).
# - query_position_scale [max_positions] float32: the query multiplied by a per-position factor after
#   RoPE (scalable softmax / attention temperature, Beam's NoPE layers); ditto's own (see trtllm/plugin.py).
# - query_norm_after_rope / key_norm_after_rope [head_size + 1] float32: an RMSNorm over each head of the
#   query / key AFTER RoPE (HunYuan's QK-norm): y * rsqrt(mean(y^2) + eps) * weight, the weight's head_size
#   values followed by eps; ditto's own (TensorRT-LLM's GPTAttention has no norm after its RoPE).
OPTIONAL_TENSOR_INPUTS = ("alibi_slopes", "attention_sinks", "query_position_scale", "query_norm_after_rope",
                          "key_norm_after_rope")
ALL_TENSOR_INPUTS = TENSOR_INPUTS + OPTIONAL_TENSOR_INPUTS


@torch.library.custom_op("ditto::gpt_attention", mutates_args=())
def gpt_attention(
    qkv: torch.Tensor,
    sequence_length: torch.Tensor,
    host_past_key_value_lengths: torch.Tensor,
    host_max_attention_window_sizes: torch.Tensor,
    host_sink_token_length: torch.Tensor,
    context_lengths: torch.Tensor,
    cache_indirection: torch.Tensor,
    host_request_types: torch.Tensor,
    kv_cache_block_offsets: torch.Tensor,
    host_kv_cache_block_offsets: torch.Tensor,
    host_kv_cache_pool_pointers: torch.Tensor,
    host_kv_cache_pool_mapping: torch.Tensor,
    rotary_inv_freq: Optional[torch.Tensor],
    rotary_cos_sin: Optional[torch.Tensor],
    host_context_lengths: torch.Tensor,
    host_runtime_perf_knobs: torch.Tensor,
    host_context_progress: torch.Tensor,
    layer_idx: int,
    num_heads: int,
    num_kv_heads: int,
    head_size: int,
    q_scaling: float,
    position_embedding_type: str,
    rotary_embedding_dim: int,
    rotary_embedding_base: float,
    rotary_embedding_scale_type: str,
    rotary_embedding_scale: float,
    rotary_embedding_max_positions: int,
    rotary_embedding_original_max_positions: int,
    attn_logit_softcapping_scale: float,
    sliding_window: int,
    tokens_per_block: int,
    value_head_size: int = 0,
    query_key_head_size: int = 0,
    alibi_slopes: Optional[torch.Tensor] = None,
    attention_sinks: Optional[torch.Tensor] = None,
    query_position_scale: Optional[torch.Tensor] = None,
    query_norm_after_rope: Optional[torch.Tensor] = None,
    key_norm_after_rope: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Reference kernel in plain torch (see the module docstring for the semantics)."""
    H, KV, D = num_heads, num_kv_heads, head_size
    pool_idx, layer_in_pool = (int(v) for v in host_kv_cache_pool_mapping[layer_idx].tolist())
    pool = pool_at(int(host_kv_cache_pool_pointers[pool_idx, 0]))
    units = pool.view(-1, KV, tokens_per_block, D)  # one unit = K or V of one block of one layer
    offsets = host_kv_cache_block_offsets[pool_idx].to(qkv.device).long()  # [batch, 2, max_blocks]
    scale = 1.0 / (D**0.5 * q_scaling)

    outputs = []
    start = 0
    seq_lens = sequence_length.tolist()
    for b, request_type in enumerate(host_request_types.tolist()):
        n = int(host_context_lengths[b]) if request_type == 0 else 1
        total = int(seq_lens[b])
        past = total - n
        tokens = qkv[start : start + n]
        start += n
        q = tokens[:, : H * D].reshape(n, H, D).float()
        k = tokens[:, H * D : (H + KV) * D].reshape(n, KV, D).float()
        v = tokens[:, (H + KV) * D :].reshape(n, KV, D)
        if position_embedding_type.startswith("rope"):
            positions = torch.arange(past, total, device=qkv.device)
            cos_sin = rotary_cos_sin[positions].float()
            q = apply_rope(q, cos_sin, rotary_embedding_dim, position_embedding_type)
            k = apply_rope(k, cos_sin, rotary_embedding_dim, position_embedding_type)
        q, k = rms_norm_after_rope(q, query_norm_after_rope), rms_norm_after_rope(k, key_norm_after_rope)
        if query_position_scale is not None:
            q = q * query_position_scale[torch.arange(past, total, device=qkv.device)].float()[:, None, None]

        # write the new K/V into their blocks, then read the whole sequence back
        pos = torch.arange(past, total, device=qkv.device)
        blocks, slots = pos // tokens_per_block, pos % tokens_per_block
        k_units = layer_unit(offsets[b, 0, blocks], layer_in_pool)
        v_units = layer_unit(offsets[b, 1, blocks], layer_in_pool)
        units[k_units, :, slots] = k.to(pool.dtype)
        units[v_units, :, slots] = v.to(pool.dtype)
        all_pos = torch.arange(total, device=qkv.device)
        all_blocks, all_slots = all_pos // tokens_per_block, all_pos % tokens_per_block
        keys = units[layer_unit(offsets[b, 0, all_blocks], layer_in_pool), :, all_slots].float()  # [total, KV, D]
        values = units[layer_unit(offsets[b, 1, all_blocks], layer_in_pool), :, all_slots].float()

        group = H // KV
        keys = keys.repeat_interleave(group, dim=1)
        values = values.repeat_interleave(group, dim=1)
        scores = torch.einsum("nhd,thd->hnt", q, keys) * scale
        if attn_logit_softcapping_scale > 0:
            cap = attn_logit_softcapping_scale
            scores = cap * torch.tanh(scores / cap)
        query_pos = pos[:, None]
        key_pos = all_pos[None, :]
        allowed = key_pos <= query_pos
        if alibi_slopes is not None:  # ALiBi: slope_h * (key - query) added after the scale
            scores = scores + alibi_slopes.float()[:, None, None] * (key_pos - query_pos)[None]
        if sliding_window > 0:
            allowed = allowed & (key_pos > query_pos - sliding_window)
        scores = scores.masked_fill(~allowed[None], float("-inf"))
        if attention_sinks is not None:  # one more logit per head in the denominator, with no value
            sinks = attention_sinks.float()[:, None, None].expand(H, n, 1)
            probs = torch.softmax(torch.cat((scores, sinks), dim=-1), dim=-1)[..., :-1]
        else:
            probs = torch.softmax(scores, dim=-1)
        out = torch.einsum("hnt,thd->nhd", probs, values)
        outputs.append(out.reshape(n, H * D).to(qkv.dtype))
    return torch.cat(outputs, dim=0)


def rms_norm_after_rope(x: torch.Tensor, norm: Optional[torch.Tensor]) -> torch.Tensor:
    """x [tokens, heads, head_size] float32 RMS-normalised per head; `norm` is the weight then eps (None: x)."""
    if norm is None:
        return x
    norm = norm.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm[-1]) * norm[:-1]


_SIGNATURE = inspect.signature(gpt_attention._init_fn)


@gpt_attention.register_fake
def _(*args, **kwargs):
    bound = _SIGNATURE.bind(*args, **kwargs).arguments
    qkv = bound["qkv"]
    return qkv.new_empty((qkv.shape[0], bound["num_heads"] * bound["head_size"]))

