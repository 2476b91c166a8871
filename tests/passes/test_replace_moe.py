"""`replace_moe`: each mixture-of-experts block of a tiny Mixtral (router, top-k, experts, combine)
becomes one `ditto.moe` op with the same outputs."""

import torch

from ditto.graph.nodes import ancestors
from tests.passes._helpers import check_pass, model_context

# the op sums the experts' contributions in its own order
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def case():
    ctx, feeds = model_context("tiny-mixtral")
    return dict(ctx=ctx, feeds=feeds, pass_name="replace_moe", matches=2, tolerance=TOLERANCE)


def test_each_moe_block_becomes_one_moe_op():
    c = case()
    check_pass(**c)
    assert sum(n.target is torch.ops.ditto.moe.default for n in c["ctx"].graph.nodes) == 2
    # the routing the op replaced reaches no output any more (in-place leftovers keep it in the graph
    # until functionalize_inplace, which runs first in the pipeline, has made them removable)
    output = next(n for n in c["ctx"].graph.nodes if n.op == "output")
    assert not any(n.target is torch.ops.aten.topk.default for n in ancestors(output))
