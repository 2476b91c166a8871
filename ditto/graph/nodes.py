"""Queries on FX nodes: recorded fake values, targets, source lines."""

from __future__ import annotations

import torch
from torch.fx import Node

# `end` of a slice that runs to the end: export records x[a:] as slice(x, dim, a, 2**63 - 1)
SLICE_END = 9223372036854775807


def fake(node) -> torch.Tensor | None:
    val = node.meta.get("val") if isinstance(node, Node) else None
    return val if isinstance(val, torch.Tensor) else None


def is_call(node, *targets) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and (not targets or node.target in targets)


def source_line(node: Node) -> str:
    """The last frame of the model source that produced `node`, for error messages."""
    trace = node.meta.get("stack_trace") or ""
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip().startswith("File")]
    return lines[-1] if lines else "(no source line recorded)"


def ancestors(node: Node, limit: int | None = None):
    """`node` and every node it reads, transitively (depth first), looking at `limit` nodes at most."""
    seen, stack = {node}, [node]
    while stack and (limit is None or len(seen) <= limit):
        current = stack.pop()
        yield current
        for n in current.all_input_nodes:
            if n not in seen:
                seen.add(n)
                stack.append(n)


def computed_from(node, target: Node, limit: int | None = None) -> bool:
    """Whether `node` is computed from `target`; nodes before `target` in the graph cannot be, so
    the walk stops there (and after `limit` nodes)."""
    stack, seen = [node], set()
    while stack and (limit is None or len(seen) < limit):
        current = stack.pop()
        if current is target:
            return True
        if current in seen or not isinstance(current, Node) or current < target:
            continue
        seen.add(current)
        stack.extend(current.all_input_nodes)
    return False
