"""`torch.ops.ditto.gpt_attention` over the paged KV cache, against a dense reference written
here independently: RoPE as complex rotation, attention as masked softmax over each whole
sequence, with no cache at all.

The cases reach what the tiny models do not: several KV blocks per sequence (4 tokens per
block, sequences up to 14 tokens), a sequence that fills the cache exactly, two layers in
one pool, GQA, a sliding window shorter than the sequences, logit soft-capping, q_scaling
!= 1, halves and interleaved RoPE on part of the head. Then a model with a sliding window
shorter than its prompts goes through export and the fx backend against Hugging Face.

Tolerance: both sides compute in float32 on the same values; only summation order differs
(~1e-6); 1e-5 of the largest value.
"""

from __future__ import annotations

import math

import pytest
import torch

from ditto.ops import gpt_attention as _op  # noqa: F401  (registers the op)
from ditto.ops.params import GPTAttentionParams
from ditto.runtime.paged_cache import PagedKVCache

TOLERANCE = 1e-5
H, KV, D = 4, 2, 8
PROMPTS = [5, 9, 2]  # prompt lengths; then 5 generation steps: up to 14 tokens, 4 blocks of 4
STEPS = 5
MAX_SEQ_LEN = 14  # sequence 1 ends exactly at the cache's length


def cos_sin_table(positions: int, rotary_dim: int, base: float = 100.0) -> torch.Tensor:
    inv_freq = base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    angles = torch.arange(positions, dtype=torch.float64)[:, None] * inv_freq[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1).float()


def rotate(x: torch.Tensor, positions: torch.Tensor, rotary_dim: int, style: str, table: torch.Tensor) -> torch.Tensor:
    """RoPE as multiplication by e^(i angle) of complex pairs; x [T, heads, D]."""
    half = rotary_dim // 2
    cos, sin = table[positions, :half], table[positions, half:rotary_dim]
    turn = torch.complex(cos, sin)[:, None, :]
    head = x[..., :rotary_dim]
    if style == "rope_gptj":
        pairs = torch.view_as_complex(head.reshape(*head.shape[:-1], half, 2).contiguous())
        rotated = torch.view_as_real(pairs * turn).flatten(-2)
    else:
        pairs = torch.complex(head[..., :half], head[..., half:])
        turned = pairs * turn
        rotated = torch.cat([turned.real, turned.imag], dim=-1)
    return torch.cat([rotated, x[..., rotary_dim:]], dim=-1)


def dense_attention(qkv: torch.Tensor, params: GPTAttentionParams, table) -> torch.Tensor:
    """All T tokens of one sequence [T, qkv_width] -> [T, H * D], no cache."""
    t = qkv.shape[0]
    q = qkv[:, : H * D].reshape(t, H, D)
    k = qkv[:, H * D : (H + KV) * D].reshape(t, KV, D)
    v = qkv[:, (H + KV) * D :].reshape(t, KV, D)
    if params.has_rope:
        positions = torch.arange(t)
        q = rotate(q, positions, params.rotary_embedding_dim, params.position_embedding_type, table)
        k = rotate(k, positions, params.rotary_embedding_dim, params.position_embedding_type, table)
    out = torch.empty(t, H, D)
    for h in range(H):
        kv = h // (H // KV)  # query heads [kv * group, (kv + 1) * group) share KV head kv
        scores = q[:, h] @ k[:, kv].T / (math.sqrt(D) * params.q_scaling)
        if params.attn_logit_softcapping_scale:
            cap = params.attn_logit_softcapping_scale
            scores = cap * torch.tanh(scores / cap)
        i, j = torch.arange(t)[:, None], torch.arange(t)[None]
        visible = j <= i
        if params.sliding_window:
            visible &= j > i - params.sliding_window
        out[:, h] = torch.softmax(scores.masked_fill(~visible, -math.inf), -1) @ v[:, kv]
    return out.reshape(t, H * D)


def run_op(cache: PagedKVCache, inputs: dict, qkv: torch.Tensor, params: GPTAttentionParams, table) -> torch.Tensor:
    tensors = {name: inputs.get(name) for name in _op.TENSOR_INPUTS}
    tensors.update(qkv=qkv, rotary_cos_sin=table if params.has_rope else None, rotary_inv_freq=None)
    return torch.ops.ditto.gpt_attention(*(tensors[n] for n in _op.TENSOR_INPUTS), **params.as_dict())


CASES = {
    "plain_gqa": dict(),
    "neox_partial_rotary": dict(position_embedding_type="rope_gpt_neox", rotary_embedding_dim=6),
    "gptj_partial_rotary": dict(position_embedding_type="rope_gptj", rotary_embedding_dim=6),
    "sliding_window": dict(position_embedding_type="rope_gpt_neox", rotary_embedding_dim=8, sliding_window=3),
    "softcap_and_q_scaling": dict(attn_logit_softcapping_scale=0.7, q_scaling=0.5),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_paged_op_matches_dense_attention(case):
    layers = [GPTAttentionParams(layer_idx=i, num_heads=H, num_kv_heads=KV, head_size=D, tokens_per_block=4, **CASES[case])
              for i in range(2)]
    table = cos_sin_table(MAX_SEQ_LEN, layers[0].rotary_embedding_dim or 2)
    gen = torch.Generator().manual_seed(0)
    # per layer and sequence, the qkv rows of every position it will ever have
    rows = [[torch.randn(MAX_SEQ_LEN, layers[0].qkv_width, generator=gen) * 2 for _ in PROMPTS] for _ in layers]
    cache = PagedKVCache(layers, max_seq_len=MAX_SEQ_LEN, batch=len(PROMPTS), dtype=torch.float32)
    try:
        lengths = [0] * len(PROMPTS)
        for step in range(STEPS + 1):
            new = list(PROMPTS) if step == 0 else [1] * len(PROMPTS)
            if step == STEPS:  # only sequence 1 goes on, to exactly MAX_SEQ_LEN tokens
                new = [0, MAX_SEQ_LEN - lengths[1], 0]
            active = [b for b, n in enumerate(new) if n]
            inputs = cache.step_inputs([[7] * new[b] for b in active], [lengths[b] for b in active], [PROMPTS[b] for b in active],
                                       is_context=step == 0)
            if step == STEPS:  # a lone sequence: its own blocks, as the runtime gives them
                for name in ("kv_cache_block_offsets", "host_kv_cache_block_offsets"):
                    inputs[name] = cache.offsets[:, active].clone()
            for layer, params in enumerate(layers):
                qkv = torch.cat([rows[layer][b][lengths[b] : lengths[b] + new[b]] for b in active])
                got = run_op(cache, inputs, qkv, params, table)
                want = torch.cat([dense_attention(rows[layer][b][: lengths[b] + new[b]], params, table)[lengths[b]:] for b in active])
                error = (got - want).abs().max().item()
                assert error <= TOLERANCE * want.abs().max().item(), (case, step, layer, error)
            lengths = [n + k for n, k in zip(lengths, new)]
    finally:
        cache.close()
    assert lengths[1] == MAX_SEQ_LEN and cache.blocks_per_seq == 4


def test_step_inputs_are_what_trtllm_runtime_feeds():
    params = [GPTAttentionParams(layer_idx=i, num_heads=H, num_kv_heads=KV, head_size=D, tokens_per_block=4) for i in range(3)]
    cache = PagedKVCache(params, max_seq_len=10, batch=2, dtype=torch.float32)
    try:
        inputs = cache.step_inputs([[1, 2, 3], [4, 5]], [0, 0], [3, 2], is_context=True)
        assert inputs["last_token_ids"].tolist() == [3, 5]  # cumulative token counts
        assert inputs["position_ids"].tolist() == [0, 1, 2, 0, 1]
        later = cache.step_inputs([[6], [7]], [3, 9], [3, 2], is_context=False)
        assert later["position_ids"].tolist() == [3, 9] and later["sequence_length"].tolist() == [4, 10]
        assert later["host_request_types"].tolist() == [1, 1]
        # every (sequence, block, K/V, layer) unit is distinct: blocks never overlap
        units = {int(o) + 2 * layer for o in cache.offsets.flatten().tolist() for layer in range(3)}
        assert len(units) == 2 * cache.blocks_per_seq * 2 * 3 == cache.pool.numel() // (KV * 4 * D)
    finally:
        cache.close()
