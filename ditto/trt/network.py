"""Build a TensorRT network from a TrtllmProgram: inputs and profile, constants, one converter
per node, attention lowering, outputs.

Placeholders become network inputs (-1 for named dims, ranges from the build limits as
TensorRT-LLM's own single profile sets them); get_attr weights become constants that map the
weight files (`ditto.trt.weights`); every other node goes through `ditto.trt.converters`,
except `gpt_attention`, which one of two lowerings turns into layers:

- `plugin`: TensorRT-LLM's GPTAttention plugin per layer (`ditto.trtllm.gpt_attention_plugin`), inputs in
  the plugin's order. The engine's I/O is exactly the FX graph's (trtllm-build's): inputs =
  the placeholders, outputs = `logits` then each added output.
- `native`: TensorRT's own layers (`ditto.trt.attention_native`). TensorRT cannot follow
  `host_kv_cache_pool_pointers`, so that input is dropped and the engine takes the pool
  itself: input `kv_cache_pool` [num_blocks, num_layers, 2, kv_heads, tokens_per_block,
  head_size] (program dtype) after the placeholders, output `present_kv_cache_pool` (same
  shape, the pool with this step's K/V written) after the added outputs.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

import torch
from torch.fx import Node

from ditto.errors import DittoError
from ditto.ops.gpt_attention import ALL_TENSOR_INPUTS, TENSOR_INPUTS
from ditto.ops.params import GPTAttentionParams
from ditto.program import TrtllmProgram
from ditto.trt import attention_native
from ditto.trt.context import ConversionContext
from ditto.trt.converters import convert_node
from ditto.trt.weights import WeightStore
from ditto.trtllm.inputs import dim_ranges

ATTENTION_LOWERINGS = ("native", "plugin")
GPT_ATTENTION = torch.ops.ditto.gpt_attention.default


@dataclass(frozen=True)
class NetworkLimits:
    max_batch_size: int = 4
    max_seq_len: int = 256
    max_num_tokens: int = 512
    max_input_len: int = 128  # the plugin's max_context_length


@dataclass
class BuiltNetwork:
    network: object
    profile: dict  # input name -> (min, opt, max) shapes
    outputs: list[str]
    keep_alive: list  # host tensors the network's constants point into
    builder: object
    weights: WeightStore  # the files those tensors map; release_pages() while building, close() after


def resolve_attention(trt, requested: str = "auto") -> str:
    """The attention lowering for `requested` (auto | native | plugin) with `trt`.

    auto: `plugin` when TensorRT-LLM's GPTAttention plugin can be created (tensorrt with
    tensorrt_llm installed: importing it loads the plugin library), else `native`.
    """
    if requested not in ("auto", *ATTENTION_LOWERINGS):
        raise DittoError(f"unknown attention lowering {requested!r}; use auto, {', '.join(ATTENTION_LOWERINGS)}")
    if requested == "native":
        return requested
    missing = _plugin_unavailable(trt)
    if requested == "plugin" and missing:
        raise DittoError(f"--attention plugin needs TensorRT-LLM's GPTAttention plugin, but {missing}; use --attention native")
    return "native" if missing else "plugin"


def _plugin_unavailable(trt) -> str | None:
    import importlib.util

    from ditto.trtllm.gpt_attention_plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

    if not hasattr(trt.INetworkDefinition, "add_plugin_v2"):
        return f"{trt.__name__} has no IPluginV2 layers"
    if importlib.util.find_spec("tensorrt_llm") is None:
        return "tensorrt_llm is not installed"
    import tensorrt_llm  # noqa: F401  (loads TensorRT-LLM's plugin library into the registry)

    if trt.get_plugin_registry().get_plugin_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None:
        return "TensorRT-LLM's plugin library did not register GPTAttention"
    return None


def build_network(
    program: TrtllmProgram,
    trt,
    limits: NetworkLimits,
    add_outputs=(),
    attention: str = "native",
    staging_dir=None,
    plugin_options=None,
    moe: str = "native",
) -> BuiltNetwork:
    """`add_outputs`: FX node names (outputs named after them) or {output name: node name}.

    `staging_dir`: where computed weights are written and mapped from (see ditto.trt.weights);
    None keeps them in memory. `plugin_options`: the GPTAttention options of the build
    (`BuildOptions.plugin_options()`, so that the plugin fields and config.json's plugin_config
    agree); None: TensorRT-LLM's plugin_config defaults for these limits. `moe`: `native`
    (TensorRT layers) or `plugin` (TensorRT-LLM's MixtureOfExperts; `ditto.trt.converters.moe`).
    """
    if attention not in ATTENTION_LOWERINGS:
        raise DittoError(f"unknown attention lowering {attention!r}; use one of {', '.join(ATTENTION_LOWERINGS)}")
    gm = program.graph_module
    nodes = {n.name: n for n in gm.graph.nodes}
    if not isinstance(add_outputs, dict):
        add_outputs = {name: name for name in add_outputs}
    _check_add_outputs(add_outputs, nodes, program.output_names, attention)
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    ctx = ConversionContext(trt, network)
    ranges = dim_ranges(
        max_batch_size=limits.max_batch_size,
        max_seq_len=limits.max_seq_len,
        max_num_tokens=limits.max_num_tokens,
        tokens_per_block=program.attention[0].tokens_per_block,
    )
    profile: dict[str, tuple] = {}
    store = WeightStore(program.weights, staging_dir)
    store.stage({n.target: n.meta["val"].dtype for n in gm.graph.nodes if n.op == "get_attr"})

    def placeholder(node: Node):
        if attention == "native" and node.name == "host_kv_cache_pool_pointers":
            return None  # native engines take the pool itself (see the module docstring)
        dims = program.input_dims[node.name]
        shape = tuple(d if isinstance(d, int) else -1 for d in dims)
        profile[node.name] = tuple(tuple(d if isinstance(d, int) else ranges[d][i] for d in dims) for i in range(3))
        return network.add_input(node.name, ctx.dtype(node.meta["val"].dtype), shape)

    def get_attr(node: Node):
        return ctx.constant(store.tensor(node.target, node.meta["val"].dtype), "weight")

    if attention == "native":
        lowering = _NativeAttention(ctx, program, limits, ranges, profile)
    else:
        lowering = _PluginAttention(ctx, program, limits, store, plugin_options)
    lowerings = {GPT_ATTENTION: lowering}
    if moe == "plugin":
        from ditto.trt.converters.moe import plugin_lowering

        lowerings[torch.ops.ditto.moe.default] = lambda node: plugin_lowering(ctx, node)
    values = convert_graph(ctx, gm.graph, placeholder, get_attr, lowerings)
    outputs = _mark_outputs(ctx, values, program.output_names, {k: ctx.values[nodes[v]] for k, v in add_outputs.items()})
    if attention == "native":
        outputs.append(lowering.mark_pool_output())
    return BuiltNetwork(network, profile, outputs, ctx.keep_alive, builder, store)


def convert_graph(
    ctx: ConversionContext,
    graph: torch.fx.Graph,
    placeholder: Callable[[Node], object],
    get_attr: Callable[[Node], object],
    lowerings: dict | None = None,
) -> list:
    """Add every node of `graph` to `ctx.network`; returns the values of the output node.

    `placeholder` / `get_attr` give those nodes' values; `lowerings` maps a target to a
    `fn(node)` that replaces its converter.
    """
    lowerings = lowerings or {}
    values: list = []
    for node in graph.nodes:
        ctx.node = node
        if node.op == "placeholder":
            ctx.values[node] = placeholder(node)
        elif node.op == "get_attr":
            ctx.values[node] = get_attr(node)
        elif node.op == "call_function":
            lower = lowerings.get(node.target)
            ctx.values[node] = lower(node) if lower is not None else convert_node(ctx, node)
        elif node.op == "output":
            (result,) = node.args
            result = result if isinstance(result, (tuple, list)) else (result,)
            values = [ctx.values[v] if isinstance(v, Node) else v for v in result]
        else:
            raise DittoError(f"node {node.name} is a {node.op}; ditto converts graphs of ATen calls (torch.export output)")
    ctx.node = None
    return values


def attention_params(node: Node) -> GPTAttentionParams:
    return GPTAttentionParams(**{k: node.kwargs[k] for k in GPTAttentionParams.field_names()})


def _tensor_args(node: Node) -> dict[str, Node]:
    bound = dict(zip(TENSOR_INPUTS, node.args))
    bound.update({k: v for k, v in node.kwargs.items() if k in ALL_TENSOR_INPUTS})
    return {name: value for name, value in bound.items() if isinstance(value, Node)}


class _NativeAttention:
    """gpt_attention with TensorRT layers; the pool input is added at the first layer."""

    def __init__(self, ctx: ConversionContext, program: TrtllmProgram, limits: NetworkLimits, ranges: dict, profile: dict):
        self.ctx, self.program, self.limits, self.ranges, self.profile = ctx, program, limits, ranges, profile
        self.state: dict = {}

    def __call__(self, node: Node):
        ctx = self.ctx
        if not self.state:
            self.state.update(self._pool_state())
        inputs = {name: ctx.values[value] for name, value in _tensor_args(node).items() if ctx.values.get(value) is not None}
        return attention_native.lower(ctx, attention_params(node), inputs, self.state)

    def _pool_state(self) -> dict:
        ctx, params = self.ctx, self.program.attention[0]
        blocks_max = self.limits.max_batch_size * self.ranges["max_blocks_per_seq"][2]
        shape = (-1, len(self.program.attention), 2, params.num_kv_heads, params.tokens_per_block, params.head_size)
        pool = ctx.network.add_input(attention_native.POOL_INPUT, ctx.dtype(self.program.dtype), shape)
        static = shape[1:]
        self.profile[attention_native.POOL_INPUT] = ((1, *static), (max(1, blocks_max // 2), *static), (blocks_max, *static))
        units = ctx.reshape(pool, [-1, params.num_kv_heads, params.tokens_per_block, params.head_size])
        inputs = {n.name: v for n, v in ctx.values.items() if isinstance(n, Node) and n.op == "placeholder"}
        return {
            "pool": ctx.transpose(units, [0, 2, 1, 3]),  # [units, tokens_per_block, kv_heads, head_size]
            "arange": ctx.constant(torch.arange(self.limits.max_seq_len, dtype=torch.int32), "arange"),
            "position_ids": inputs["position_ids"],
            "last_token_ids": inputs["last_token_ids"],
            "pool_shape": static,
        }

    def mark_pool_output(self) -> str:
        ctx = self.ctx
        pool = ctx.transpose(self.state["pool"], [0, 2, 1, 3])
        pool = ctx.reshape(pool, [-1, *self.state["pool_shape"]])
        pool.name = attention_native.POOL_OUTPUT
        ctx.network.mark_output(pool)
        return attention_native.POOL_OUTPUT


class _PluginAttention:
    """gpt_attention as TensorRT-LLM's GPTAttention plugin (a GPU node with TensorRT-LLM)."""

    def __init__(self, ctx: ConversionContext, program: TrtllmProgram, limits: NetworkLimits, store: WeightStore,
                 options=None):
        from ditto.trtllm.gpt_attention_plugin import PluginOptions

        self.ctx, self.store = ctx, store
        self.options = options or PluginOptions(
            dtype=str(program.dtype).removeprefix("torch."),
            tokens_per_block=program.attention[0].tokens_per_block,
            max_context_length=limits.max_input_len,
        )
        self.cos_sin: dict[str, object] = {}  # get_attr target -> the table in the plugin's layout

    def __call__(self, node: Node):
        from ditto.trtllm.gpt_attention_plugin import create_gpt_attention_plugin

        ctx = self.ctx
        params = attention_params(node)
        inputs = self.inputs(node, params)
        plugin = create_gpt_attention_plugin(ctx.trt, params, self.options)
        return ctx.out(ctx.network.add_plugin_v2(inputs, plugin))

    def inputs(self, node: Node, params: GPTAttentionParams) -> list:
        """The plugin's input tensors in its order (`gpt_attention_input_names`)."""
        from ditto.trtllm.gpt_attention_plugin import gpt_attention_input_names, refuse_unmapped_inputs

        ctx, args = self.ctx, _tensor_args(node)
        refuse_unmapped_inputs(params.layer_idx, set(args))
        tensors = []
        for name in gpt_attention_input_names(params, self.options):
            if name not in args:
                raise DittoError(f"gpt_attention node {node.name} has no {name} input, which the GPTAttention plugin needs")
            value = ctx.values[args[name]]
            if name == "rotary_cos_sin":
                value = self._plugin_cos_sin(args[name])
            elif name == "rotary_inv_freq":
                value = ctx.cast(value, torch.float32)
            tensors.append(value)
        return tensors

    def _plugin_cos_sin(self, table: Node):
        from ditto.trtllm.gpt_attention_plugin import plugin_rotary_cos_sin

        if table.target not in self.cos_sin:
            values = self.store.tensor(table.target, torch.float32).numpy()
            self.cos_sin[table.target] = self.ctx.constant(torch.from_numpy(plugin_rotary_cos_sin(values)), "rotary_cos_sin")
        return self.cos_sin[table.target]


def _mark_outputs(ctx: ConversionContext, values: list, names: list[str], extra: dict) -> list[str]:
    marked = []
    for name, tensor in zip(names, values):
        tensor.name = name
        ctx.network.mark_output(tensor)
        marked.append(name)
    for name, tensor in extra.items():
        identity = ctx.network.add_identity(tensor)
        identity.name = f"ditto/add_output/{name}"
        out = identity.get_output(0)
        out.name = name
        ctx.network.mark_output(out)
        marked.append(name)
    return marked


def _check_add_outputs(add_outputs: dict, nodes: dict, output_names: list[str], attention: str) -> None:
    taken = set(output_names) | ({attention_native.POOL_OUTPUT} if attention == "native" else set())
    tensors = [n for n, v in nodes.items() if v.op in ("call_function", "placeholder", "get_attr")]
    for name, node_name in add_outputs.items():
        node = nodes.get(node_name)
        if node is None or node.op not in ("call_function", "placeholder", "get_attr"):
            close = difflib.get_close_matches(node_name, tensors, n=5)
            raise DittoError(
                f"--add-output {node_name!r} is not a node of the graph; closest: {', '.join(close) or '(none)'} "
                "(every node name is in graph.txt from `ditto export MODEL --artifacts DIR`)"
            )
        if not isinstance(node.meta.get("val"), torch.Tensor):
            raise DittoError(
                f"--add-output {node_name!r} is not one tensor (it is {type(node.meta.get('val')).__name__}); "
                f"pick a node that uses it, e.g. {', '.join(u.name for u in node.users) or '(none)'}"
            )
        if name in taken:
            raise DittoError(f"--add-output {name!r} would reuse the engine output name {name!r}; pick another node")
        if attention == "native" and node_name == "host_kv_cache_pool_pointers":
            raise DittoError("host_kv_cache_pool_pointers is not an input of a native-attention engine")
        taken.add(name)
