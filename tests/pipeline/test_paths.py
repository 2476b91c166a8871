"""Inputs that reach the paths the default runs pass over: KV caches of many blocks, sliding
windows shorter than the sequences, every tiny model through replay in float16 and bfloat16,
and tiny weights sharp enough that a position bug is a large error.

Planted bugs these kill (each tried by hand, see the report of issue 12): two sequences' blocks
overlapping in `PagedKVCache`; a block or slot computed with the wrong `tokens_per_block` in the
reference op or the native lowering; the sliding window dropped in the reference op or in the
native lowering; a half-precision network that is not replayable or drifts (a cast dropped).
"""

from __future__ import annotations

import pytest
import torch

from ditto.models.tiny import TINY_MODELS
from ditto.pipeline import load_program
from ditto.probes import program_probe_nodes
from ditto.replay.backend import replay_steps
from ditto.replay.network import replay_network
from ditto.runtime.backend import StepwiseRequest, get_backend
from ditto.runtime.fx import max_seq_len_for, run_program
from ditto.runtime.paged_cache import PagedKVCache
from ditto.trt.network import NetworkLimits, build_network
from ditto.trt.provider import trt_module
from tests.parity import bound, forced_request, materialized, worst_errors

# 4 tokens per block: the prompts below span 2 to 5 blocks, and generation steps 1, 3 and 5
# each start a new block for some sequence (13 -> 16, 7 -> 8 and 12)
SMALL_BLOCK = 4
LONG_PROMPTS = [[(7 * i) % 500 + 3 for i in range(13)], [11, 12], [(13 * i) % 500 + 3 for i in range(7)]]
STEPS = 6
# MHA with llama3 RoPE, GQA with a sliding window of 8, MQA with a head of 32, interleaved partial RoPE
BLOCK_MODELS = ["tiny-llama", "tiny-mistral", "tiny-gemma", "tiny-glm"]


def _forced(model: str, dtype=torch.float32, prompts=LONG_PROMPTS, steps=STEPS, probes=("layers.0.attn", "layers.1.out")):
    request = StepwiseRequest(model=model, prompts=prompts, steps=steps, dtype=dtype, probes=list(probes))
    reference = get_backend("hf").run(request)
    request.forced_tokens = [d["logits"].argmax(-1).tolist() for d in reference[:-1]]
    return request, reference


def run_replay(program, request: StepwiseRequest) -> list[dict]:
    """What the replay backend does, on a program loaded with other KV blocks than the backend's:
    the network built as `ditto build` builds it, replayed stepwise over a paged pool in torch."""
    nodes = program_probe_nodes(program, request.probes, request.model)
    max_seq_len = max_seq_len_for(request)
    limits = NetworkLimits(max_batch_size=len(request.prompts), max_seq_len=max_seq_len,
                           max_num_tokens=sum(len(p) for p in request.prompts))
    built = build_network(program, trt_module(), limits, {p: node.name for p, node in nodes.items()})
    inputs = {built.network.get_input(i).name for i in range(built.network.num_inputs)}
    return replay_steps(request, program, max_seq_len, inputs, lambda feed, record=True: replay_network(built.network, feed))


def test_paged_cache_gives_each_sequence_its_own_blocks():
    program_attention = load_program("tiny-mistral", tokens_per_block=SMALL_BLOCK).attention
    cache = PagedKVCache(program_attention, max_seq_len=21, batch=3, dtype=torch.float32)
    try:
        assert cache.blocks_per_seq == 6
        offsets = cache.offsets[0]  # [batch, 2, blocks]
        units = offsets.flatten().tolist()
        assert len(set(units)) == len(units), "two sequences (or K and V) share a block"
        layers = len(program_attention)
        # K and V of one block are adjacent units; every layer adds 2 (ditto.ops.kv_cache)
        assert torch.equal(offsets[:, 1] - offsets[:, 0], torch.ones_like(offsets[:, 0]))
        assert sorted(offsets[:, 0].flatten().tolist()) == [2 * layers * b for b in range(3 * 6)]
        # every unit a sequence may address lies inside the pool
        assert max(units) + 2 * (layers - 1) < cache.pool.shape[0] * layers * 2
    finally:
        cache.close()


@pytest.mark.needs_tensorrt
@pytest.mark.parametrize("model", BLOCK_MODELS)
def test_fx_and_replay_with_small_kv_blocks_match_hf(model):
    """fx (reference op) and replay (native lowering) with 4-token blocks against HF, whose cache has no blocks."""
    request, reference = _forced(model)
    assert max(len(p) for p in LONG_PROMPTS) + STEPS > 4 * SMALL_BLOCK  # several blocks per sequence
    program = load_program(model, tokens_per_block=SMALL_BLOCK)
    assert {p.tokens_per_block for p in program.attention} == {SMALL_BLOCK}
    tolerance = bound(torch.float32)
    replayed = run_replay(program, request)
    errors = worst_errors(reference, replayed)
    assert max(errors.values()) <= tolerance, f"replay, {SMALL_BLOCK}-token blocks: {errors}"
    errors = worst_errors(reference, run_program(materialized(program), request))
    assert max(errors.values()) <= tolerance, f"fx, {SMALL_BLOCK}-token blocks: {errors}"


def test_sliding_window_is_shorter_than_the_test_sequences():
    """tiny-mistral's window must bite: with it dropped, the logits move far past the tolerance."""
    program = load_program("tiny-mistral", tokens_per_block=SMALL_BLOCK)
    window = program.attention[0].sliding_window
    assert 0 < window < max(len(p) for p in LONG_PROMPTS)
    import dataclasses

    request, reference = _forced("tiny-mistral", probes=())
    for node in program.graph_module.graph.nodes:
        if node.target is torch.ops.ditto.gpt_attention.default:
            node.kwargs = {**node.kwargs, "sliding_window": 0}
    program.attention = [dataclasses.replace(p, sliding_window=0) for p in program.attention]
    program.graph_module.recompile()
    errors = worst_errors(reference, run_program(materialized(program), request))
    assert errors["logits"] > 100 * bound(torch.float32), errors


@pytest.mark.needs_tensorrt
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_replay_in_half_precision_matches_fx_and_hf(model, dtype):
    request = forced_request(model, dtype, steps=4)
    replayed = get_backend("replay").run(request)
    assert replayed[0]["logits"].dtype == torch.float32
    tolerance = bound(dtype)
    for name in ("fx", "hf"):
        errors = worst_errors(get_backend(name).run(request), replayed)
        assert set(errors) >= {"logits", "layers.0.attn", "layers.1.out", "final_norm"}
        assert max(errors.values()) <= tolerance, f"replay vs {name}, {dtype}: {errors}"


ROPE_MODELS = [m for m in sorted(TINY_MODELS) if m != "tiny-gpt2"]


@pytest.mark.parametrize("model", ROPE_MODELS)
def test_a_rope_sign_flip_is_a_large_error(model):
    """Tiny weights attend sharply (query/key gain, ditto.models.tiny): rotating by -angle instead
    of +angle, on the short ragged prompts of the parity tests, moves the logits by far more than
    the tolerance on every RoPE model (near-uniform attention gave under 1x on some)."""
    program = materialized(load_program(model))
    request = forced_request(model, steps=4, probes=[])
    table = program.graph_module.rotary_cos_sin
    half = table.shape[1] // 2
    program.graph_module.rotary_cos_sin = torch.cat([table[:, :half], -table[:, half:]], dim=1)
    errors = worst_errors(get_backend("hf").run(request), run_program(program, request))
    assert errors["logits"] > 30 * bound(torch.float32), errors
