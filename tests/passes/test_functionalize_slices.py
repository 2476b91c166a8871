"""In-place writes into slices of a tensor the graph owns (ditto/passes/functionalize.py):
rewritten as concatenations, later readers of the base read the written value; anything
the rewrite cannot express exactly stays a DittoError naming the source line.

Planted bugs these kill: later readers of the base left on the unwritten base (the middle
write's sum is off), the pieces concatenated in the wrong order or the slice bounds off by
one (exact comparison), an overwritten new_empty left in the graph (its garbage would reach
TensorRT), a slice read after the write left on its unwritten value."""

import pytest
import torch

from ditto.errors import DittoError
from ditto.passes.functionalize_inplace import functionalize_graph

aten = torch.ops.aten


def _functional(module, *args):
    gm = torch.export.export(module, args).module()
    for node in [n for n in gm.graph.nodes if n.op == "call_module"]:  # export's guard call
        gm.graph.erase_node(node)
    count = functionalize_graph(gm.graph)
    gm.recompile()
    return gm, count


def _targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


class KeyAssembly(torch.nn.Module):
    """DeepSeek-V2/V3's key: an empty tensor filled by two slice copies."""

    def forward(self, k_nope, k_rot):
        key = k_nope.new_empty(*k_nope.shape[:-1], 12)
        key[..., :8].copy_(k_nope)
        key[..., 8:].copy_(k_rot.expand(*k_nope.shape[:-1], -1))
        return key * 2


class MiddleWrite(torch.nn.Module):
    """A write into the middle of a computed tensor, read whole afterwards."""

    def forward(self, x, y):
        base = x * 3.0
        base[:, 2:4].mul_(y)
        return base + 1


def test_new_empty_filled_by_slice_copies_becomes_one_concatenation():
    k_nope, k_rot = torch.randn(2, 3, 5, 8), torch.randn(2, 1, 5, 4)
    gm, count = _functional(KeyAssembly(), k_nope, k_rot)
    assert count == 2
    assert aten.new_empty.default not in _targets(gm) and aten.copy_.default not in _targets(gm)
    assert _targets(gm).count(aten.cat.default) == 1
    torch.testing.assert_close(gm(k_nope, k_rot), KeyAssembly()(k_nope, k_rot), rtol=0, atol=0)


def test_write_into_the_middle_is_read_by_later_readers_of_the_base():
    x, y = torch.randn(3, 6), torch.randn(3, 2)
    gm, count = _functional(MiddleWrite(), x, y)
    assert count == 1 and aten.mul_.Tensor not in _targets(gm)
    torch.testing.assert_close(gm(x, y), MiddleWrite()(x, y), rtol=0, atol=0)


def test_written_slice_read_after_the_write_reads_the_written_value():
    class ReadSliceAfter(torch.nn.Module):
        def forward(self, x):
            base = x * 1.0
            part = base[:, :2]
            part.add_(1)
            again = base[:, 1:3]  # a new slice of the base, after the write
            return base * part.sum() + again.sum()

    x = torch.randn(3, 4)
    gm, _ = _functional(ReadSliceAfter(), x)
    torch.testing.assert_close(gm(x), ReadSliceAfter()(x), rtol=1e-6, atol=1e-6)


def test_strided_slice_and_select_writes_read_through_an_earlier_view():
    class MRopeRecomposition(torch.nn.Module):  # Cohere Compass: freqs[0][..., 1::3] = freqs[1][..., 1::3]
        def forward(self, x):
            freqs = x * 1.0
            first = freqs[0]
            for axis in (1, 2):
                first[..., axis::3] = freqs[axis, ..., axis::3]
            return torch.cat((first, first), dim=-1) + freqs.sum()

    x = torch.randn(3, 2, 9)
    gm, count = _functional(MRopeRecomposition(), x)
    assert count == 2 and aten.slice_scatter.default in _targets(gm)
    torch.testing.assert_close(gm(x), MRopeRecomposition()(x), rtol=0, atol=0)


def test_write_through_a_transpose_read_afterwards_stays_refused():
    class Transposed(torch.nn.Module):
        def forward(self, x):
            base = x * 1.0
            base.t()[:2].copy_(x[:3, :2].t())
            return base

    with pytest.raises(DittoError, match=r"test_functionalize_slices.py.*a view of"):
        _functional(Transposed(), torch.randn(3, 4))


def test_view_whose_base_is_never_read_again_is_rewritten_out_of_place():
    class PermutedAdd(torch.nn.Module):  # Gemma 3n's altup prediction
        def forward(self, x, y):
            p = torch.matmul(x, y).permute(1, 0)
            p += x.sum()
            return p * 2

    x, y = torch.randn(3, 4), torch.randn(4, 5)
    gm, count = _functional(PermutedAdd(), x, y)
    assert count == 1
    torch.testing.assert_close(gm(x, y), PermutedAdd()(x, y), rtol=0, atol=0)


def test_view_mutation_is_refused_when_its_base_is_read_afterwards():
    class BaseReadAfter(torch.nn.Module):
        def forward(self, x, y):
            base = torch.matmul(x, y)
            p = base.permute(1, 0)
            p += 1.0
            return base * 2  # sees the +1 through the view

    with pytest.raises(DittoError, match=r"test_functionalize_slices.py.*a view of matmul"):
        _functional(BaseReadAfter(), torch.randn(3, 4), torch.randn(4, 5))
