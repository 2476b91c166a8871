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
    """`target` run on the fake values of its inputs."""
    fake_args = torch.fx.node.map_arg(args, lambda n: n.meta["val"])
    fake_kwargs = torch.fx.node.map_arg(kwargs, lambda n: n.meta["val"])
    with fake_mode_of(graph):
        if target in _SHAPE_RULES:
            return _SHAPE_RULES[target](*fake_args, **fake_kwargs)
        return target(*fake_args, **fake_kwargs)


# Composite ops whose decomposition some torch versions (2.11) cannot run on symbolic shapes
_SHAPE_RULES = {
    torch.ops.aten.linear.default: lambda x, w, b=None: x.new_empty((*x.shape[:-1], w.shape[0])),
}


def fake_empty(graph: Graph, shape, dtype: torch.dtype) -> torch.Tensor:
    """A fake tensor on the graph's device (export ran on meta) for a new node's value."""
    with fake_mode_of(graph):
        return torch.empty(shape, dtype=dtype, device="meta")
