"""A dense attention reference for `torch.ops.ditto.gpt_attention` and its lowerings, written
here independently of ditto: RoPE as complex rotation, attention as masked softmax over each
whole sequence, with no cache at all; and the cases both the op (tests/ops/) and the native
TensorRT lowering (tests/trt/) are checked on.

Tolerance: both sides compute in float32 on the same values; only summation order differs
(~1e-6); 1e-5 of the largest value.
"""

from __future__ import annotations

import math

import torch

from ditto.ops.params import GPTAttentionParams

TOLERANCE = 1e-5
H, KV, D = 4, 2, 8
PROMPTS = [5, 9, 2]  # prompt lengths; then 5 generation steps: up to 14 tokens, 4 blocks of 4
STEPS = 5
MAX_SEQ_LEN = 14  # sequence 1 ends exactly at the cache's length


def cos_sin_table(positions: int, rotary_dim: int, base: float = 100.0) -> torch.Tensor:
    """The RoPE table [positions, rotary_dim]: cos of every angle, then sin (base `base`)."""
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



CASES = {
    "plain_gqa": dict(),
    "neox_partial_rotary": dict(position_embedding_type="rope_gpt_neox", rotary_embedding_dim=6),
    "gptj_partial_rotary": dict(position_embedding_type="rope_gptj", rotary_embedding_dim=6),
    "sliding_window": dict(position_embedding_type="rope_gpt_neox", rotary_embedding_dim=8, sliding_window=3),
    "softcap_and_q_scaling": dict(attn_logit_softcapping_scale=0.7, q_scaling=0.5),
}
