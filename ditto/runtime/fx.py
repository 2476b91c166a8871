"""The `fx` backend: ditto's TensorRT-LLM-form FX graph run in torch.

Plugin ops run their torch reference kernels; the paged KV cache lives in torch
(`ditto.runtime.paged_cache`). Probes are read from the graph's nodes while it runs.
"""

from __future__ import annotations

import functools

import torch

from ditto.probes import check_probes, fx_probe_nodes
from ditto.runtime.backend import StepDump, StepwiseRequest, register_backend
from ditto.runtime.paged_cache import PagedKVCache
from ditto.runtime.stepwise import run_steps

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
    """Runs the graph and keeps the values of chosen nodes."""

    def __init__(self, gm, wanted: dict[str, torch.fx.Node]):
        super().__init__(gm)
        self.wanted = {node: name for name, node in wanted.items()}
        self.values: dict[str, torch.Tensor] = {}

    def run_node(self, n):
        result = super().run_node(n)
        if n in self.wanted:
            self.values[self.wanted[n]] = result
        return result


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
    gm = program.graph_module
    probes = check_probes(request.probes, program.probe_modules, request.model)
    nodes = fx_probe_nodes(gm.graph, {p: program.probe_modules[p] for p in probes}) if probes else {}
    cache = PagedKVCache(program.attention, max_seq_len_for(request), len(request.prompts), program.dtype, request.device)
    names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]

    def step(inputs):
        runner = CapturingInterpreter(gm, nodes)
        with torch.no_grad():
            (logits,) = runner.run(*[inputs[n] for n in names])
        out = {"logits": logits.float()}
        for name, value in runner.values.items():
            out[name] = value.reshape(-1, value.shape[-1])
        return out

    try:
        return run_steps(request, cache, step)
    finally:
        cache.close()
