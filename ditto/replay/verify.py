"""`ditto build --verify`: replay the built network on a small packed batch and report, per
engine output, the largest difference from ditto's FX graph run on the same inputs."""

from __future__ import annotations

import torch

from ditto.program import TrtllmProgram
from ditto.replay.network import replay_network
from ditto.runtime.fx import _Capture
from ditto.runtime.paged_cache import PagedKVCache
from ditto.trt.attention_native import POOL_INPUT, POOL_OUTPUT

# a context step for two ragged sequences, then one generation step
_PROMPTS = [[1, 2, 3, 4, 5], [6, 7]]


def verify_build(program: TrtllmProgram, network, trt, extra_outputs: dict[str, str], max_seq_len: int) -> dict[str, float]:
    """output name -> max abs difference between replay and the FX graph, over both steps."""
    gm = program.materialize()
    nodes = {n.name: n for n in gm.graph.nodes}
    wanted = {name: nodes[node] for name, node in extra_outputs.items()}
    placeholders = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    seq_len = min(max_seq_len, 16)
    fx_cache = PagedKVCache(program.attention, seq_len, len(_PROMPTS), program.dtype)
    replay_cache = PagedKVCache(program.attention, seq_len, len(_PROMPTS), program.dtype)
    worst: dict[str, float] = {}
    try:
        steps = [(_PROMPTS, [0, 0], True), ([[8], [9]], [5, 2], False)]
        for tokens, past, is_context in steps:
            inputs = fx_cache.step_inputs(tokens, past, [5, 2], is_context)
            runner = _Capture(gm, wanted)
            with torch.no_grad():
                (logits,) = runner.run(*[inputs[n] for n in placeholders])
            expected = {"logits": logits.float(), **runner.values}
            feed = replay_cache.step_inputs(tokens, past, [5, 2], is_context)
            feed[POOL_INPUT] = replay_cache.pool
            got = replay_network(network, trt, feed)
            replay_cache.pool.copy_(got.pop(POOL_OUTPUT))
            for name, value in expected.items():
                diff = (got[name].float().reshape(value.shape) - value.float()).abs().max().item()
                worst[name] = max(worst.get(name, 0.0), diff)
    finally:
        fx_cache.close()
        replay_cache.close()
    return worst
