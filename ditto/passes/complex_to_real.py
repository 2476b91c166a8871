"""Rewrite complex arithmetic (Llama 4's complex RoPE) into real tensors: TensorRT has no
complex type.

A complex tensor of shape S becomes a real tensor of shape S + [2] (real, imaginary), the
layout `view_as_real` gives:

before: f = polar(ones, angles);  c = view_as_complex(reshape(q, [.., d/2, 2]))
        o = flatten(view_as_real(c * unsqueeze(f, 2)), 3)
after:  f = stack([ones * cos(angles), ones * sin(angles)], -1);  c = reshape(q, [.., d/2, 2])
        o = flatten(stack([c.re f.re - c.im f.im, c.re f.im + c.im f.re], -1), 3)

Handled: polar, view_as_complex, view_as_real, mul (complex by complex or by a real number),
unsqueeze, slice, select, view/reshape/expand, casts between complex types, clone (and export's
dtype assertions, dropped). Any other op on a complex value is refused, naming the node and its model source line.
"""

from __future__ import annotations

import torch
from torch.fx import Node

from ditto.errors import DittoError
from ditto.graph.insert import insert_op
from ditto.graph.nodes import source_line
from ditto.passes.manager import PassContext, register_pass

aten = torch.ops.aten
_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64, torch.complex32: torch.float16}
_CASTS = (aten.to.dtype_layout, aten.to.dtype, aten._to_copy.default)


def _is_complex(node) -> bool:
    val = node.meta.get("val") if isinstance(node, Node) else None
    return isinstance(val, torch.Tensor) and val.dtype.is_complex


# after functionalize: it rewrites values, so in-place ops on complex tensors must be out of place first
@register_pass("complex_to_real", after=("functionalize_inplace",))
def complex_to_real(ctx: PassContext) -> int:
    return complex_to_real_graph(ctx.graph)


def complex_to_real_graph(graph) -> int:
    """Rewrite `graph`'s complex values as real [.., 2] tensors; the number of nodes rewritten."""
    nodes = [n for n in graph.nodes if n.op == "call_function" and (_is_complex(n) or any(_is_complex(a) for a in n.all_input_nodes))]
    if not nodes:
        return 0
    real: dict[Node, Node] = {}  # complex node -> its real [.., 2] replacement
    for node in nodes:
        with graph.inserting_before(node):
            replacement = _lower(graph, node, real)
        if _is_complex(node):
            real[node] = replacement
        elif replacement is not None:
            node.replace_all_uses_with(replacement)
    for node in reversed(nodes):
        if not node.users:
            graph.erase_node(node)
    leftover = [n for n in nodes if n in graph.nodes and n.users]
    if leftover:
        _fail(leftover[0], "its complex value is still read")
    return len(nodes)


def _lower(graph, node: Node, real: dict) -> Node:
    target, args = node.target, node.args

    def part(x, i):
        return insert_op(graph, aten.select.int, (x, -1, i))

    def stack(a, b):
        return insert_op(graph, aten.stack.default, ([a, b], -1))

    if target == aten._assert_tensor_metadata.default:
        return None  # export's dtype check of the complex value: nothing to compute
    if target == aten.polar.default:
        magnitude, angle = args
        return stack(insert_op(graph, aten.mul.Tensor, (magnitude, insert_op(graph, aten.cos.default, (angle,)))),
                     insert_op(graph, aten.mul.Tensor, (magnitude, insert_op(graph, aten.sin.default, (angle,)))))
    if target == aten.view_as_complex.default:
        return args[0]
    if target == aten.view_as_real.default:
        return real[args[0]]
    if target == aten.mul.Tensor:
        a, b = args
        if _is_complex(a) and _is_complex(b):
            a, b = real[a], real[b]
            ar, ai, br, bi = part(a, 0), part(a, 1), part(b, 0), part(b, 1)
            re = insert_op(graph, aten.sub.Tensor, (insert_op(graph, aten.mul.Tensor, (ar, br)), insert_op(graph, aten.mul.Tensor, (ai, bi))))
            im = insert_op(graph, aten.add.Tensor, (insert_op(graph, aten.mul.Tensor, (ar, bi)), insert_op(graph, aten.mul.Tensor, (ai, br))))
            return stack(re, im)
        value, factor = (a, b) if _is_complex(a) else (b, a)
        if isinstance(factor, (int, float)) and not isinstance(factor, bool):
            return insert_op(graph, aten.mul.Tensor, (real[value], factor))
        _fail(node, "a complex value multiplied by a real tensor")
    if target == aten.unsqueeze.default:
        x, dim = args
        rank = len(node.meta["val"].shape)
        return insert_op(graph, aten.unsqueeze.default, (real[x], dim % rank))
    if target in (aten.slice.Tensor, aten.select.int) and _is_complex(args[0]):
        rank = len(args[0].meta["val"].shape)
        dim = (args[1] if len(args) > 1 else 0) % rank  # the complex dim keeps its index; [2] is last
        return insert_op(graph, target, (real[args[0]], dim, *args[2:]), dict(node.kwargs))
    if target in (aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.expand.default):
        return insert_op(graph, target, (real[args[0]], [*args[1], 2]))
    if target in _CASTS and _is_complex(args[0]):
        dtype = node.kwargs.get("dtype", args[1] if len(args) > 1 and isinstance(args[1], torch.dtype) else None)
        if dtype is None or dtype.is_complex:
            return insert_op(graph, aten._to_copy.default, (real[args[0]],), {"dtype": _REAL[dtype or node.meta["val"].dtype]})
    if target in (aten.clone.default, aten.alias.default) and _is_complex(args[0]):
        return real[args[0]]
    _fail(node, f"complex values through {target}")


def _fail(node: Node, problem: str):
    raise DittoError(
        f"cannot lower complex arithmetic at node {node.name} ({source_line(node)}): {problem}; "
        "ditto rewrites polar/view_as_complex/view_as_real and complex products into real tensors"
    )
