"""The parity check must catch a broken pass: each case breaks what one pass produced the way a
bug in it would, and the fx-vs-HF comparison (the same as test_core_parity) must fail."""

import dataclasses

import pytest
import torch

import ditto.passes.manager as manager
from ditto.errors import DittoError
from ditto.models.weights import Concat
from ditto.pipeline import load_program
from ditto.runtime.backend import get_backend
from ditto.runtime.fx import run_program
from harness.comparison import first_divergence
from tests.parity import FLOAT32_BOUND, forced_request, materialized, verdict, worst_errors

aten = torch.ops.aten


def _attention_nodes(ctx):
    return [n for n in ctx.graph.nodes if n.target == torch.ops.ditto.gpt_attention.default]


def wrong_rope_style(ctx):
    for node in _attention_nodes(ctx):
        node.kwargs = {**node.kwargs, "position_embedding_type": "rope_gptj"}


def wrong_rotary_dim(ctx):
    for node in _attention_nodes(ctx):
        node.kwargs = {**node.kwargs, "rotary_embedding_dim": node.kwargs["rotary_embedding_dim"] // 2}


def last_tokens_of_other_sequences(ctx):
    sub = next(n for n in ctx.graph.nodes if n.target == aten.sub.Tensor and n.args[0].name == "last_token_ids")
    with ctx.graph.inserting_after(sub):
        flipped = ctx.graph.call_function(aten.flip.default, (sub, [0]))
    sub.replace_all_uses_with(flipped, delete_user_cb=lambda user: user is not flipped)


def swapped_fused_parts(ctx):
    name = next(n for n in ctx.weights.names() if "q_k_v" in n and n.endswith("weight"))
    spec = ctx.weights.spec(name)
    q, k, v = spec.source.parts
    ctx.weights.add(name, dataclasses.replace(spec, source=Concat((q, v, k), spec.source.dim)))


def positions_from_tokens(ctx):
    cast = next(n for n in ctx.graph.nodes if n.op == "call_function" and n.args
                and getattr(n.args[0], "target", None) == aten.unsqueeze.default and n.args[0].args[0].name == "position_ids")
    unsqueeze = cast.args[0]
    unsqueeze.args = (ctx.engine_inputs["input_ids"], 0)


# (pass, mutation, model, refusal): a mutation is caught by the parity check, or, where `refusal` is
# given, by the pipeline refusing the mutated graph with a DittoError matching it (positions taken
# from the tokens also feed gpt2's mask, which the attention pass refuses as token-dependent).
MUTATIONS = [
    ("replace_attention", wrong_rope_style, "tiny-llama", None),
    ("replace_attention", wrong_rotary_dim, "tiny-qwen2", None),
    ("gather_last_token", last_tokens_of_other_sequences, "tiny-mistral", None),
    ("fuse_parallel_linears", swapped_fused_parts, "tiny-llama", None),
    ("engine_inputs", positions_from_tokens, "tiny-gpt2", "depends on the token values|computed from token values"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("pass_name, mutate, model, refusal", MUTATIONS, ids=[m[1].__name__ for m in MUTATIONS])
def test_broken_pass_is_caught(monkeypatch, pass_name, mutate, model, refusal, dtype):
    original = manager.PASSES[pass_name]

    def broken(ctx):
        count = original(ctx)
        if count:
            mutate(ctx)
        return count

    monkeypatch.setitem(manager.PASSES, pass_name, broken)
    if refusal is not None:
        with pytest.raises(DittoError, match=refusal):
            load_program(model, dtype)
        return
    program = load_program(model, dtype)
    materialized(program)
    request = forced_request(model, dtype, steps=3, probes=[])
    reference, got = get_backend("hf").run(request), run_program(program, request)
    if dtype == torch.float32:  # the fixed rule, missed by orders of magnitude
        errors = worst_errors(reference, got)
        assert errors["logits"] > 100 * FLOAT32_BOUND, errors
    else:  # the calibrated rule: against the float32 oracle within hf's bfloat16 noise
        assert first_divergence(verdict(request, reference, got)) is not None


def test_skipped_attention_pass_fails_fast(monkeypatch):
    monkeypatch.setitem(manager.PASSES, "replace_attention", lambda ctx: 0)
    with pytest.raises(DittoError, match="no pattern matched 2 node"):
        load_program("tiny-llama")
