"""Build a TensorRT network from a TrtllmProgram: inputs and profile, constants, one converter
per node, attention lowering, outputs.

Placeholders become network inputs (-1 for named dims, ranges from the build limits as
TensorRT-LLM's own single profile sets them); get_attr weights become constants pointing
into the loaded tensors; every other node goes through `ditto.trt.converters`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch.fx import Node

from ditto.errors import DittoError
from ditto.graph.nodes import source_line
from ditto.ops.gpt_attention import TENSOR_INPUTS
from ditto.program import TrtllmProgram
from ditto.trt import attention_native
from ditto.trt.context import ConversionContext
from ditto.trt.converters import CONVERTERS
from ditto.trt.weights import WeightStore
from ditto.trtllm.inputs import dim_ranges


@dataclass(frozen=True)
class NetworkLimits:
    max_batch_size: int = 4
    max_seq_len: int = 256
    max_num_tokens: int = 512


@dataclass
class BuiltNetwork:
    network: object
    profile: dict  # input name -> (min, opt, max) shapes
    outputs: list[str]
    keep_alive: list  # host tensors the network's constants point into
    builder: object
    weights: WeightStore  # the files those tensors map; release_pages() while building, close() after


def build_network(
    program: TrtllmProgram,
    trt,
    limits: NetworkLimits,
    add_outputs=(),
    attention: str = "native",
    staging_dir=None,
) -> BuiltNetwork:
    """`add_outputs`: FX node names (outputs named after them) or {output name: node name}.

    `staging_dir`: where computed weights are written and mapped from (see ditto.trt.weights);
    None keeps them in memory.
    """
    if attention != "native":
        raise DittoError(
            "the GPTAttention plugin lowering needs TensorRT-LLM's plugin library (a GPU node); "
            "use --attention native here"
        )
    gm = program.graph_module
    nodes = {n.name: n for n in gm.graph.nodes}
    if not isinstance(add_outputs, dict):
        add_outputs = {name: name for name in add_outputs}
    _check_add_outputs(add_outputs.values(), nodes)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    ctx = ConversionContext(trt, network)
    tokens_per_block = program.attention[0].tokens_per_block
    ranges = dim_ranges(
        max_batch_size=limits.max_batch_size,
        max_seq_len=limits.max_seq_len,
        max_num_tokens=limits.max_num_tokens,
        tokens_per_block=tokens_per_block,
    )
    profile: dict[str, tuple] = {}
    state: dict = {}
    store = WeightStore(program.weights, staging_dir)
    store.stage({n.target: n.meta["val"].dtype for n in gm.graph.nodes if n.op == "get_attr"})
    for node in gm.graph.nodes:
        ctx.node = node
        if node.op == "placeholder":
            if node.name == "host_kv_cache_pool_pointers":
                continue  # native engines take the pool itself (see attention_native)
            dims = program.input_dims[node.name]
            shape = tuple(d if isinstance(d, int) else -1 for d in dims)
            dtype = ctx.dtype(node.meta["val"].dtype)
            ctx.values[node] = network.add_input(node.name, dtype, shape)
            profile[node.name] = tuple(tuple(d if isinstance(d, int) else ranges[d][i] for d in dims) for i in range(3))
        elif node.op == "get_attr":
            ctx.values[node] = ctx.constant(store.tensor(node.target, node.meta["val"].dtype), "weight")
        elif node.op == "call_function":
            if node.target == torch.ops.ditto.gpt_attention.default:
                if not state:
                    state.update(_native_state(ctx, program, limits, ranges, profile))
                ctx.values[node] = _attention(ctx, node, state)
            else:
                ctx.values[node] = _convert(ctx, node)
        elif node.op == "output":
            outputs = _mark_outputs(ctx, node, program, add_outputs, nodes, state)
    return BuiltNetwork(network, profile, outputs, ctx.keep_alive, builder, store)


def _convert(ctx: ConversionContext, node: Node):
    fn = CONVERTERS.get(node.target)
    if fn is None:
        raise DittoError(
            f"no converter for node {node.name} (target {node.target}) from {source_line(node)}; "
            "add one in ditto/trt/converters.py with @converter(target)"
        )
    args = torch.fx.node.map_arg(node.args, lambda n: ctx.values[n])
    kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: ctx.values[n])
    kwargs = {k: v for k, v in kwargs.items() if k not in ("memory_format", "layout", "device", "pin_memory", "non_blocking")}
    return fn(ctx, *args, **kwargs)


def _native_state(ctx, program: TrtllmProgram, limits: NetworkLimits, ranges: dict, profile: dict) -> dict:
    params = program.attention[0]
    layers = len(program.attention)
    blocks_max = limits.max_batch_size * ranges["max_blocks_per_seq"][2]
    shape = (-1, layers, 2, params.num_kv_heads, params.tokens_per_block, params.head_size)
    pool = ctx.network.add_input(attention_native.POOL_INPUT, ctx.dtype(program.dtype), shape)
    static = shape[1:]
    profile[attention_native.POOL_INPUT] = ((1, *static), (max(1, blocks_max // 2), *static), (blocks_max, *static))
    units = ctx.reshape(pool, [-1, params.num_kv_heads, params.tokens_per_block, params.head_size])
    engine_inputs = {n.name: v for n, v in ctx.values.items() if isinstance(n, Node) and n.op == "placeholder"}
    return {
        "pool": ctx.transpose(units, [0, 2, 1, 3]),  # [units, tokens_per_block, kv_heads, head_size]
        "arange": ctx.constant(torch.arange(limits.max_seq_len, dtype=torch.int32), "arange"),
        "position_ids": engine_inputs["position_ids"],
        "last_token_ids": engine_inputs["last_token_ids"],
        "pool_shape": static,
    }


def _attention(ctx: ConversionContext, node: Node, state: dict):
    from ditto.ops.params import GPTAttentionParams

    values = dict(zip(TENSOR_INPUTS, node.args))
    inputs = {name: ctx.values[v] for name, v in values.items() if isinstance(v, Node) and v in ctx.values}
    params = GPTAttentionParams(**{k: node.kwargs[k] for k in GPTAttentionParams.field_names()})
    return attention_native.lower(ctx, params, inputs, state)


def _mark_outputs(ctx, node: Node, program: TrtllmProgram, add_outputs, nodes, state) -> list[str]:
    (values,) = node.args
    values = values if isinstance(values, (tuple, list)) else (values,)
    names = []
    for name, value in zip(program.output_names, values):
        tensor = ctx.values[value]
        tensor.name = name
        ctx.network.mark_output(tensor)
        names.append(name)
    for name, node_name in add_outputs.items():
        tensor = ctx.values[nodes[node_name]]
        identity = ctx.network.add_identity(tensor)
        identity.name = f"ditto/add_output/{name}"
        out = identity.get_output(0)
        out.name = name
        ctx.network.mark_output(out)
        names.append(name)
    if state:
        ctx.node = None
        pool = ctx.transpose(state["pool"], [0, 2, 1, 3])
        pool = ctx.reshape(pool, [-1, *state["pool_shape"]])
        pool.name = attention_native.POOL_OUTPUT
        ctx.network.mark_output(pool)
        names.append(attention_native.POOL_OUTPUT)
    return names


def _check_add_outputs(add_outputs, nodes: dict) -> None:
    for name in add_outputs:
        node = nodes.get(name)
        if node is None or node.op not in ("call_function", "placeholder", "get_attr"):
            close = difflib.get_close_matches(name, [n for n, v in nodes.items() if v.op == "call_function"], n=5)
            raise DittoError(
                f"--add-output {name!r} is not a node of the graph; closest: {', '.join(close) or '(none)'} "
                "(see graph.txt from `ditto export MODEL --artifacts DIR`)"
            )
