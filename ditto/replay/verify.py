"""`ditto build --verify`: replay the built network on a small ragged batch and report, per
network output, the largest difference from ditto's FX graph run on the same inputs.

One context step and `steps` generation steps; both sides are fed the FX graph's greedy
tokens, each side keeps its own paged KV cache, and the native network's returned pool is
compared with the pool the FX graph's attention wrote. A network output that is neither an
FX output, an extra output, nor the pool has no counterpart and is an error.
"""

from __future__ import annotations

import torch

from ditto.errors import DittoError
from ditto.program import TrtllmProgram
from ditto.replay.network import replay_network
from ditto.runtime.fx import CapturingInterpreter
from ditto.runtime.paged_cache import PagedKVCache
from ditto.trt.attention_native import POOL_INPUT, POOL_OUTPUT

# ragged prompts of small token ids (every tokenizer has them)
PROMPTS = [[1, 2, 3, 4, 5], [6, 7], [3, 1, 4, 1, 5, 9, 2]]


def verify_build(
    program: TrtllmProgram,
    network,
    trt=None,
    extra_outputs: dict[str, str] | None = None,
    max_seq_len: int = 256,
    *,
    steps: int = 1,
    plugin_fields: dict | None = None,
    relative: bool = False,
) -> dict[str, float]:
    """output name -> max abs difference between replay and the FX graph over all steps
    (`relative`: divided by max(1, the FX value's largest magnitude) of that step).

    `extra_outputs`: network output name -> FX node name (ditto build's --add-output and
    probes). `trt` is not needed (replay reads the module from the network); it is accepted
    because `ditto.builder` passes it. `plugin_fields`: see `replay_network`.
    """
    prompts = [p for p in PROMPTS if len(p) + steps <= max_seq_len] or [[1]]
    gm = program.materialize()
    nodes = {n.name: n for n in gm.graph.nodes}
    wanted = {name: nodes[node] for name, node in (extra_outputs or {}).items()}
    placeholders = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    names = [network.get_output(i).name for i in range(network.num_outputs)]
    unknown = [n for n in names if n not in program.output_names and n not in wanted and n != POOL_OUTPUT]
    if unknown:
        raise DittoError(f"network outputs {unknown} have no FX counterpart; pass them as extra_outputs")
    network_inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    seq_len = max(len(p) for p in prompts) + steps + 1
    caches = [PagedKVCache(program.attention, seq_len, len(prompts), program.dtype) for _ in range(2)]
    fx_cache, replay_cache = caches
    context_lengths = [len(p) for p in prompts]
    tokens, past = [list(p) for p in prompts], [0] * len(prompts)
    worst: dict[str, float] = {}
    try:
        for step in range(steps + 1):
            inputs = fx_cache.step_inputs(tokens, past, context_lengths, is_context=step == 0)
            runner = CapturingInterpreter(gm, wanted)
            with torch.no_grad():
                results = runner.run(*[inputs[n] for n in placeholders])
            expected = dict(zip(program.output_names, results), **runner.values, **{POOL_OUTPUT: fx_cache.pool})
            feed = replay_cache.step_inputs(tokens, past, context_lengths, is_context=step == 0)
            feed = {name: value for name, value in feed.items() if name in network_inputs}
            if POOL_INPUT in network_inputs:
                feed[POOL_INPUT] = replay_cache.pool
            got = replay_network(network, feed, plugin_fields=plugin_fields)
            if POOL_OUTPUT in got:
                replay_cache.pool.copy_(got[POOL_OUTPUT])
            for name in names:
                value, reference = got[name], expected[name]
                if value.numel() != reference.numel():
                    raise DittoError(f"output {name!r}: replay gives shape {tuple(value.shape)}, FX {tuple(reference.shape)}")
                diff = (value.float().reshape(reference.shape) - reference.float()).abs().max().item()
                if relative:
                    diff /= max(1.0, reference.float().abs().max().item())
                worst[name] = max(worst.get(name, 0.0), diff)
            past = [p + len(t) for p, t in zip(past, tokens)]
            tokens = [[t] for t in expected["logits"].argmax(-1).tolist()]
    finally:
        for cache in caches:
            cache.close()
    return worst
