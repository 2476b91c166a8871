"""`remove_export_artifacts`: identity ops (contiguous, clone) and inference dropout disappear."""

import torch
import torch.nn.functional as F

from tests.passes._helpers import EXACT, check_pass, module_context

aten = torch.ops.aten


class Artifacts(torch.nn.Module):
    def forward(self, x):
        y = F.dropout(x.transpose(0, 1).contiguous(), 0.5, training=False)
        return y.clone() * 2


def case():
    ctx, feeds = module_context(Artifacts().eval(), torch.randn(3, 4))
    # contiguous, dropout(train=False), clone
    return dict(ctx=ctx, feeds=feeds, pass_name="remove_export_artifacts", matches=3, tolerance=EXACT)


def test_identity_ops_and_inference_dropout_disappear():
    c = case()
    check_pass(**c)
    left = {n.target for n in c["ctx"].graph.nodes if n.op == "call_function"}
    assert left == {aten.transpose.int, aten.mul.Tensor}
