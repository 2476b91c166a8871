"""Replays of TensorRT's IAttention, RotaryEmbedding and KVCacheUpdate layers, which ditto's converters never create.

Only tests build them (tests/replay/test_layers.py, tests/replay/test_onnx_oracle.py): replay interprets
any TensorRT network, and these are TensorRT's own transformer layers, kept for networks built
with them and checked against ONNX Runtime's Attention, RotaryEmbedding and TensorScatter.

Written from `NvInfer.h` (IAttention, IAttentionInputLayer, CausalMaskKind, AttentionIOForm,
IRotaryEmbeddingLayer, IKVCacheUpdateLayer, addRotaryEmbedding, addKVCacheUpdate), the
operator pages (Attention, RotaryEmbedding, KVCacheUpdate) and "Fused Attention" in
TensorRT's documentation:

- attention = normalization(Q Kᵀ (+ add mask | bool mask)) V, without any scale (TensorRT
  requires Q or K to be scaled before it); K/V heads are shared by consecutive groups of
  `num_q_heads / num_kv_heads` query heads (GQA, MQA); UPPER_LEFT lets query i see keys
  j <= i, LOWER_RIGHT keys j <= i + s_kv - s_q; packed forms carry cumulative lengths [B + 1].
  The IAttention appears in the network as an input layer (its inputs: query, key, value,
  mask, normalization quantize scale, query lengths, key/value lengths) and an output layer;
  replay computes the attention at the input layer and passes it through the output layer.
- rotary embedding rotates pairs (x[i], x[i + r/2]) of the first r features of each head, or
  adjacent pairs (x[2i], x[2i+1]) when interleaved: (a, b) -> (a cos - b sin, b cos + a sin),
  cos/sin per pair from [b, s, r/2] caches or rows `positionIds` of [max_pos, r/2] caches.
- KV-cache update writes `update` into the cache at `writeIndices[b]` along the sequence
  axis, in place: the output is the cache input itself. TensorRT ignores out-of-bounds
  updates "silently"; replay refuses them, since it cannot know which part TensorRT keeps.

Scores, softmax and the rotation are computed in float32, then rounded to the input's type.
"""

from __future__ import annotations

import torch

from ditto.ops.rope import rotate
from ditto.replay.registry import LayerCall, replays

# IAttention attributes replay interprets (a newer one is refused, as for layers)
_ATTENTION_READS = frozenset({
    "causal", "causal_kind", "decomposable", "key_value_form", "key_value_lengths", "mask", "norm_op",
    "normalization_quantize_scale", "normalization_quantize_to_type", "query_form", "query_lengths",
    "get_input", "get_output", "set_input", "metadata", "name", "num_inputs", "num_outputs", "num_ranks",
})


@replays("ATTENTION_INPUT", reads=("attention",))
def attention_input(call: LayerCall) -> torch.Tensor:
    attention = call.attr("attention")
    unknown = {a for a in dir(attention) if not a.startswith("_")} - _ATTENTION_READS
    if unknown:
        raise call.error(f"IAttention attribute(s) {', '.join(sorted(unknown))} that replay does not interpret")
    if getattr(attention, "num_ranks", 1) != 1:
        raise call.refuse("attention.num_ranks", attention.num_ranks, "replay runs one rank")
    if call.optional(4) is not None:
        raise call.refuse("attention.normalization_quantize_scale", "set", "replay does not quantize the normalization")
    normalize = {"SOFTMAX": True, "NONE": False}.get(attention.norm_op.name)
    if normalize is None:
        raise call.refuse("attention.norm_op", attention.norm_op)
    causal = _causal_kind(call, attention)
    q, k, v, mask = call.input(0), call.input(1), call.input(2), call.optional(3)
    forms = (attention.query_form.name, attention.key_value_form.name)
    if forms == ("PADDED_BHND", "PADDED_BHND"):
        lengths = call.optional(6)
        return _attend(call, q, k, v, mask, causal, normalize, None if lengths is None else lengths.tolist())
    if forms != ("PACKED_NHD", "PACKED_NHD"):
        raise call.refuse("attention.query_form/key_value_form", forms, "replay computes both padded or both packed")
    if mask is not None:
        raise call.refuse("attention.mask", "set", "replay does not define a mask for packed attention")
    q_cum, kv_cum = call.input(5).tolist(), call.input(6).tolist()
    if len(q_cum) != len(kv_cum) or q_cum[0] != 0 or kv_cum[0] != 0:
        raise call.error(f"cumulative query lengths {q_cum} and key/value lengths {kv_cum} do not describe one batch")
    out = torch.zeros_like(q)  # rows past the last query length are left zero (TensorRT: unspecified)
    for b in range(len(q_cum) - 1):
        qs, ks = slice(q_cum[b], q_cum[b + 1]), slice(kv_cum[b], kv_cum[b + 1])
        heads_first = [t.transpose(0, 1)[None] for t in (q[qs], k[ks], v[ks])]  # [1, heads, tokens, D]
        out[qs] = _attend(call, *heads_first, None, causal, normalize, None)[0].transpose(0, 1)
    return out


@replays("ATTENTION_OUTPUT", reads=("attention",))
def attention_output(call: LayerCall) -> torch.Tensor:
    return call.input(0)  # the attention was computed by its input layer


def _causal_kind(call, attention) -> str:
    kind = getattr(attention, "causal_kind", None)
    name = ("UPPER_LEFT" if attention.causal else "NONE") if kind is None else kind.name
    if name not in ("NONE", "UPPER_LEFT", "LOWER_RIGHT"):
        raise call.refuse("attention.causal_kind", kind)
    return name


def _attend(call, q, k, v, mask, causal: str, normalize: bool, kv_lengths):
    """Padded attention: q [B, Hq, Sq, D], k/v [B, Hkv, Skv, D] -> [B, Hq, Sq, D]."""
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4 or q.shape[-1] != k.shape[-1] or q.shape[0] != k.shape[0]:
        raise call.error(f"attention shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not fit")
    if q.shape[1] % k.shape[1]:
        raise call.error(f"{q.shape[1]} query heads are not a multiple of {k.shape[1]} key/value heads")
    group = q.shape[1] // k.shape[1]
    keys = k.float().repeat_interleave(group, dim=1)
    values = v.float().repeat_interleave(group, dim=1)
    scores = q.float() @ keys.transpose(-1, -2)  # [B, Hq, Sq, Skv]
    s_q, s_kv = scores.shape[-2], scores.shape[-1]
    allowed = torch.ones(s_q, s_kv, dtype=torch.bool, device=q.device)
    rows = torch.arange(s_q, device=q.device)[:, None]
    cols = torch.arange(s_kv, device=q.device)[None, :]
    if causal == "UPPER_LEFT":
        allowed = cols <= rows
    elif causal == "LOWER_RIGHT":
        allowed = cols <= rows + (s_kv - s_q)
    allowed = allowed[None, None]
    if kv_lengths is not None:
        if len(kv_lengths) != q.shape[0]:
            raise call.error(f"{len(kv_lengths)} key/value lengths for a batch of {q.shape[0]}")
        if causal == "LOWER_RIGHT" and any(n != s_kv for n in kv_lengths):
            # is the diagonal anchored at the padded length or at each sequence's? not documented
            raise call.refuse("attention.causal_kind", "LOWER_RIGHT", "with key/value lengths shorter than the padded length")
        length = torch.tensor(kv_lengths, device=q.device)[:, None, None, None]
        allowed = allowed & (cols[None, None] < length)
    if mask is not None:
        if mask.dim() != 4:
            raise call.error(f"attention mask of rank {mask.dim()}; TensorRT takes [b, h, s_q, s_kv]")
        if mask.dtype == torch.bool:
            allowed = allowed & mask
        elif mask.dtype == q.dtype:
            scores = scores + mask.float()
        else:
            raise call.error(f"attention mask of type {mask.dtype} for {q.dtype} inputs")
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1) if normalize else scores
    return (probs @ values).to(q.dtype)


@replays("ROTARY_EMBEDDING", reads=("interleaved", "rotary_embedding_dim"))
def rotary_embedding(call: LayerCall) -> torch.Tensor:
    x, cos, sin, positions = call.input(0), call.input(1), call.input(2), call.optional(3)
    if x.dim() != 4:
        raise call.error(f"input of shape {tuple(x.shape)}; TensorRT takes [batch, heads, sequence, head_size]")
    size = x.shape[-1]
    rotary = int(call.attr("rotary_embedding_dim")) or size
    if rotary % 2 or rotary > size:
        raise call.refuse("rotary_embedding_dim", rotary, f"must be even and at most the head size {size}")
    half = rotary // 2
    if positions is not None:
        if positions.shape != (x.shape[0], x.shape[2]):
            raise call.error(f"positionIds {tuple(positions.shape)} for input {tuple(x.shape)}")
        cos, sin = cos[positions.long()], sin[positions.long()]
    if cos.shape != (x.shape[0], x.shape[2], half) or sin.shape != cos.shape:
        raise call.error(
            f"cos/sin of shape {tuple(cos.shape)} / {tuple(sin.shape)} for input {tuple(x.shape)} and rotary dim {rotary}"
        )
    cos, sin = cos.float()[:, None], sin.float()[:, None]  # [b, 1, s, r/2]
    return rotate(x.float(), cos, sin, rotary, interleaved=bool(call.attr("interleaved"))).to(x.dtype)


@replays("KV_CACHE_UPDATE", reads=("cache_mode", "update_form", "update_lengths"))
def kv_cache_update(call: LayerCall) -> torch.Tensor:
    cache, update, write = call.input(0), call.input(1), call.input(2).tolist()
    call.enum("cache_mode", {"LINEAR": None})
    form = call.enum("update_form", {"PADDED_BHND": "padded", "PACKED_NHD": "packed"})
    if update.dtype != cache.dtype or cache.dim() != 4:
        raise call.error(f"cache {cache.dtype} {tuple(cache.shape)}, update {update.dtype} {tuple(update.shape)}")
    if len(write) != cache.shape[0]:
        raise call.error(f"{len(write)} write indices for a cache batch of {cache.shape[0]}")
    if form == "padded":
        if update.dim() != 4 or update.shape[0] != len(write):
            raise call.error(f"update {tuple(update.shape)} for {len(write)} write indices")
        pieces = [update[b] for b in range(update.shape[0])]  # [heads, s, head_size]
    else:
        cumulative = call.input(3).tolist()
        if len(cumulative) != len(write) + 1 or cumulative[0] != 0:
            raise call.error(f"update lengths {cumulative} for {len(write)} sequences")
        pieces = [update[cumulative[b] : cumulative[b + 1]].transpose(0, 1) for b in range(len(write))]
    for b, (start, piece) in enumerate(zip(write, pieces)):
        if start < 0 or start + piece.shape[1] > cache.shape[2]:
            raise call.error(
                f"sequence {b} writes positions {start}..{start + piece.shape[1] - 1} of a cache of length "
                f"{cache.shape[2]}; TensorRT drops such updates silently and replay does not guess which part"
            )
        cache[b, :, start : start + piece.shape[1]] = piece
    return cache
