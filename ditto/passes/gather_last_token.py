"""Compute logits for the last token of each sequence only, in float32.

before: logits = lm_head(final_norm(h))                       [1, num_tokens, vocab]
after:  logits = to_float32(lm_head(index_select(view(final_norm(h), [-1, hidden]),
                                                0, last_token_ids - 1)))   [batch, vocab]

TensorRT-LLM's `last_token_ids` are cumulative token counts, so token `last - 1` ends each
sequence. The gather moves in front of the lm_head through row-wise ops (casts, scalar
arithmetic such as logit soft-capping, full slices).
"""

from __future__ import annotations

import torch
from torch.fx import Node

from ditto.errors import DittoError
from ditto.graph.insert import fake_value, insert_op
from ditto.graph.nodes import SLICE_END, fake, is_call
from ditto.passes.manager import PassContext, register_pass

aten = torch.ops.aten
_PROJECTIONS = (aten.linear.default, aten.matmul.default, aten.mm.default, aten.addmm.default)
_ROWWISE = (
    aten._to_copy.default,
    aten.to.dtype,
    aten.mul.Tensor,
    aten.div.Tensor,
    aten.tanh.default,
    aten.add.Tensor,
    aten.view.default,
    aten.reshape.default,
)


# requires engine_inputs: reads last_token_ids; after replace_moe: order only
@register_pass("gather_last_token", requires=("engine_inputs",), after=("replace_moe",))
def gather_last_token(ctx: PassContext) -> int:
    graph = ctx.graph
    output = graph.output_node()
    logits = _output_values(output)[0]
    if "gathered_last_token" in logits.meta:
        return 0
    head = logits
    while not is_call(head, *_PROJECTIONS):
        if not is_call(head, *_ROWWISE) or not isinstance(head.args[0], Node):
            raise DittoError(f"cannot find the LM head above the logits (stopped at {head.name}: {head.target})")
        head = head.args[0]
    hidden_arg = 1 if head.target == aten.addmm.default else 0
    hidden = head.args[hidden_arg]
    while is_call(hidden, aten.slice.Tensor) and hidden.args[2:] in ((0, None), (0, SLICE_END)):
        hidden = hidden.args[0]  # HF's hidden_states[:, slice(-0, None)]
    width = fake(hidden).shape[-1]
    last = ctx.engine_inputs["last_token_ids"]
    with graph.inserting_before(head):
        rows = insert_op(graph, aten.reshape.default, (hidden, [-1, width]))
        index = insert_op(graph, aten.sub.Tensor, (last, 1))
        picked = insert_op(graph, aten.index_select.default, (rows, 0, index))
    head.replace_input_with(head.args[hidden_arg], picked)
    _refresh_shapes(graph, head, logits)
    with graph.inserting_before(output):
        result = logits
        if fake(logits).dtype != torch.float32:
            result = insert_op(graph, aten._to_copy.default, (logits,), {"dtype": torch.float32})
        result = _flatten_to_rows(graph, result)
    result.meta["gathered_last_token"] = True
    result.name = "logits"
    output.args = ((result,),)
    graph.eliminate_dead_code()
    return 1


def _output_values(output: Node) -> list[Node]:
    values = output.args[0]
    if isinstance(values, Node):
        return [values]
    return list(values)


def _refresh_shapes(graph, start: Node, end: Node) -> None:
    """Recompute fake values from `start` to `end` after the gather changed the row count."""
    node = start
    while True:
        if is_call(node, aten.view.default, aten.reshape.default):
            node.args = (node.args[0], [-1, *list(node.args[1])[-1:]]) if len(node.args[1]) else node.args
        node.meta["val"] = fake_value(graph, node.target, node.args, node.kwargs)
        if node is end:
            return
        node = next(iter(node.users))


def _flatten_to_rows(graph, node: Node) -> Node:
    shape = fake(node).shape
    if len(shape) == 2:
        return node
    return insert_op(graph, aten.reshape.default, (node, [-1, int(shape[-1])]))
