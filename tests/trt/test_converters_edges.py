"""Converter cases the main converter tests pass over, each one a slip that would otherwise go
unnoticed (named per case): ties in comparisons, uneven chunks, reductions over every dim
given as `()`, addmm's alpha and beta, a strided arange with a dynamic end. Checked as in
tests/converter_check.py: real TensorRT-RTX network, TensorRT's shape inference, an engine
build, and replay against torch on several sizes."""

import pytest
import torch

from tests.converter_check import Fn, N, check, rows

EDGES = {
    # <= and >= on values that tie: dropping the EQUAL half of the comparison shows
    "compare_ties": lambda m, x: (x.floor() <= 0).float() + (x.floor() >= 1).float() * 2 + (x.floor() < 0).float() * 4,
    # 8 columns in chunks of 3, 3, 2: a width rounded down would give 2, 2, 2, 2
    "uneven_chunks": lambda m, x: torch.cat([c.sum(-1, keepdim=True) * (i + 1) for i, c in enumerate(x.chunk(3, dim=1))], -1),
    # amax/amin over dim=() reduce every dim (torch), not none
    "reduce_all_by_empty_dims": lambda m, x: torch.amax(x, dim=()) - torch.amin(x, dim=()) + x,
    "addmm_alpha_beta": lambda m, x: torch.addmm(m.b, x, m.w.t(), beta=0.5, alpha=2.0),
    # n / 2 rounded up positions for odd n
    "strided_dynamic_arange": lambda m, x: torch.arange(0, x.shape[0], 2).float().sum() + x,
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_converter_edge(name):
    module = Fn(EDGES[name], w=torch.randn(4, 8), b=torch.randn(4))
    check(module, (rows(5),), ({0: N},), others=[(rows(3, seed=3),), (rows(6, seed=4),)], rtol=1e-5, atol=1e-5)
