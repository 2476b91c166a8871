"""Evaluate part of a graph on real values, on demand.

Passes use this to recognise patterns by what they compute rather than by how a given
transformers version spells them: e.g. the RoPE subgraph between a projection and the
attention is run on probe inputs to read off its rotary dimension, style and cos/sin table.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.fx import Node

from ditto.errors import DittoError
from ditto.graph.nodes import source_line


def evaluate(
    targets: list[Node],
    known: dict[Node, object],
    load_attr: Callable[[str], torch.Tensor],
) -> list[object]:
    """Values of `targets`, computing only their ancestors; `known` overrides any node."""
    env: dict[Node, object] = dict(known)

    def value(node: Node):
        if node in env:
            return env[node]
        stack = [node]
        while stack:
            current = stack[-1]
            pending = [n for n in current.all_input_nodes if n not in env]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if current in env:
                continue
            env[current] = _run(current, env, load_attr)
        return env[node]

    return [value(t) for t in targets]


def _run(node: Node, env: dict, load_attr):
    if node.op == "get_attr":
        return load_attr(node.target)
    if node.op == "placeholder":
        raise ValueError(f"placeholder {node.name} has no value; pass it in `known`")
    if node.op != "call_function":
        raise ValueError(f"cannot evaluate {node.op} node {node.name}")
    args = torch.fx.node.map_arg(node.args, lambda n: env[n])
    kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
    try:
        return node.target(*args, **kwargs)
    except Exception as e:  # name the model's construct, not only torch's complaint
        raise DittoError(
            f"computing node {node.name} ({node.target}) from {source_line(node)} on probe values failed: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
