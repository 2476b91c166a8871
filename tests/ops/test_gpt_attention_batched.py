"""The batched gpt_attention kernel against the reference kernel (the specification).

Random shapes and ragged batches over several KV blocks: a context step (whole prompts)
and then generation steps (one token per sequence), GQA, MQA and plain multi-head,
sliding windows shorter than the sequence, RoPE (neox and gptj, partial) and none, in
float32, float16 and bfloat16. Each kernel runs on its own copy of the cache, and both the
outputs and the caches they wrote must agree.

Bounds: both compute scores and softmax in float32 from the same rounded inputs; they differ
only in summation order (SDPA vs einsum), so float32 agrees to ~1e-6 of the output scale
(bound 1e-5) and half precision to one rounding of the output (bf16: 2^-8 relative, bound
2e-2 of the scale; fp16 2^-11, bound 4e-3). Cache contents must be bit-identical: both round
the same float32 K/V once. Planted bugs these kill: a causal mask off by one (a query sees its
next key), a window one key too wide, K and V swapped on write, a wrong GQA head map
(repeat instead of repeat_interleave), a query padding row leaking into the output.
"""

from __future__ import annotations

import os
import random

import pytest
import torch

from ditto.ops import gpt_attention as reference_module  # noqa: F401  (registers the op)
from ditto.ops.gpt_attention import _SIGNATURE
from ditto.ops.gpt_attention_batched import batched_gpt_attention, unsupported
from ditto.ops.kv_cache import block_offset, register_pool, unregister_pool
from ditto.ops.params import GPTAttentionParams

DEVICE = os.environ.get("DITTO_TEST_DEVICE", "cpu")
BOUND = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 2e-2}


def _case(seed: int, dtype: torch.dtype, heads: tuple[int, int], window: int, rope: str):
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    H, KV = heads
    D = rng.choice([16, 32])
    tpb = rng.choice([4, 8])
    batch = rng.randint(2, 4)
    prompts = [rng.randint(1, 3 * tpb + 3) for _ in range(batch)]
    steps = 3
    max_len = max(prompts) + steps
    blocks = -(-max_len // tpb)
    layers = 2
    # blocks handed out shuffled, so a sequence's blocks are not contiguous in the pool
    order = list(range(batch * blocks))
    rng.shuffle(order)
    offsets = torch.empty((1, batch, 2, blocks), dtype=torch.int32)
    for b in range(batch):
        for j in range(blocks):
            for kv in (0, 1):
                offsets[0, b, kv, j] = block_offset(order[b * blocks + j], layers, kv)
    positions = 4 * max_len
    rotary_dim = D if rope == "rope_gpt_neox" and seed % 2 == 0 else D // 2  # partial rotary too
    inv = 1.0 / 10000 ** (torch.arange(0, rotary_dim, 2).float() / rotary_dim)
    angles = torch.arange(positions).float()[:, None] * inv[None]
    cos_sin = torch.cat((angles.cos(), angles.sin()), dim=-1)
    params = dict(
        layer_idx=1, num_heads=H, num_kv_heads=KV, head_size=D, q_scaling=rng.choice([1.0, 1.3]),
        position_embedding_type=rope, rotary_embedding_dim=rotary_dim if rope != "learned_absolute" else 0,
        rotary_embedding_base=10000.0, rotary_embedding_scale_type="none", rotary_embedding_scale=1.0,
        rotary_embedding_max_positions=positions, rotary_embedding_original_max_positions=positions,
        attn_logit_softcapping_scale=0.0, sliding_window=window, tokens_per_block=tpb,
    )
    pool_shape = (batch * blocks, layers, 2, KV, tpb, D)
    return dict(gen=gen, prompts=prompts, steps=steps, offsets=offsets, cos_sin=cos_sin, params=params,
                pool_shape=pool_shape, width=(H + 2 * KV) * D, dtype=dtype, max_len=max_len)


def _run(kernel, case, qkvs):
    """Run the kernel over a context step and the generation steps on a fresh cache."""
    # garbage (not zeros) in the pool: unwritten slots must never be read
    pool = torch.randn(case["pool_shape"], generator=torch.Generator().manual_seed(7)).to(case["dtype"]).to(DEVICE)
    pointer = register_pool(pool)
    try:
        outs = []
        batch = len(case["prompts"])
        past = [0] * batch
        for step, qkv in enumerate(qkvs):
            counts = case["prompts"] if step == 0 else [1] * batch
            total = [p + n for p, n in zip(past, counts)]
            i32 = dict(dtype=torch.int32)
            inputs = dict(
                qkv=qkv.to(DEVICE),
                sequence_length=torch.tensor(total, **i32).to(DEVICE),
                host_past_key_value_lengths=torch.tensor(past, **i32),
                host_max_attention_window_sizes=torch.full((2,), case["max_len"], **i32),
                host_sink_token_length=torch.zeros(1, **i32),
                context_lengths=torch.tensor(case["prompts"], **i32).to(DEVICE),
                cache_indirection=torch.zeros((batch, 1, case["max_len"]), **i32).to(DEVICE),
                host_request_types=torch.full((batch,), 0 if step == 0 else 1, **i32),
                kv_cache_block_offsets=case["offsets"].to(DEVICE),
                host_kv_cache_block_offsets=case["offsets"].clone(),
                host_kv_cache_pool_pointers=torch.tensor([[pointer, 0]], dtype=torch.int64),
                host_kv_cache_pool_mapping=torch.tensor([[0, 0], [0, 1]], **i32),
                rotary_inv_freq=None,
                rotary_cos_sin=case["cos_sin"].to(DEVICE),
                host_context_lengths=torch.tensor(case["prompts"], **i32),
                host_runtime_perf_knobs=torch.full((16,), -1, dtype=torch.int64),
                host_context_progress=torch.zeros(1, dtype=torch.int64),
            )
            outs.append(kernel(**inputs, **case["params"]).cpu())
            past = total
        written = _written_slots(case, pool)
        return outs, written
    finally:
        unregister_pool(pool)


def _written_slots(case, pool):
    """The cache slots both kernels must have written (layer 1 of the pool), as one tensor."""
    tpb = case["params"]["tokens_per_block"]
    units = pool.view(-1, pool.shape[3], tpb, pool.shape[5]).cpu()
    rows = []
    for b, n in enumerate(case["prompts"]):
        for pos in range(n + case["steps"]):
            for kv in (0, 1):
                unit = int(case["offsets"][0, b, kv, pos // tpb]) + 2 * 1
                rows.append(units[unit, :, pos % tpb])
    return torch.stack(rows)


def _qkvs(case):
    gen, batch = case["gen"], len(case["prompts"])
    counts = [sum(case["prompts"])] + [batch] * case["steps"]
    return [torch.randn((n, case["width"]), generator=gen).to(case["dtype"]) for n in counts]


CASES = [
    # (heads (H, KV), sliding window, position embedding)
    ((4, 4), 0, "rope_gpt_neox"),
    ((8, 2), 0, "rope_gpt_neox"),
    ((6, 1), 0, "rope_gptj"),
    ((8, 2), 5, "rope_gpt_neox"),
    ((4, 1), 3, "learned_absolute"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("heads,window,rope", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_batched_kernel_matches_the_reference(seed, heads, window, rope, dtype):
    case = _case(seed * 31 + heads[0] * 7 + window, dtype, heads, window, rope)
    qkvs = _qkvs(case)
    want, want_cache = _run(torch.ops.ditto.gpt_attention, case, qkvs)
    got, got_cache = _run(batched_gpt_attention, case, qkvs)
    assert torch.equal(got_cache, want_cache), "the kernels wrote different K/V into the cache"
    for step, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert torch.isfinite(g).all()
        scale = w.float().abs().max().item()
        error = (g.float() - w.float()).abs().max().item()
        assert error <= BOUND[dtype] * scale, f"step {step}: max abs error {error:.3g} at output scale {scale:.3g}"


def test_sliding_window_shorter_than_the_sequence_changes_the_output():
    """The window cases above must reach keys outside the window, or they test nothing."""
    case = _case(5, torch.float32, (4, 2), 2, "rope_gpt_neox")
    qkvs = _qkvs(case)
    windowed, _ = _run(batched_gpt_attention, case, qkvs)
    case["params"]["sliding_window"] = 0
    full, _ = _run(batched_gpt_attention, case, qkvs)
    assert max((a - b).abs().max().item() for a, b in zip(windowed, full)) > 1e-2


def test_parameters_it_does_not_implement_run_the_reference():
    case = _case(3, torch.float32, (4, 2), 0, "rope_gpt_neox")
    case["params"]["attn_logit_softcapping_scale"] = 0.5  # tiny cap: far from uncapped
    qkvs = _qkvs(case)
    got, _ = _run(batched_gpt_attention, case, qkvs)
    want, _ = _run(torch.ops.ditto.gpt_attention, case, qkvs)
    for g, w in zip(got, want):
        assert (g - w).abs().max().item() <= 1e-6 * max(1.0, w.abs().max().item())


def test_unknown_parameters_away_from_their_default_are_unsupported():
    """A parameter added to the op later (e.g. ALiBi, sinks) is only accepted at its default."""
    import inspect

    def op(qkv, sequence_length, num_heads: int, alibi: bool = False, sinks=None, attn_logit_softcapping_scale=0.0):
        ...

    signature = inspect.signature(op)
    base = dict(qkv=None, sequence_length=None, num_heads=4)
    assert unsupported(base, signature) == []
    assert unsupported({**base, "alibi": False, "sinks": None}, signature) == []
    assert unsupported({**base, "alibi": True}, signature) == ["alibi=True"]
    assert unsupported({**base, "sinks": torch.zeros(4)}, signature)[0].startswith("sinks=")
    assert unsupported({**base, "attn_logit_softcapping_scale": 30.0}, signature) == ["attn_logit_softcapping_scale=30.0"]
    # what ditto's attention pass produces by default is implemented
    plain = GPTAttentionParams(layer_idx=0, num_heads=4, num_kv_heads=2, head_size=16, position_embedding_type="rope_gpt_neox")
    assert unsupported(plain.as_dict(), _SIGNATURE) == []


def test_fx_runs_the_batched_kernel_only_where_it_implements_the_node():
    from ditto.ops.gpt_attention_batched import batched_gpt_attention_unchecked
    from ditto.pipeline import load_program
    from ditto.runtime.fx import runnable_graph

    program = load_program("tiny-llama", torch.float32)
    nodes = [n for n in program.graph_module.graph.nodes if n.target == torch.ops.ditto.gpt_attention.default]
    assert len(nodes) == 2
    nodes[1].kwargs = {**nodes[1].kwargs, "attn_logit_softcapping_scale": 30.0}
    targets = [n.target for n in runnable_graph(program.graph_module, {}, "batched").graph.nodes
               if n.op == "call_function" and "gpt_attention" in str(n.target)]
    assert targets == [batched_gpt_attention_unchecked, torch.ops.ditto.gpt_attention.default]
    reference = [n.target for n in runnable_graph(program.graph_module, {}, "reference").graph.nodes
                 if n.op == "call_function" and "gpt_attention" in str(n.target)]
    assert reference == [torch.ops.ditto.gpt_attention.default] * 2
