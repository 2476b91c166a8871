"""`engine_inputs`: the graph takes a `trtllm-build` engine's inputs; HF's [1, num_tokens] rows
are fed from the packed int32 engine inputs, so the logits do not change."""

from ditto.trtllm.inputs import ENGINE_INPUTS
from tests.passes._helpers import EXACT, check_pass, model_context


def case():
    ctx, feeds = model_context("tiny-llama")
    return dict(ctx=ctx, feeds=feeds, pass_name="engine_inputs", matches=1, tolerance=EXACT)


def test_the_graph_takes_the_engine_inputs_in_order():
    c = case()
    check_pass(**c)
    placeholders = [n.name for n in c["ctx"].graph.nodes if n.op == "placeholder"]
    assert placeholders == [spec.name for spec in ENGINE_INPUTS]
