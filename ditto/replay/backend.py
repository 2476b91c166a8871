"""The `replay` backend: ditto's TensorRT network (native attention) executed in torch, stepwise.

The network is built exactly as `ditto build` builds it, for limits that fit the request;
the paged KV-cache pool the engine takes and returns lives in torch, as for `fx`. A built
network and its replay plan (weights uploaded to the device once, at the first step, and
kept) are reused by every run with the same model, dtype, limits, probes and device; the
sequence limit is rounded up to a power of two, so that requests of other lengths reuse it.
"""

from __future__ import annotations

import functools

import torch

from ditto.probes import program_probe_nodes
from ditto.replay.network import ReplayPlan
from ditto.runtime.backend import StepDump, StepwiseRequest, register_backend
from ditto.runtime.fx import max_seq_len_for
from ditto.runtime.paged_cache import PagedKVCache
from ditto.runtime.stepwise import refuse_beyond_limit, run_steps
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
        # the network's sequence limit in powers of two: requests of other lengths (a context-only
        # run next to a full one) share one network and one copy of the weights on the device
        max_seq_len = 1 << (max_seq_len_for(request) - 1).bit_length()
        limits = (len(request.prompts), max_seq_len, sum(len(p) for p in request.prompts))
        program, plan, probe_names = prepared(request.model, request.dtype, limits, tuple(request.probes),
                                              str(request.device), _converters_fingerprint(), _graphs_enabled())
        self.last_plan = plan  # for benches: what it keeps on the device
        # one pool per plan, reused by its runs: the recorded graphs' signatures hold its address
        return replay_steps(request, program, max_seq_len, set(plan.declared_inputs), plan.run, plan.run_state)


def replay_steps(request: StepwiseRequest, program, max_seq_len: int, network_inputs: set, replay,
                 keep: dict | None = None) -> list[StepDump]:
    """Run `request` stepwise over a paged KV-cache pool in torch, `replay(feed) -> outputs`
    executing the network once per step (the pool goes in as POOL_INPUT and comes back).
    `keep`: where the pool is kept for the next run (reused when it has the same shape)."""
    refuse_beyond_limit(program, request)
    cache = PagedKVCache(program.attention, max_seq_len, len(request.prompts), program.dtype, request.device,
                         reuse=None if keep is None else keep.get("kv_pool"))
    if keep is not None:
        keep["kv_pool"] = cache.pool

    def step(inputs):
        feed = {name: value for name, value in inputs.items() if name in network_inputs}
        feed[POOL_INPUT] = cache.pool
        # context steps run layer by layer: one per run, and the largest activations (a recorded
        # graph would hold them for good); decode steps, launch-bound, replay recorded graphs
        context = not bool(inputs["host_request_types"].any())
        with torch.inference_mode():
            outputs = replay(feed, record=not context)
        pool = outputs.pop(POOL_OUTPUT)
        if pool.data_ptr() != cache.pool.data_ptr():  # the update layer writes in place; else copy
            cache.pool.copy_(pool)
        outputs = {k: v.reshape(-1, v.shape[-1]) for k, v in outputs.items()}  # probes packed like fx
        outputs["logits"] = outputs["logits"].float()
        return outputs

    try:
        return run_steps(request, cache, step)
    finally:
        cache.close()


def _graphs_enabled() -> bool:
    """CUDA graphs for the device work (on a CUDA device); DITTO_REPLAY_GRAPHS=0 runs layer by layer."""
    import os

    return os.environ.get("DITTO_REPLAY_GRAPHS", "1") != "0"


def _converters_fingerprint() -> int:
    """Which converter each target has: a converter swapped (a test's planted bug, a plugin's
    own converter) makes another network, never the cached one."""
    from ditto.trt.converters import CONVERTERS

    return hash(tuple(sorted((str(target), id(fn)) for target, fn in CONVERTERS.items())))


@functools.lru_cache(maxsize=2)
def prepared(model: str, dtype: torch.dtype, limits: tuple[int, int, int], probes: tuple[str, ...], device: str,
             converters: int, graphs: bool = False):
    """(program, replay plan, probe names) of the network for these build options, built once."""
    from ditto.pipeline import load_program
    from ditto.trt.network import NetworkLimits, build_network

    program = load_program(model, dtype, tokens_per_block=32)
    nodes = program_probe_nodes(program, probes, model)
    max_batch_size, max_seq_len, max_num_tokens = limits
    built = build_network(program, _trt(), NetworkLimits(max_batch_size=max_batch_size, max_seq_len=max_seq_len,
                                                         max_num_tokens=max_num_tokens),
                          {p: node.name for p, node in nodes.items()})
    # replay_steps hands its pool over; sequence lengths are read on the host (the step's shapes follow
    # them) and, on a GPU, each input-shape signature's device work is one CUDA graph (ditto.replay.graphs)
    plan = ReplayPlan(built.network, device=device, donated={POOL_INPUT}, host_inputs={"sequence_length"},
                      graphs=graphs)
    plan.keep_alive = built  # the network's constants point into the built network's host tensors
    plan.run_state = {}  # what its runs keep for the next (the KV pool, see replay_steps)
    return program, plan, list(nodes)
