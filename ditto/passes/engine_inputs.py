"""Give the graph exactly the inputs of a `trtllm-build` engine.

before: input_ids int64 [1, num_tokens], position_ids int64 [1, num_tokens]  (HF's packed row)
after:  the placeholders of `ditto.trtllm.inputs.ENGINE_INPUTS`, in TensorRT-LLM's order:
        input_ids int32 [num_tokens], position_ids int32 [num_tokens], last_token_ids [batch],
        kv_cache_block_offsets ..., host_context_progress; HF's inputs are fed by
        `unsqueeze(input_ids, 0)` (same for position_ids), cast back to their dtype.

Dynamic dims get shared symbols (one `batch`, one `num_tokens`, ...), so shapes stay
consistent across passes.
"""

from __future__ import annotations

import torch
from torch._dynamo.source import ConstantSource
from torch.fx.experimental.symbolic_shapes import DimDynamic

from ditto.errors import DittoError
from ditto.graph.insert import fake_empty, fake_mode_of, insert_op
from ditto.passes.manager import PassContext, register_pass
from ditto.trtllm.inputs import ENGINE_INPUTS

aten = torch.ops.aten

# example sizes for the symbols (any value > 1 that export would not specialise)
_HINTS = {"batch": 3, "max_blocks_per_seq": 5, "max_seq_len": 17}


# after eager_attention_to_sdpa: num_layers counts the SDPA nodes
@register_pass("engine_inputs", after=("eager_attention_to_sdpa",))
def engine_inputs(ctx: PassContext) -> int:
    graph = ctx.graph
    if ctx.engine_inputs:
        return 0
    old = {n.name: n for n in graph.nodes if n.op == "placeholder"}
    if "input_ids" not in old:
        raise DittoError("the exported graph has no input_ids input; only token-id language models are supported")
    mode = fake_mode_of(graph)
    num_tokens = old["input_ids"].meta["val"].shape[1]
    symbols = {"num_tokens": num_tokens, "num_layers": _count_attention(graph)}
    first = next(iter(graph.nodes))
    for spec in ENGINE_INPUTS:
        shape = tuple(_dim(d, symbols, mode) for d in spec.dims)
        with graph.inserting_before(first):
            node = graph.placeholder(spec.name + "__new" if spec.name in old else spec.name)
        node.meta["val"] = fake_empty(graph, shape, spec.dtype)
        ctx.engine_inputs[spec.name] = node
    # feed HF's [1, num_tokens] inputs from the packed engine inputs
    for name in ("input_ids", "position_ids"):
        if name not in old:
            continue
        hf_input = old[name]
        with graph.inserting_after(ctx.engine_inputs[ENGINE_INPUTS[-1].name]):
            row = insert_op(graph, aten.unsqueeze.default, (ctx.engine_inputs[name], 0))
            with graph.inserting_after(row):
                cast = insert_op(graph, aten._to_copy.default, (row,), {"dtype": hf_input.meta["val"].dtype})
        hf_input.replace_all_uses_with(cast)
        graph.erase_node(hf_input)
        ctx.engine_inputs[name].name = name
        ctx.engine_inputs[name].target = name
    for name, node in old.items():
        if name not in ("input_ids", "position_ids") and node in graph.nodes:
            raise DittoError(f"the exported graph has an unexpected input {name!r}; ditto feeds input_ids and position_ids only")
    return 1


def _count_attention(graph) -> int:
    # runs after eager attention was normalised to SDPA, so SDPA nodes are the attention layers
    count = sum(1 for n in graph.nodes if n.op == "call_function" and n.target == aten.scaled_dot_product_attention.default)
    return max(count, 1)


def _dim(dim, symbols: dict, mode):
    if isinstance(dim, int):
        return dim
    if dim not in symbols:
        env = mode.shape_env
        hint = _HINTS.get(dim, 7)
        source = ConstantSource(dim)
        symbol = env.create_symbol(hint, source, dynamic_dim=DimDynamic.DYNAMIC)
        symbols[dim] = env.create_symintnode(symbol, hint=hint, source=source)
    return symbols[dim]
