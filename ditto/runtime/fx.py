"""The `fx` backend: ditto's TensorRT-LLM-form FX graph run in torch.

The paged KV cache lives in torch (`ditto.runtime.paged_cache`). The graph runs as compiled
Python (the GraphModule's own code, not an interpreter), on a copy of the program's graph in
which the probe nodes are extra outputs and `gpt_attention` runs the batched kernel
(`ditto.ops.gpt_attention_batched`, tested against the reference kernel; it falls back to the
reference for parameters it does not implement). `DITTO_FX_ATTENTION=reference` runs the
reference kernel instead (the specification: one sequence at a time, slow on GPUs).
"""

from __future__ import annotations

import functools

import torch

from ditto.ops.gpt_attention import TENSOR_INPUTS
from ditto.ops.gpt_attention_batched import batched_gpt_attention_unchecked, unsupported
from ditto.probes import program_probe_nodes
from ditto.runtime.backend import StepDump, StepwiseRequest, env_choice, register_backend
from ditto.runtime.paged_cache import PagedKVCache
from ditto.runtime.stepwise import refuse_beyond_limit, run_steps

_FACTORIES = {
    torch.ops.aten.arange.default,
    torch.ops.aten.arange.start,
    torch.ops.aten.arange.start_step,
    torch.ops.aten.full.default,
    torch.ops.aten.zeros.default,
    torch.ops.aten.ones.default,
    torch.ops.aten.scalar_tensor.default,
    torch.ops.aten.empty.memory_format,
}


def place_on_device(gm: torch.fx.GraphModule, device) -> None:
    """Factory ops (arange, full, ...) lost their device at export (meta); give them `device`."""
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _FACTORIES:
            node.kwargs = {**node.kwargs, "device": torch.device(device)}
    gm.recompile()


@functools.lru_cache(maxsize=8)
def _program(model: str, dtype: torch.dtype, device: str):
    from ditto.pipeline import load_program

    program = load_program(model, dtype)
    program.materialize(device)
    place_on_device(program.graph_module, device)
    return program


class CapturingInterpreter(torch.fx.Interpreter):
    """Runs the graph node by node and keeps the values of chosen nodes (for checks that need
    any node's value; the backend itself uses `runnable_graph`)."""

    def __init__(self, gm, wanted: dict[str, torch.fx.Node]):
        super().__init__(gm)
        self.wanted = {node: name for name, node in wanted.items()}
        self.values: dict[str, torch.Tensor] = {}

    def run_node(self, n):
        result = super().run_node(n)
        if n in self.wanted:
            self.values[self.wanted[n]] = result
        return result


ATTENTION_KERNELS = ("batched", "reference")


def attention_kernel() -> str:
    return env_choice("DITTO_FX_ATTENTION", ATTENTION_KERNELS, "a kernel")


def runnable_graph(gm: torch.fx.GraphModule, probe_nodes: dict[str, torch.fx.Node], kernel: str) -> torch.fx.GraphModule:
    """A GraphModule sharing `gm`'s weights whose outputs are (logits, *probes in the order
    given), with gpt_attention run by `kernel` (the batched kernel where it implements the
    node's parameters, checked here once; else the reference). `gm` itself is left as it is."""
    graph = torch.fx.Graph()
    mapping: dict[torch.fx.Node, torch.fx.Node] = {}
    (logits,) = graph.graph_copy(gm.graph, mapping)
    graph.output((logits, *(mapping[node] for node in probe_nodes.values())))
    if kernel == "batched":
        for node in graph.nodes:
            if node.op == "call_function" and node.target is torch.ops.ditto.gpt_attention.default:
                if not unsupported({**dict(zip(TENSOR_INPUTS, node.args)), **node.kwargs}):
                    node.target = batched_gpt_attention_unchecked
    return torch.fx.GraphModule(gm, graph)


def max_seq_len_for(request: StepwiseRequest) -> int:
    return max(len(p) for p in request.prompts) + request.steps + 1


@register_backend("fx")
class FxBackend:
    def unavailable_reason(self) -> str | None:
        return None

    def run(self, request: StepwiseRequest) -> list[StepDump]:
        return run_program(_program(request.model, request.dtype, request.device), request)


def run_program(program, request: StepwiseRequest) -> list[StepDump]:
    """Run a materialised program stepwise (the fx backend without its program cache)."""
    refuse_beyond_limit(program, request)
    gm = program.graph_module
    nodes = program_probe_nodes(program, request.probes, request.model)
    cache = PagedKVCache(program.attention, max_seq_len_for(request), len(request.prompts), program.dtype, request.device)
    names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    runnable = runnable_graph(gm, nodes, attention_kernel())

    def step(inputs):
        with torch.inference_mode():
            logits, *values = runnable(*[inputs[n] for n in names])
        out = {"logits": logits.float()}
        for name, value in zip(nodes, values):
            out[name] = value.reshape(-1, value.shape[-1])
        return out

    try:
        return run_steps(request, cache, step)
    finally:
        cache.close()
