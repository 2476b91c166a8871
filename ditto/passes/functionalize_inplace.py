"""Replace in-place ATen ops by their out-of-place forms, so every later stage sees values.

torch.export's default IR keeps in-place calls on intermediates (`mul_`, `add_`, `masked_fill_`,
...). A TensorRT network has no mutation, so each becomes the out-of-place op, and every
later reader of the mutated tensor reads the new value instead:

before: y = clone(x);  m = mul_(y, 2);  a = add(y, 1)        (a reads the mutated y)
after:  y = clone(x);  m = mul(y, 2);   a = add(m, 1)

An in-place op on a slice (or a chain of static slices and selects) of a tensor the graph
owns writes into its base; it becomes the out-of-place op on the slice, put back into the
base (by concatenation for a step-1 slice, else slice_scatter / select_scatter); later
readers of the base read the new base, later readers of a view of it the view taken again
from the new base (DeepSeek-V2/V3 build their keys so:
`k = kv.new_empty(...); k[..., :n].copy_(k_nope); k[..., n:].copy_(k_rot)`):

before: b = new_empty(..); s = slice(b, -1, 0, n); c = copy_(s, x); t = slice(b, -1, n, N); ...
after:  b2 = cat([x', slice(b, -1, n, N)], -1); t = slice(b2, -1, n, N)   (x' = copy(s, x))

Slices of a concatenation that fall on its pieces are read from the pieces, so a base that
is entirely overwritten (new_empty) drops out of the graph. Any other view may be mutated
when nothing reads its base (or another view of it) afterwards: the base's change cannot be
seen. Otherwise a mutated view (a transpose, a slice of a dynamic size), a graph input or a
weight is refused, naming the model source line.
"""

from __future__ import annotations

import torch
from torch.fx import Graph, Node

from ditto.errors import DittoError
from ditto.graph.insert import insert_op
from ditto.graph.nodes import fake, source_line
from ditto.passes.manager import PassContext, register_pass

aten = torch.ops.aten


@register_pass("functionalize_inplace")
def functionalize_inplace(ctx: PassContext) -> int:
    return functionalize_graph(ctx.graph)


def functionalize_graph(graph: Graph) -> int:
    """Rewrite every in-place op of `graph` out of place; the number rewritten."""
    count = 0
    sliced = False
    for node in list(graph.nodes):
        if not is_inplace(node):
            continue
        outplace = out_of_place(node.target)
        if outplace is None:
            _fail(node, f"in-place {node.target} has no out-of-place form")
        mutated = node.args[0]
        chain = _slice_chain(mutated)
        if chain is not None:
            _write_through_slices(graph, node, outplace, chain)
            count += 1
            sliced = True
            continue
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
    if sliced:
        _erase_unused(graph)
    return count


def _slice_chain(mutated) -> list[Node] | None:
    """[base, view, view, ...] when `mutated` is a chain of static slices (any step) and selects
    of a tensor the graph computes (not an input, a weight or another kind of view); else None."""
    chain = []
    node = mutated
    while isinstance(node, Node) and node.op == "call_function" and node.target in (aten.slice.Tensor, aten.select.int):
        base, dim = node.args[0], node.args[1]
        value = fake(base)
        if value is None or not isinstance(dim, int) or not isinstance(value.shape[dim % value.dim()], int):
            return None  # the written region must be static
        if node.target == aten.select.int and not isinstance(node.args[2], int):
            return None
        if node.target == aten.slice.Tensor and any(not isinstance(v, (int, type(None))) for v in node.args[2:5]):
            return None
        chain.append(node)
        node = base
    if not chain or not isinstance(node, Node) or node.op in ("placeholder", "get_attr") or _is_view(node):
        return None
    return [node] + chain[::-1]


def _bounds(view: Node) -> tuple[int, int, int, int]:
    """(dim, start, end, step) of a static slice node, normalised to the base's size."""
    args = list(view.args) + [None] * (5 - len(view.args))
    base, dim, start, end, step = args[:5]
    shape = fake(base).shape
    dim = dim % len(shape)
    size = int(shape[dim])
    start = 0 if start is None else (start + size if start < 0 else start)
    end = size if end is None else (end + size if end < 0 else end)
    return dim, max(0, min(start, size)), max(0, min(end, size)), 1 if step is None else step


def _slice_of(graph: Graph, base: Node, dim: int, start: int, end: int) -> list[Node]:
    """Nodes whose concatenation along `dim` is base[start:end] there: the pieces of a
    concatenation when the range falls on them, else one new slice node."""
    if base.target == aten.cat.default and (base.args[1] if len(base.args) > 1 else 0) % fake(base).dim() == dim:
        pieces, offset, aligned = [], 0, True
        for piece in base.args[0]:
            size = int(fake(piece).shape[dim])
            if start <= offset and offset + size <= end:
                pieces.append(piece)
            elif offset < end and offset + size > start:
                aligned = False
            offset += size
        if aligned and pieces:
            return pieces
    return [insert_op(graph, aten.slice.Tensor, (base, dim, start, end))]


def _write_through_slices(graph: Graph, node: Node, outplace, chain: list[Node]) -> None:
    """`node` (in place on chain[-1], a chain of slices/selects of chain[0]) rewritten out of
    place and put back into the base (a concatenation for a step-1 slice, else slice_scatter /
    select_scatter); later readers of the base read the new base, later readers of any view
    of the base read that view taken again from the new base."""
    base = chain[0]
    order = {n: i for i, n in enumerate(graph.nodes)}
    with graph.inserting_before(node):
        src = node.args[1] if outplace == aten.copy.default and len(node.args) > 1 else None
        same = src is not None and fake(src) is not None and fake(src).shape == fake(node.args[0]).shape
        if same and fake(src).dtype == fake(node.args[0]).dtype:
            written = src  # copy_ of a same-shaped value: the slice holds that value now
        else:
            written = insert_op(graph, outplace, node.args, node.kwargs)
            written.meta = {**node.meta, "val": written.meta["val"]}
        value = written
        for parent, view in zip(reversed(chain[:-1]), reversed(chain[1:])):
            value = _put_back(graph, parent, value, view)
        new_base = value
        # every view of the base (transitively) that is read after the write, taken again from the new base
        later = {}
        for alias in _aliases(base):
            readers = [u for u in alias.users if u is not node and order.get(u, -1) > order[node]]
            if alias is base or not readers:
                continue
            later[alias] = (written if alias is chain[-1] else _retake(graph, alias, base, new_base), readers)
    for alias, (new, readers) in later.items():
        for user in readers:
            user.replace_input_with(alias, new)
    for user in list(base.users):
        if user is not node and order.get(user, -1) > order[node]:
            user.replace_input_with(base, new_base)
    node.replace_all_uses_with(written)  # the op returns the (now written) view
    graph.erase_node(node)


def _put_back(graph: Graph, parent: Node, value: Node, view: Node) -> Node:
    """`parent` with the region `view` takes from it replaced by `value`."""
    if view.target == aten.select.int:
        return insert_op(graph, aten.select_scatter.default, (parent, value, view.args[1], view.args[2]))
    dim, start, end, step = _bounds(view)
    if step != 1:
        return insert_op(graph, aten.slice_scatter.default, (parent, value, dim, start, end, step))
    size = int(fake(parent).shape[dim])
    pieces = (_slice_of(graph, parent, dim, 0, start) if start > 0 else []) + [value]
    pieces += _slice_of(graph, parent, dim, end, size) if end < size else []
    return insert_op(graph, aten.cat.default, (pieces, dim)) if len(pieces) > 1 else pieces[0]


def _aliases(base: Node) -> list[Node]:
    """`base` and every view of it, views of views included, in graph order."""
    found, pending = [], [base]
    while pending:
        node = pending.pop()
        if node in found:
            continue
        found.append(node)
        pending.extend(u for u in node.users if _is_view(u) and u.args and u.args[0] is node)
    return found


def _retake(graph: Graph, alias: Node, base: Node, new_base: Node) -> Node:
    """The view chain from `base` to `alias` applied again to `new_base`."""
    path = []
    node = alias
    while node is not base:
        path.append(node)
        node = node.args[0]
    value = new_base
    for view in reversed(path):
        value = insert_op(graph, view.target, (value, *view.args[1:]), dict(view.kwargs))
    return value


_PURE = (aten.slice.Tensor, aten.cat.default, aten.copy.default, aten.new_empty.default, aten.empty.memory_format)


def _erase_unused(graph: Graph) -> None:
    """Erase the slices, concatenations and overwritten bases the slice writes left unread."""
    changed = True
    while changed:
        changed = False
        for n in reversed(list(graph.nodes)):
            if n.op == "call_function" and n.target in _PURE and not n.users:
                graph.erase_node(n)
                changed = True


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
    if _is_view(mutated) and not _base_unobserved(node, mutated):
        _fail(node, f"it mutates {mutated.name}, a view of {mutated.args[0]} (its base would change too)")
    order = {n: i for i, n in enumerate(node.graph.nodes)}
    for user in mutated.users:
        if _is_view(user) and order[user] < order[node] and any(order[u] > order[node] for u in user.users):
            _fail(node, f"{user.name}, a view of the mutated {mutated.name}, is read after the mutation")


def _base_unobserved(node: Node, mutated: Node) -> bool:
    """True when nothing reads the mutated view's base, or any other view of that base, after
    `node`: the base's change cannot be seen, so the view may be rewritten like an owned tensor
    (Gemma 3n: `p = matmul(..).permute(..); p += x`). The base must be computed by the graph."""
    root = mutated
    while _is_view(root):
        root = root.args[0]
        if not isinstance(root, Node):
            return False
    if root.op in ("placeholder", "get_attr"):
        return False
    order = {n: i for i, n in enumerate(node.graph.nodes)}
    aliases, pending = set(), [root]
    while pending:
        alias = pending.pop()
        if alias in aliases:
            continue
        aliases.add(alias)
        pending.extend(u for u in alias.users if _is_view(u) and u.args[0] is alias)
    for alias in aliases - {mutated}:
        for user in alias.users:
            if user is not node and order[user] > order[node] and user is not mutated:
                return False
    return True


def _fail(node: Node, problem: str):
    raise DittoError(
        f"cannot remove the in-place op {node.name} ({source_line(node)}): {problem}; "
        "write the model's forward without in-place updates there"
    )
