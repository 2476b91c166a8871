"""Fail fast when the rewritten graph still holds something no pass understood.

An attention the recogniser missed would silently attend across the sequences of a packed
batch, so any leftover SDPA/softmax, or any node still reading HF's [1, num_tokens] position
row in a way other than an embedding lookup, is an error naming the nodes. So is any value
left with two token axes ([.., tokens, tokens]: scores or a mask), which only attention
computes: a term beside the recognised attention that reads its scores (the logsumexp of an
attention sink, a bias) would see only the current step's tokens, not the KV cache. A top-k
left by the MoE pass is expert dispatch it did not recognise, unless it is dense routing.
"""

from __future__ import annotations

import operator

import torch

from ditto.errors import DittoError
from ditto.graph.nodes import computed_from, is_call, source_line
from ditto.passes.manager import PassContext

aten = torch.ops.aten
_LEFTOVER = (aten.scaled_dot_product_attention.default, aten._softmax.default, aten.softmax.int)


def check_supported(ctx: PassContext) -> None:
    routing = [n for n in ctx.graph.nodes if is_call(n, aten.topk.default) and not _dense_routing(n)]
    over_tokens = [n for n in routing if _over_tokens(n)]
    if over_tokens:
        raise DittoError(
            f"the top-k {over_tokens[0].name} at {source_line(over_tokens[0])} picks among the tokens of the sequence "
            "(sparse attention: an indexer selects the keys each query attends to, DeepSeek-V3.2 style); sparse "
            "attention is not supported yet"
        )
    for topk in routing:
        attention = _routed_query(topk, ctx)
        if attention is not None:
            raise DittoError(
                f"the query of attention {attention.name} is computed by projections "
                f"chosen per token by the top-k {topk.name} at {source_line(topk)}, its keys are not (a token-routed "
                "attention: mixture of attention heads, JetMoE's MoA); TensorRT-LLM's attention has no routed "
                "query/output projections, so ditto does not convert it"
            )
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
    mixing = {n for n in ctx.graph.nodes if _token_axes(n, ctx) >= 2}
    if mixing:
        # where pairwise values are reduced back to per-token ones: the construct to name
        exits = [u for n in ctx.graph.nodes if n in mixing for u in n.users if u not in mixing]
        lines = "\n".join(f"  {n.name}: {n.target} at {source_line(n)}" for n in list(dict.fromkeys(exits))[:10])
        raise DittoError(
            f"{len(mixing)} node(s) outside the recognised attention compute over pairs of tokens (attention scores "
            f"or masks read by something else, e.g. an attention sink or a score bias); this architecture is not "
            f"supported yet; reduced at:\n{lines}"
        )
    if not ctx.attention:
        raise DittoError("no attention layer was recognised; ditto builds decoder-only transformer LMs")


def _over_tokens(topk) -> bool:
    """A top-k along an axis whose size is the (dynamic) token count: a choice among tokens,
    not among a fixed number of experts."""
    val = topk.args[0].meta.get("val") if isinstance(topk.args[0], torch.fx.Node) else None
    if not isinstance(val, torch.Tensor) or val.dim() == 0:
        return False
    dim = topk.args[2] if len(topk.args) > 2 else topk.kwargs.get("dim", -1)
    return not isinstance(val.shape[dim], int)


def _dense_routing(topk) -> bool:
    """A top-k whose indices only scatter values back into a dense tensor (Llama 4's router:
    every expert is computed, the unchosen ones weighted by the scattered fill) is plain
    arithmetic that converts op by op; any other use of the indices is expert dispatch."""
    ids = [u for u in topk.users if u.args[1] == 1]
    return all(is_call(u, operator.getitem) for u in topk.users) and all(
        is_call(user, aten.scatter.src) and user.args[2] is i and user.args[0] is not i and user.args[3] is not i
        for i in ids
        for user in i.users
    )


def _token_axes(node, ctx: PassContext) -> int:
    """How many axes of `node`'s value have the packed token count as their size."""
    val = node.meta.get("val")
    input_ids = ctx.engine_inputs.get("input_ids")
    if not isinstance(val, torch.Tensor) or input_ids is None:
        return 0
    tokens = input_ids.meta["val"].shape[0]
    if isinstance(tokens, int):
        return 0
    return sum(1 for d in val.shape if not isinstance(d, int) and d == tokens)


def _routed_query(topk, ctx):
    """The recognised attention whose query reads `topk` while its keys do not, or None: the
    query projection is routed per token (mixture of attention heads). A routed MLP before an
    attention feeds its query and keys alike (through the residual stream), so it is not one."""
    for node in ctx.graph.nodes:
        if not is_call(node, torch.ops.ditto.gpt_attention.default) or node < topk:
            continue
        qkv = node.args[0]
        while is_call(qkv, aten.view.default, aten.reshape.default, aten._unsafe_view.default):
            qkv = qkv.args[0]
        if not is_call(qkv, aten.cat.default) or len(qkv.args[0]) < 2:
            continue
        query, *others = qkv.args[0]
        if _reads(query, topk) and not any(_reads(other, topk) for other in others):
            return node
    return None


def _reads(node, target) -> bool:
    """Whether `node` is computed from `target`."""
    return computed_from(node, target)
