"""Create FX nodes whose recorded fake value is computed, so later passes can read shapes."""

from __future__ import annotations

import torch
from torch.fx import Graph, Node


def fake_mode_of(graph: Graph):
    for node in graph.nodes:
        val = node.meta.get("val")
        mode = getattr(val, "fake_mode", None)
        if mode is not None:
            return mode
    raise ValueError("graph has no fake values; was it produced by torch.export?")


def insert_op(graph: Graph, target, args: tuple, kwargs: dict | None = None, name: str | None = None) -> Node:
    """Insert `target(*args, **kwargs)` at the graph's insertion point, with its fake value."""
    kwargs = kwargs or {}
    node = graph.call_function(target, args, kwargs)
    if name:
        node.name = graph._graph_namespace.create_name(name, None)
    node.meta["val"] = fake_value(graph, target, args, kwargs)
    return node


def fake_value(graph: Graph, target, args: tuple, kwargs: dict):
    """`target` run on the fake values of its inputs. A fake kernel that reads a dynamic size as
    an int fixes it for the whole graph (torch specialises the symbol to the example's value,
    and every later shape comes out static): refused, naming the op."""
    fake_args = torch.fx.node.map_arg(args, lambda n: n.meta["val"])
    fake_kwargs = torch.fx.node.map_arg(kwargs, lambda n: n.meta["val"])
    mode = fake_mode_of(graph)
    fixed = _fixed_sizes(mode.shape_env)
    with mode:
        value = (_SHAPE_RULES.get(target) or target)(*fake_args, **fake_kwargs)
    newly_fixed = _fixed_sizes(mode.shape_env) - fixed
    if newly_fixed:
        from ditto.errors import DittoError

        name = getattr(target, "__name__", str(target))
        sizes = ", ".join(f"{s} = {mode.shape_env.replacements[s]}" for s in sorted(newly_fixed, key=str))
        raise DittoError(f"computing the shape of {name} fixed the dynamic size {sizes} (torch "
                         f"{torch.__version__}'s fake kernel reads it as an int); give {name} a shape rule in "
                         "ditto.graph.insert._SHAPE_RULES")
    return value


def _fixed_sizes(shape_env) -> set:
    """The size symbols `shape_env` has replaced by a number (specialised)."""
    if shape_env is None:
        return set()
    return {s for s, r in shape_env.replacements.items() if getattr(r, "is_number", False)}


def _sdpa_shape(q, k, v, *args, **kwargs):
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


# Composite ops whose decomposition some torch versions (2.11) cannot run on symbolic shapes
# (linear; SDPA with a mask reads the token count as an int there)
_SHAPE_RULES = {
    torch.ops.aten.linear.default: lambda x, w, b=None: x.new_empty((*x.shape[:-1], w.shape[0])),
    torch.ops.aten.scaled_dot_product_attention.default: _sdpa_shape,
}


def fake_empty(graph: Graph, shape, dtype: torch.dtype) -> torch.Tensor:
    """A fake tensor on the graph's device (export ran on meta) for a new node's value."""
    with fake_mode_of(graph):
        return torch.empty(shape, dtype=dtype, device="meta")
