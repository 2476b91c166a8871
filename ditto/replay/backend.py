"""The `replay` backend: ditto's TensorRT network (native attention) executed in torch, stepwise.

The network is built exactly as `ditto build` builds it, for limits that fit the request;
the paged KV-cache pool the engine takes and returns lives in torch, as for `fx`.
"""

from __future__ import annotations

import torch

from ditto.probes import check_probes, fx_probe_nodes
from ditto.replay.network import replay_network
from ditto.runtime.backend import StepDump, StepwiseRequest, register_backend
from ditto.runtime.fx import max_seq_len_for
from ditto.runtime.paged_cache import PagedKVCache
from ditto.runtime.stepwise import run_steps
from ditto.trt.attention_native import POOL_INPUT, POOL_OUTPUT


def _trt():
    from ditto.trt.provider import trt_module

    return trt_module()


@register_backend("replay")
class ReplayBackend:
    def unavailable_reason(self) -> str | None:
        # only "not installed" skips; an installed TensorRT that fails to load fails the run
        from ditto.trt.provider import missing_provider

        return missing_provider()

    def run(self, request: StepwiseRequest) -> list[StepDump]:
        from ditto.pipeline import load_program
        from ditto.trt.network import NetworkLimits, build_network

        trt = _trt()
        program = load_program(request.model, request.dtype, tokens_per_block=32)
        probes = check_probes(request.probes, program.probe_modules, request.model)
        nodes = fx_probe_nodes(program.graph_module.graph, {p: program.probe_modules[p] for p in probes}) if probes else {}
        max_seq_len = max_seq_len_for(request)
        limits = NetworkLimits(
            max_batch_size=len(request.prompts),
            max_seq_len=max_seq_len,
            max_num_tokens=sum(len(p) for p in request.prompts),
        )
        built = build_network(program, trt, limits, {p: node.name for p, node in nodes.items()})
        cache = PagedKVCache(program.attention, max_seq_len, len(request.prompts), program.dtype, request.device)

        network_inputs = {built.network.get_input(i).name for i in range(built.network.num_inputs)}

        def step(inputs):
            feed = {name: value for name, value in inputs.items() if name in network_inputs}
            feed[POOL_INPUT] = cache.pool
            with torch.no_grad():
                outputs = replay_network(built.network, feed, device=request.device)
            cache.pool.copy_(outputs.pop(POOL_OUTPUT))
            outputs = {k: v.reshape(-1, v.shape[-1]) for k, v in outputs.items()}  # probes packed like fx
            outputs["logits"] = outputs["logits"].float()
            return outputs

        try:
            return run_steps(request, cache, step)
        finally:
            cache.close()
