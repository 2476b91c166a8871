"""Fail fast when the rewritten graph still holds something no pass understood.

An attention the recogniser missed would silently attend across the sequences of a packed
batch, so any leftover SDPA/softmax, or any node still reading HF's [1, num_tokens] position
row in a way other than an embedding lookup, is an error naming the nodes.
"""

from __future__ import annotations

import torch

from ditto.errors import DittoError
from ditto.graph.nodes import is_call, source_line
from ditto.passes.manager import PassContext

aten = torch.ops.aten
_LEFTOVER = (aten.scaled_dot_product_attention.default, aten._softmax.default, aten.softmax.int)


def check_supported(ctx: PassContext) -> None:
    routing = [n for n in ctx.graph.nodes if is_call(n, aten.topk.default)]
    if routing:
        raise DittoError(
            f"no pattern matched the top-k {routing[0].name} at {source_line(routing[0])}; ditto converts mixture-of-"
            "experts whose experts transformers computes with its batched implementation (`@use_experts_implementation`"
            " in transformers 5), not per-expert loops"
        )
    left = [n for n in ctx.graph.nodes if is_call(n, *_LEFTOVER)]
    if left:
        lines = "\n".join(f"  {n.name}: {n.target} at {source_line(n)}" for n in left[:10])
        raise DittoError(
            f"no pattern matched {len(left)} node(s) that mix tokens across the sequence; this architecture "
            f"is not supported yet:\n{lines}"
        )
    if not ctx.attention:
        raise DittoError("no attention layer was recognised; ditto builds decoder-only transformer LMs")
