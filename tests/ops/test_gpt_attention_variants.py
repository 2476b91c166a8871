"""The reference `gpt_attention` op with its variant inputs (ALiBi slopes, attention sinks, a
per-position query scale), over the paged KV cache, against a dense per-head attention written
here independently (no cache, one whole sequence at a time): 3 ragged prompts, then generation
steps across several 4-token blocks. Values strong enough that a variant left out is far off.
Tolerance: float32 on both sides, only summation order differs: 1e-5 of the largest value.
The batched kernel must give the same numbers (it hands these variants to the reference)."""

import math

import pytest
import torch

from ditto.ops import gpt_attention as _op
from ditto.ops.gpt_attention_batched import batched_gpt_attention
from ditto.ops.params import GPTAttentionParams
from ditto.runtime.paged_cache import PagedKVCache

TOLERANCE = 1e-5
H, KV, D = 4, 2, 8
PROMPTS, STEPS, MAX_SEQ_LEN = [5, 9, 2], 4, 13


def dense(qkv, variant: dict):
    t = qkv.shape[0]
    q = qkv[:, : H * D].reshape(t, H, D)
    k = qkv[:, H * D : (H + KV) * D].reshape(t, KV, D)
    v = qkv[:, (H + KV) * D :].reshape(t, KV, D)
    if "query_position_scale" in variant:
        q = q * variant["query_position_scale"][:t, None, None]
    out = torch.empty(t, H, D)
    i, j = torch.arange(t)[:, None], torch.arange(t)[None]
    for h in range(H):
        kv = h // (H // KV)
        scores = q[:, h] @ k[:, kv].T / math.sqrt(D)
        if "alibi_slopes" in variant:
            scores = scores + variant["alibi_slopes"][h] * (j - i)
        scores = scores.masked_fill(j > i, -math.inf)
        if "attention_sinks" in variant:
            weights = torch.exp(scores - scores.amax(-1, keepdim=True))
            sink = torch.exp(variant["attention_sinks"][h] - scores.amax(-1, keepdim=True))
            probs = weights / (weights.sum(-1, keepdim=True) + sink)
        else:
            probs = torch.softmax(scores, -1)
        out[:, h] = probs @ v[:, kv]
    return out.reshape(t, H * D)


VARIANTS = {
    "alibi": dict(alibi_slopes=torch.tensor([0.5, 0.25, 1.0, 0.125])),
    "sinks": dict(attention_sinks=torch.tensor([1.0, -0.5, 2.0, 0.0])),
    "query_scale": dict(query_position_scale=1.0 + 0.3 * torch.arange(MAX_SEQ_LEN, dtype=torch.float32)),
    "alibi_and_sinks": dict(alibi_slopes=torch.tensor([0.5, 0.25, 1.0, 0.125]), attention_sinks=torch.tensor([1.0, -0.5, 2.0, 0.0])),
}


@pytest.mark.parametrize("kernel", ["reference", "batched"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_matches_dense_attention(name, kernel):
    variant = VARIANTS[name]
    extra = {"position_embedding_type": "alibi"} if "alibi_slopes" in variant else {}
    params = GPTAttentionParams(layer_idx=0, num_heads=H, num_kv_heads=KV, head_size=D, tokens_per_block=4, **extra)
    op = torch.ops.ditto.gpt_attention if kernel == "reference" else batched_gpt_attention
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randn(MAX_SEQ_LEN, params.qkv_width, generator=gen) * 2 for _ in PROMPTS]
    cache = PagedKVCache([params], max_seq_len=MAX_SEQ_LEN, batch=len(PROMPTS), dtype=torch.float32)
    try:
        lengths = [0] * len(PROMPTS)
        for step in range(STEPS + 1):
            new = list(PROMPTS) if step == 0 else [1] * len(PROMPTS)
            inputs = cache.step_inputs([[7] * n for n in new], lengths, list(PROMPTS), is_context=step == 0)
            qkv = torch.cat([rows[b][lengths[b] : lengths[b] + new[b]] for b in range(len(PROMPTS))])
            tensors = {n: inputs.get(n) for n in _op.TENSOR_INPUTS}
            tensors.update(qkv=qkv, rotary_cos_sin=None, rotary_inv_freq=None)
            got = op(*(tensors[n] for n in _op.TENSOR_INPUTS), **params.as_dict(), **variant)
            want = torch.cat([dense(rows[b][: lengths[b] + new[b]], variant)[lengths[b]:] for b in range(len(PROMPTS))])
            error = (got - want).abs().max().item()
            assert error <= TOLERANCE * want.abs().max().item(), (name, step, error)
            plain = op(*(tensors[n] for n in _op.TENSOR_INPUTS), **params.as_dict()) if step == 0 else None
            if plain is not None:  # the variant matters at these values
                assert (plain - want).abs().max().item() > 100 * TOLERANCE * want.abs().max().item()
            lengths = [n + k for n, k in zip(lengths, new)]
    finally:
        cache.close()
