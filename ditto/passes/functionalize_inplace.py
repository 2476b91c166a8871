"""Replace in-place ATen ops by their out-of-place forms, so every later stage sees values.

torch.export's default IR keeps in-place calls on intermediates (`mul_`, `add_`, `masked_fill_`,
...). A TensorRT network has no mutation, so each becomes the out-of-place op, and every
later reader of the mutated tensor reads the new value instead:

before: y = clone(x);  m = mul_(y, 2);  a = add(y, 1)        (a reads the mutated y)
after:  y = clone(x);  m = mul(y, 2);   a = add(m, 1)

Only a tensor the graph owns outright may be rewritten: mutating a view (which would change
its base), a graph input or a weight is refused, naming the model source line.
"""

from __future__ import annotations

import torch
from torch.fx import Graph, Node

from ditto.errors import DittoError
from ditto.graph.nodes import source_line
from ditto.passes.manager import PassContext, register_pass

aten = torch.ops.aten


@register_pass("functionalize_inplace")
def functionalize_inplace(ctx: PassContext) -> int:
    return functionalize_graph(ctx.graph)


def functionalize_graph(graph: Graph) -> int:
    """Rewrite every in-place op of `graph` out of place; the number rewritten."""
    count = 0
    for node in list(graph.nodes):
        if not is_inplace(node):
            continue
        outplace = out_of_place(node.target)
        if outplace is None:
            _fail(node, f"in-place {node.target} has no out-of-place form")
        mutated = node.args[0]
        _check_owned(node, mutated)
        order = {n: i for i, n in enumerate(graph.nodes)}
        with graph.inserting_before(node):
            new = graph.call_function(outplace, node.args, node.kwargs)
        new.meta = dict(node.meta)
        for user in list(mutated.users):
            if user not in (node, new) and order[user] > order[node]:
                user.replace_input_with(mutated, new)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        count += 1
    return count


def is_inplace(node: Node) -> bool:
    """A call of an ATen op that writes its first argument (`mul_`, `index_put_`, ...)."""
    target = node.target
    if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
        return False
    schema = target._schema
    if not schema.name.endswith("_") or not schema.arguments:
        return False
    alias = schema.arguments[0].alias_info
    return alias is not None and alias.is_write and not any(a.kwarg_only and a.name == "out" for a in schema.arguments)


def out_of_place(target: torch._ops.OpOverload):
    """aten.mul_.Tensor -> aten.mul.Tensor (None when the op has no such form)."""
    name = target._schema.name.split("::")[-1][:-1]
    packet = getattr(aten, name, None)
    overload = target._overloadname
    return getattr(packet, overload, None) if packet is not None else None


def _is_view(node: Node) -> bool:
    target = node.target
    if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
        return False
    returns = target._schema.returns
    return bool(returns) and returns[0].alias_info is not None and not returns[0].alias_info.is_write


def _check_owned(node: Node, mutated) -> None:
    if not isinstance(mutated, Node):
        _fail(node, "the mutated value is not a tensor of the graph")
    if mutated.op in ("placeholder", "get_attr"):
        _fail(node, f"it mutates the graph input or weight {mutated.name}")
    if _is_view(mutated):
        _fail(node, f"it mutates {mutated.name}, a view of {mutated.args[0]} (its base would change too)")
    order = {n: i for i, n in enumerate(node.graph.nodes)}
    for user in mutated.users:
        if _is_view(user) and order[user] < order[node] and any(order[u] > order[node] for u in user.users):
            _fail(node, f"{user.name}, a view of the mutated {mutated.name}, is read after the mutation")


def _fail(node: Node, problem: str):
    raise DittoError(
        f"cannot remove the in-place op {node.name} ({source_line(node)}): {problem}; "
        "write the model's forward without in-place updates there"
    )
