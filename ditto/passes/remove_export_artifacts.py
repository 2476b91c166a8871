"""Remove what export leaves that has no meaning for inference.

before: x -> _assert_tensor_metadata(x); y = dropout(x, p, train=False); z = contiguous(slice(y, 1, 0, END));
        w = to.device(z, device("meta"), float32); a = arange(n, device=meta)
after:  w = to.dtype(x, float32); a = arange(n)

Device arguments are dropped because export ran on the meta device; the runtime that
executes the graph places factory ops (`ditto.runtime.fx.place_on_device`).
"""

from __future__ import annotations

import torch

from ditto.graph.nodes import SLICE_END
from ditto.passes.manager import PassContext, register_pass

aten = torch.ops.aten

_CHECKS = {
    aten._assert_tensor_metadata.default,
    aten._assert_scalar.default,
    aten.sym_constrain_range_for_size.default,
    aten.sym_constrain_range.default,
}
_IDENTITY = {aten.contiguous.default, aten.clone.default, aten.alias.default, aten.detach.default, aten.lift_fresh_copy.default}


# after complex_to_real: order only (no data dependency), today's order
@register_pass("remove_export_artifacts", after=("complex_to_real",))
def remove_export_artifacts(ctx: PassContext) -> int:
    count = 0
    graph = ctx.graph
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target in _CHECKS and not node.users:
            graph.erase_node(node)
            count += 1
        elif node.target in _IDENTITY or (node.target == aten.dropout.default and node.args[2] is False):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            count += 1
        elif node.target == aten.slice.Tensor and _is_full_slice(node):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            count += 1
        elif node.target == aten.to.device:
            # to.device(x, device, dtype, ...) -> to.dtype(x, dtype)
            node.target = aten.to.dtype
            node.args = (node.args[0], node.args[2])
            count += 1
        elif isinstance(node.kwargs.get("device"), torch.device):
            node.kwargs = {k: v for k, v in node.kwargs.items() if k != "device"}
            count += 1
    return count


def _is_full_slice(node) -> bool:
    """slice(x, dim, 0, end) that keeps everything (x[:, :, None] indexing leaves these)."""
    args = list(node.args) + [0, 0, None, None, 1][len(node.args) :]
    _, dim, start, end, step = args[:5]
    if start not in (0, None) or step != 1:
        return False
    if end in (None, SLICE_END):
        return True
    size = node.args[0].meta["val"].shape[dim]
    return isinstance(size, int) and isinstance(end, int) and end >= size

