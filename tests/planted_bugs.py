"""Attention bugs planted into ditto's graph, for the verdict checks at depth.

Each bug replaces the target of every `gpt_attention` node of a loaded program by a wrapper
that computes what the bug would compute, by calling the real op with changed inputs (so it
works whatever kernel the op runs: the torch reference or a fast one). `planted(program, bug)`
puts the wrapper in and takes it out again; production code has no switch for any of this.

- `wrong_rope_base`: the cos/sin table of RoPE base 10000 (the usual default) instead of the
  model's own (a converter that missed `rope_theta` or the scaling).
- `swapped_kv`: K read where V is and V where K is (a mistake in packing the fused QKV).
- `wrong_gqa_head_map`: query head h reads KV head h % num_kv_heads instead of
  h // (num_heads / num_kv_heads) (`repeat` where `repeat_interleave` is meant).
- `mask_off_by_one`: in the context step each query also sees the next token (`key <= query + 1`).
"""

from __future__ import annotations

import contextlib

import torch

from ditto.ops.gpt_attention import TENSOR_INPUTS
from ditto.ops.rope import apply_rope

OP = torch.ops.ditto.gpt_attention.default
QKV, COS_SIN = TENSOR_INPUTS.index("qkv"), TENSOR_INPUTS.index("rotary_cos_sin")
REQUEST_TYPES, CONTEXT_LENGTHS = TENSOR_INPUTS.index("host_request_types"), TENSOR_INPUTS.index("host_context_lengths")


def wrong_rope_base(*args, **params):
    args = list(args)
    table = args[COS_SIN]
    half = params["rotary_embedding_dim"] // 2
    inv_freq = 1.0 / 10000.0 ** (torch.arange(half, dtype=torch.float64) * 2 / (2 * half))
    angles = torch.arange(table.shape[0], dtype=torch.float64)[:, None] * inv_freq[None]
    args[COS_SIN] = torch.cat([angles.cos(), angles.sin()], dim=-1).to(table.dtype).to(table.device)
    return OP(*args, **params)


def swapped_kv(*args, **params):
    args = list(args)
    h, kv, d = params["num_heads"], params["num_kv_heads"], params["head_size"]
    q, k, v = args[QKV].split([h * d, kv * d, kv * d], dim=-1)
    args[QKV] = torch.cat([q, v, k], dim=-1)
    return OP(*args, **params)


def wrong_gqa_head_map(*args, **params):
    args = list(args)
    h, kv, d = params["num_heads"], params["num_kv_heads"], params["head_size"]
    group = h // kv
    # the op lets query slot i read KV head i // group; slot inv[j] holds query head j, so head j
    # reads KV head inv[j] // group = j % kv
    inv = torch.tensor([(j % kv) * group + j // kv for j in range(h)])
    order = torch.argsort(inv)  # slot i holds query head order[i]
    qkv = args[QKV]
    q, rest = qkv[:, : h * d].reshape(-1, h, d), qkv[:, h * d :]
    args[QKV] = torch.cat([q[:, order.to(q.device)].reshape(-1, h * d), rest], dim=-1)
    out = OP(*args, **params).reshape(-1, h, d)
    return out[:, inv.to(out.device)].reshape(-1, h * d)


def mask_off_by_one(*args, **params):
    """The real op (it fills the KV cache), then context requests redone with `key <= query + 1`."""
    out = OP(*args, **params).clone()
    h, kv, d = params["num_heads"], params["num_kv_heads"], params["head_size"]
    qkv = args[QKV]
    start = 0
    for b, request_type in enumerate(args[REQUEST_TYPES].tolist()):
        n = int(args[CONTEXT_LENGTHS][b]) if request_type == 0 else 1
        if request_type == 0:
            rows = qkv[start : start + n]
            q = rows[:, : h * d].reshape(n, h, d).float()
            k = rows[:, h * d : (h + kv) * d].reshape(n, kv, d).float()
            v = rows[:, (h + kv) * d :].reshape(n, kv, d).float()
            if params["position_embedding_type"].startswith("rope"):
                cos_sin = args[COS_SIN][:n].float()
                q = apply_rope(q, cos_sin, params["rotary_embedding_dim"], params["position_embedding_type"])
                k = apply_rope(k, cos_sin, params["rotary_embedding_dim"], params["position_embedding_type"])
            k, v = k.repeat_interleave(h // kv, dim=1), v.repeat_interleave(h // kv, dim=1)
            scores = torch.einsum("nhd,thd->hnt", q, k) / (d**0.5 * params["q_scaling"])
            pos = torch.arange(n, device=qkv.device)
            scores = scores.masked_fill(~(pos[None, :] <= pos[:, None] + 1)[None], float("-inf"))
            attended = torch.einsum("hnt,thd->nhd", scores.softmax(-1), v)
            out[start : start + n] = attended.reshape(n, h * d).to(out.dtype)
        start += n
    return out


BUGS = {f.__name__: f for f in (wrong_rope_base, swapped_kv, wrong_gqa_head_map, mask_off_by_one)}


@contextlib.contextmanager
def planted(program, bug: str):
    """`program` (a loaded TrtllmProgram) with `bug` in every attention, for the duration of the block."""
    gm = program.graph_module
    nodes = [n for n in gm.graph.nodes if n.op == "call_function" and n.target == OP]
    assert nodes, "no gpt_attention node to plant a bug in"
    for node in nodes:
        node.target = BUGS[bug]
    gm.recompile()
    try:
        yield program
    finally:
        for node in nodes:
            node.target = OP
        gm.recompile()
