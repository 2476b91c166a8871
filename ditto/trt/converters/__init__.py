"""Converters from FX nodes (ATen ops and ditto's ops) to TensorRT layers.

One small function per target, registered with `@converter(target, ..., supports=check)`: it
receives the `ConversionContext` and the node's arguments with FX nodes already replaced by
their TensorRT values (ITensor, a list of them, or an int64 [1] shape tensor for a symbolic
size), and returns the node's value. The optional `supports(node) -> reason | None` refuses a
call the converter does not handle (an unusual keyword, a dtype TensorRT lacks) before any layer
is added. Converters never import TensorRT: `ctx.trt` is the module.

The implementations are grouped by kind (elementwise, reduce, matmul, shuffle, slice,
creation, symbolic); adding an op is one decorated function in the right module, or a new
module in this folder: every module here is imported (`ditto.registry.import_all`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.fx import Node

from ditto.errors import DittoError
from ditto.graph.nodes import source_line
from ditto.registry import add_unique, import_all

# target -> fn(ctx, *args, **kwargs); target -> supports(node) -> None or the reason it is refused
CONVERTERS: dict = {}
CHECKS: dict = {}

# keyword arguments that only say where or how a result lives in torch; no converter reads them
_PLACEMENT_KWARGS = ("memory_format", "layout", "device", "pin_memory", "non_blocking")


def converter(*targets, supports: Callable[[Node], str | None] | None = None):
    def wrap(fn):
        for target in targets:
            add_unique(CONVERTERS, target, fn, f"a converter for {_target_name(target)}")
            if supports is not None:
                CHECKS[target] = supports
        return fn

    return wrap


def convert_node(ctx, node: Node):
    """The TensorRT value of `node`, from its registered converter."""
    fn = CONVERTERS.get(node.target)
    reason = None if fn is None else (CHECKS[node.target](node) if node.target in CHECKS else None)
    if fn is None or reason:
        detail = f": {reason}" if reason else ""
        raise DittoError(
            f"no converter for node {node.name} (target {_target_name(node.target)}{detail}) from {source_line(node)}; "
            "add or extend one in ditto/trt/converters/ with @converter(target)"
        )
    args = torch.fx.node.map_arg(node.args, lambda n: ctx.values[n])
    kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: ctx.values[n])
    kwargs = {k: v for k, v in kwargs.items() if k not in _PLACEMENT_KWARGS}
    return fn(ctx, *args, **kwargs)


def _target_name(target) -> str:
    return str(target) if isinstance(target, torch._ops.OpOverload) else getattr(target, "__name__", str(target))


import_all(__name__)  # every module of this folder registers its converters
