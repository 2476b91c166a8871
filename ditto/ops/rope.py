"""RoPE, one home: what ditto recognised (`RopeInfo`) and the rotation itself (`apply_rope`).

The rotation turns pairs of the first `rotary_dim` features of each head by a position's
angle: (a, b) -> (a cos - b sin, b cos + a sin) (`rotate_pair`). The pairs are the two halves
(x[i], x[i + r/2]) in the GPT-NeoX style (`rope_gpt_neox`) or adjacent features (x[2i], x[2i+1])
in the GPT-J style (`rope_gptj`, "interleaved"); features past `rotary_dim` pass through.

The reference op, the batched kernel, the attention pass's verification and the replay of
TensorRT's rotary-embedding layer call `apply_rope` / `rotate`; the native TensorRT lowering
builds the same `rotate_pair` from TensorRT element-wise layers (it passes its own arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

NEOX, GPTJ = "rope_gpt_neox", "rope_gptj"
STYLES = (NEOX, GPTJ)


@dataclass(frozen=True, eq=False)
class RopeInfo:
    """A recognised rotary embedding: its style, rotary dimension, and cos/sin for every position.

    `cos_sin` [max_positions, dim] float32 holds the dim/2 frequencies' cos, then their sin (the
    table already carries any scaling: linear, llama3, yarn, ... are all just a table); `inv_freq`
    [dim/2] the angle per position of each pair. `base`, `scale_type`, `scale` and
    `original_max_positions` are the config values TensorRT-LLM's plugin also wants as fields.
    """

    style: str
    dim: int
    cos_sin: torch.Tensor
    inv_freq: torch.Tensor
    base: float = 10000.0
    scale_type: str = "none"
    scale: float = 1.0
    original_max_positions: int | None = None

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"unknown RoPE style {self.style!r} (one of {STYLES})")

    def attention_fields(self, max_positions: int) -> dict:
        """The `GPTAttentionParams` fields this RoPE sets."""
        return dict(
            position_embedding_type=self.style,
            rotary_embedding_dim=self.dim,
            rotary_embedding_base=self.base,
            rotary_embedding_scale_type=self.scale_type,
            rotary_embedding_scale=self.scale,
            rotary_embedding_max_positions=max_positions,
            rotary_embedding_original_max_positions=self.original_max_positions or max_positions,
        )


def no_rope_fields(max_positions: int) -> dict:
    """The `GPTAttentionParams` fields of an attention without RoPE."""
    return dict(
        position_embedding_type="learned_absolute",
        rotary_embedding_dim=0,
        rotary_embedding_base=10000.0,
        rotary_embedding_scale_type="none",
        rotary_embedding_scale=1.0,
        rotary_embedding_max_positions=max_positions,
        rotary_embedding_original_max_positions=max_positions,
    )


def _torch_arithmetic():
    return (torch.mul, torch.add, torch.sub)


def rotate_pair(a, b, cos, sin, arithmetic: tuple[Callable, Callable, Callable] | None = None):
    """(a, b) -> (a cos - b sin, b cos + a sin). `arithmetic` = (mul, add, sub) for non-torch
    values (the native lowering passes TensorRT element-wise layers)."""
    mul, add, sub = arithmetic or _torch_arithmetic()
    return sub(mul(a, cos), mul(b, sin)), add(mul(b, cos), mul(a, sin))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary_dim: int, interleaved: bool) -> torch.Tensor:
    """Rotate the first `rotary_dim` features of x's last axis; cos/sin broadcast to [..., rotary_dim/2]."""
    half = rotary_dim // 2
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    if interleaved:
        a, b = rotate_pair(rot[..., 0::2], rot[..., 1::2], cos, sin)
        rotated = torch.stack((a, b), dim=-1).flatten(-2)
    else:
        a, b = rotate_pair(rot[..., :half], rot[..., half:], cos, sin)
        rotated = torch.cat((a, b), dim=-1)
    return torch.cat((rotated, rest), dim=-1)


def apply_rope(x: torch.Tensor, cos_sin: torch.Tensor, rotary_dim: int, style: str) -> torch.Tensor:
    """x [n, heads, D] rotated at the positions whose table rows are cos_sin [n, >= rotary_dim]."""
    if style not in STYLES:
        raise ValueError(f"unknown RoPE style {style!r} (one of {STYLES})")
    half = rotary_dim // 2
    cos, sin = cos_sin[:, None, :half], cos_sin[:, None, half:rotary_dim]
    return rotate(x, cos, sin, rotary_dim, interleaved=style == GPTJ)
