"""`torch.ops.ditto.gpt_attention` over the paged KV cache, against the dense reference of
tests/attention_reference.py (written independently: RoPE as complex rotation, attention as
masked softmax over each whole sequence, with no cache at all).

The cases reach what the tiny models do not: several KV blocks per sequence (4 tokens per
block, sequences up to 14 tokens), a sequence that fills the cache exactly, two layers in
one pool, GQA, a sliding window shorter than the sequences, logit soft-capping, q_scaling
!= 1, halves and interleaved RoPE on part of the head. Then a model with a sliding window
shorter than its prompts goes through export and the fx backend against Hugging Face.

Tolerance: both sides compute in float32 on the same values; only summation order differs
(~1e-6); 1e-5 of the largest value.
"""

from __future__ import annotations

import pytest
import torch

from ditto.ops import gpt_attention as _op  # noqa: F401  (registers the op)
from ditto.ops.params import GPTAttentionParams
from ditto.runtime.paged_cache import PagedKVCache
from tests.attention_reference import (
    CASES,
    KV,
    MAX_SEQ_LEN,
    PROMPTS,
    STEPS,
    TOLERANCE,
    D,
    H,
    cos_sin_table,
    dense_attention,
)


def run_op(cache: PagedKVCache, inputs: dict, qkv: torch.Tensor, params: GPTAttentionParams, table) -> torch.Tensor:
    tensors = {name: inputs.get(name) for name in _op.TENSOR_INPUTS}
    tensors.update(qkv=qkv, rotary_cos_sin=table if params.has_rope else None, rotary_inv_freq=None)
    return torch.ops.ditto.gpt_attention(*(tensors[n] for n in _op.TENSOR_INPUTS), **params.as_dict())


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
