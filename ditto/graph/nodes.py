"""Queries on FX nodes: fake values, shapes, users, ancestors."""

from __future__ import annotations

import torch
from torch.fx import Node


def fake(node) -> torch.Tensor | None:
    val = node.meta.get("val") if isinstance(node, Node) else None
    return val if isinstance(val, torch.Tensor) else None


def shape(node: Node) -> tuple:
    val = fake(node)
    if val is None:
        raise ValueError(f"node {node.name} has no tensor value recorded")
    return tuple(val.shape)


def is_static(dim) -> bool:
    return isinstance(dim, int)


def is_call(node, *targets) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and (not targets or node.target in targets)


def ancestors(node: Node) -> set[Node]:
    """`node` and every node it depends on."""
    seen = {node}
    stack = [node]
    while stack:
        for n in stack.pop().all_input_nodes:
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return seen


def descendants(nodes: list[Node]) -> set[Node]:
    """`nodes` and every node depending on them."""
    seen = set(nodes)
    stack = list(nodes)
    while stack:
        for n in stack.pop().users:
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return seen


def source_line(node: Node) -> str:
    """The last frame of the model source that produced `node`, for error messages."""
    trace = node.meta.get("stack_trace") or ""
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip().startswith("File")]
    return lines[-1] if lines else "(no source line recorded)"
