"""Converters on small exported modules: real TensorRT-RTX networks, checked three ways
(tests/converter_check.py): the graph's dtypes and ranks, TensorRT's builder, replay against torch.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.export import Dim

from ditto.errors import DittoError
from tests.converter_check import Fn, N, check, convert, rows, trt

# ---- elementwise --------------------------------------------------------------------------------
ELEMENTWISE = {
    "add_sub_alpha": lambda m, x: torch.add(x, x * 2, alpha=3) - torch.sub(x, 1.5, alpha=2),
    "mul_div_scalars": lambda m, x: (x * 3) / (x.abs() + 1) + 2 / (x * x + 1),
    "rsub": lambda m, x: 1 - x,
    "pow": lambda m, x: x.pow(2) + x.abs().pow(1.5) + torch.pow(x.abs() + 1, x / 4),
    "unary": lambda m, x: torch.rsqrt(x.abs() + 1) + torch.sqrt(x.abs()) + torch.exp(x / 4) - torch.neg(x) + x.cos() * x.sin(),
    "activations": lambda m, x: F.silu(x) + F.gelu(x) + F.gelu(x, approximate="tanh") + F.relu(x) + x.tanh() + x.sigmoid(),
    "min_max_clamp": lambda m, x: torch.maximum(x, x.flip(0) if False else x * 0.5) + torch.minimum(x, -x) + x.clamp(-1, 1) + x.clamp(min=0.5),
    "where_masked_fill": lambda m, x: torch.where(x > 0, x, 0.1 * x) + x.masked_fill(x <= -1, -3.0) + torch.where(x >= 1, 2.0, x),
    "compare_logic": lambda m, x: ((x > 0) & (x < 1)) | (x == x.floor()) | ~(x != 0.5),
    "int_promotion": lambda m, x: (x.abs() * 4).to(torch.int32) / 3 + (x > 0).to(torch.int64) * 2,
}


# more of the core ATen set that architectures emit (RMSNorm with square, ReLU^2, softplus gates, ...)
ELEMENTWISE_MORE = {
    "square": lambda m, x: torch.square(x) + torch.square((x.abs() * 3).to(torch.int32)).float(),
    "remainder_pow_scalar": lambda m, x: torch.remainder(x, 0.7) + (x.abs() * 4).to(torch.int64).remainder(3) + torch.pow(2.0, x),
    "unary_more": lambda m, x: torch.log1p(x.abs()) + torch.expm1(x / 4) + x.sign() + x.trunc() + x.round() + torch.atan(x) + torch.tan(x / 4)
    + torch.sinh(x / 4) + torch.cosh(x / 4),
    "activations_more": lambda m, x: F.leaky_relu(x, 0.2) + F.elu(x, 0.5) + F.softplus(x) + F.softplus(x, beta=2.0) + F.hardtanh(x, -0.5, 2.0)
    + F.hardsigmoid(x) + F.hardswish(x) + F.mish(x) + F.relu6(x),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_MORE))
def test_elementwise_more(name):
    check(Fn(ELEMENTWISE_MORE[name]), (rows(5),), ({0: N},), others=[(rows(9, seed=1),)])


def test_inplace_ops_are_made_out_of_place():
    def fn(m, x):
        y = x.clone()
        y.mul_(2).add_(1)
        z = y * 0.5  # reads the mutated y
        z.masked_fill_(x > 1, 0.0)
        return z + y

    converted, gm = convert(Fn(fn), (rows(5),), ({0: N},))
    targets = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert not any(t.split(".")[-2].endswith("_") for t in targets if t.startswith("aten.")), targets
    check(Fn(fn), (rows(5),), ({0: N},), others=[(rows(9, seed=1),)])


def test_inplace_op_on_a_slice_converts_as_a_concatenation():
    def fn(m, x):
        y = x * 2
        y[:, 1:3].mul_(3)  # changes y through a slice: written back by concatenation
        return y

    check(Fn(fn), (rows(5),), ({0: N},), others=[(rows(9, seed=1),)])


def test_inplace_op_on_a_strided_slice_and_a_select_converts_as_scatters():
    def fn(m, x):
        y = x * 2
        row = y[:, 1]  # a select, read again after the writes
        y[:, 1::3].mul_(3)  # a strided slice: slice_scatter
        row.add_(1)  # a select: select_scatter
        return y + row[:, None]

    check(Fn(fn), (rows(5),), ({0: N},), others=[(rows(9, seed=1),)])


class _MutatesAView(torch.nn.Module):
    """Its own forward (not Fn's), so that the line export records is in this file."""

    def forward(self, x):
        y = x * 2
        y.t()[:2].mul_(3)  # changes y through a transpose
        return y


def test_inplace_op_on_a_view_is_refused_naming_the_line():
    with pytest.raises(DittoError, match=r"in-place op mul_ .*test_converters.py.*a view of"):
        convert(_MutatesAView(), (rows(5),), {0: N})  # forward(x): one spec, not a tuple for *args


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise(name):
    check(Fn(ELEMENTWISE[name]), (rows(5),), ({0: N},), others=[(rows(9, seed=1),)])


def test_bias_broadcast_and_half_precision():
    module = Fn(lambda m, x: (x * m.w + m.b).to(torch.float32), w=torch.randn(8).half(), b=torch.randn(8).half())
    check(module, (rows(5, dtype=torch.float16),), ({0: N},), others=[(rows(3, dtype=torch.float16),)], rtol=1e-3, atol=1e-3)


# ---- reductions and normalisation ------------------------------------------------------------
REDUCTIONS = {
    "mean_sum_amax": lambda m, x: x.mean(-1, keepdim=True) + x.sum(dim=1, keepdim=True) + x.amax(-1, keepdim=True) + x.sum(),
    "softmax": lambda m, x: torch.softmax(x, dim=-1) + F.softmax(x * 2, dim=0),
    "layer_norm": lambda m, x: F.layer_norm(x, (8,), m.w, m.b, eps=1e-5),
    "rms_norm": lambda m, x: F.rms_norm(x, (8,), m.w, eps=1e-6),
}


REDUCTIONS_MORE = {
    "cumsum": lambda m, x: torch.cumsum(x, 0) + torch.cumsum(x, dim=-1) + (x > 0).cumsum(-1),
    "var_prod": lambda m, x: x.var(-1, keepdim=True) + torch.var(x, 1, correction=0, keepdim=True) + x.prod(-1, keepdim=True),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS_MORE))
def test_reductions_more(name):
    check(Fn(REDUCTIONS_MORE[name]), (rows(5),), ({0: N},), others=[(rows(3, seed=3),)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reductions(name):
    module = Fn(REDUCTIONS[name], w=torch.randn(8), b=torch.randn(8))
    check(module, (rows(5),), ({0: N},), others=[(rows(3, seed=3),)])


def test_layer_norm_in_half_precision_computes_in_float32():
    module = Fn(REDUCTIONS["layer_norm"], w=torch.randn(8).half(), b=torch.randn(8).half())
    check(module, (rows(5, dtype=torch.float16),), ({0: N},), rtol=1e-3, atol=2e-3)


# ---- matrix products -----------------------------------------------------------------------------
def test_linear_addmm_mm_bmm_matmul():
    def fn(m, x, y):
        a = F.linear(x, m.w, m.b)  # [n, 4]
        b = torch.addmm(m.b, x, m.w.t())
        c = torch.mm(x, m.w.t()) + torch.matmul(x.unsqueeze(0), m.w.t())[0]
        d = torch.bmm(y, y.transpose(1, 2)).sum(-1)  # [2, n]
        return a + b + c, d

    module = Fn(fn, w=torch.randn(4, 8), b=torch.randn(4))
    y = torch.randn(2, 5, 3)
    check(module, (rows(5), y), ({0: N}, {1: N}), others=[(rows(7), torch.randn(2, 7, 3))], rtol=1e-4, atol=1e-4)


def test_bfloat16_weights_are_constants_without_numpy():
    module = Fn(lambda m, x: F.linear(x, m.w).float(), w=torch.randn(4, 8).bfloat16())
    network = check(module, (rows(5, dtype=torch.bfloat16),), ({0: N},), rtol=1e-2, atol=1e-2).network
    weights = [network.get_layer(i) for i in range(network.num_layers) if network.get_layer(i).type == trt.LayerType.CONSTANT]
    assert any(layer.get_output(0).dtype == trt.bfloat16 for layer in weights)


# ---- shapes: views, symbolic sizes, expand -----------------------------------------------------
SHUFFLES = {
    "view_symbolic": lambda m, x: x.view(x.shape[0], 2, 4).permute(2, 0, 1).reshape(4, -1),
    "sym_arithmetic": lambda m, x: x.reshape(x.shape[0] * 2, 4).sum(-1)[: x.shape[0] + 1] * (x.shape[0] - 1),
    "unsqueeze_squeeze": lambda m, x: x.unsqueeze(1).unsqueeze(-1).squeeze(-1).squeeze(1).unsqueeze(0).squeeze(),
    "transpose_t_flatten": lambda m, x: x.t().transpose(0, 1).contiguous().clone().flatten() * 1.0,
    "numpy_T": lambda m, x: x.reshape(x.shape[0], 2, 4).T.reshape(8, -1).T + x.T.T,
    "expand": lambda m, x: x[:, :1].expand(-1, 3) + x.mean(0, keepdim=True).expand(x.shape[0], 8)[:, :3],
    # Beam's attention output; static and dynamic target shapes
    "view_as": lambda m, x: x.reshape(-1, 2, 4).view_as(x * 2) + x[:2].reshape(4, 4).view_as(x[:2]).sum(),
}


REPEATS = {
    # GPT-J's interleaved RoPE spreads cos/sin with repeat_interleave
    "repeat_interleave": lambda m, x: torch.repeat_interleave(x, 2, dim=1)[:, :8] + torch.repeat_interleave(x[:, :4], 2, dim=-1)
    + torch.repeat_interleave(x, 2, dim=0)[: x.shape[0]],
    "repeat_interleave_flat": lambda m, x: torch.repeat_interleave(x[:2, :4], 3).reshape(3, 8).sum(0) + x,
    "repeat": lambda m, x: x.repeat(1, 2)[:, 3:11] + x.repeat(2, 1)[: x.shape[0]] + x[:, :4].repeat(2, 1, 2)[1],
}


@pytest.mark.parametrize("name", sorted(REPEATS))
def test_repeats(name):
    check(Fn(REPEATS[name]), (rows(4),), ({0: N},), others=[(rows(6, seed=2),), (rows(3, seed=4),)])


def test_complex_rope_lowered_to_real():
    # Llama 4 style: freqs_cis = polar(1, positions * inv_freq); q rotated as a complex product
    def fn(m, x):
        angles = torch.arange(x.shape[0]).float()[:, None] * m.inv_freq  # [n, 4]
        freqs_cis = torch.polar(torch.ones_like(angles), angles) * 1.0
        pairs = torch.view_as_complex(x.reshape(x.shape[0], 1, 4, 2))
        return torch.view_as_real(pairs * freqs_cis.unsqueeze(1)).flatten(2).reshape(x.shape[0], 8)

    module = Fn(fn, inv_freq=torch.tensor([1.0, 0.1, 0.01, 0.001]))
    converted, gm = convert(module, (rows(5),), ({0: N},))
    assert not any(n.meta["val"].dtype.is_complex for n in gm.graph.nodes if isinstance(n.meta.get("val"), torch.Tensor))
    check(module, (rows(5),), ({0: N},), others=[(rows(9, seed=1),)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SHUFFLES))
def test_shuffles(name):
    check(Fn(SHUFFLES[name]), (rows(4),), ({0: N},), others=[(rows(6, seed=2),), (rows(3, seed=4),)])


def test_symbolic_sizes_are_shape_tensors_not_constants():
    network = convert(Fn(SHUFFLES["view_symbolic"]), (rows(4),), ({0: N},))[0].network
    assert tuple(network.get_output(0).shape) == (4, -1)
    kinds = {network.get_layer(i).type for i in range(network.num_layers)}
    assert trt.LayerType.SHAPE in kinds


# ---- slicing, gathers, joins -----------------------------------------------------------------------
SLICING = {
    "slices": lambda m, x: torch.cat([x[:, 1:3], x[:, -2:], x[:, ::3][:, :2], x[:, 2:-4]], dim=1) + x[-2:].sum(),
    "dynamic_dim_slices": lambda m, x: x[1:].sum(0) + x[:-1].sum(0) + x[::2].sum(0) + x[-1] + x.narrow(1, 2, 3).sum(-1).sum(),
    "select": lambda m, x: x.select(1, 2)[:, None] + x[:, -1:] + x[0] + x[-1],
    "split_chunk": lambda m, x: sum(p.sum(-1) for p in torch.split(x, 3, dim=1)) + sum(c.mean(-1) for c in x.chunk(2, dim=1))
    + torch.split_with_sizes(x, [5, 3], dim=1)[1].sum(-1),
    "unbind": lambda m, x: sum(c * (i + 1) for i, c in enumerate(x.unbind(1))) + x[:, :3].unbind(-1)[-1],
    "stack_cat": lambda m, x: torch.stack([x, x * 2], dim=1).reshape(x.shape[0], -1) + torch.cat([x, x], -1),
}


@pytest.mark.parametrize("name", sorted(SLICING))
def test_slicing(name):
    check(Fn(SLICING[name]), (rows(4),), ({0: N},), others=[(rows(6, seed=5),), (rows(3, seed=6),)])


def test_gathers():
    def fn(m, ids, x):
        return F.embedding(ids, m.table) + torch.index_select(x, 0, ids) + x[ids]

    module = Fn(fn, table=torch.randn(10, 8))
    ids = torch.tensor([3, 0, 2])
    check(module, (ids, rows(4)), ({0: N}, {0: Dim("m", min=4, max=64)}), others=[(torch.tensor([1]), rows(5))])


def test_topk_and_scatter():
    """Dense routing as Llama 4 spells it: the k largest scattered back into a -inf row, then
    sigmoid; and a smallest-k with its int64 indices. Kills: MAX/MIN swapped, the top-k or the
    scatter on the wrong axis, indices left int32."""

    def fn(m, x):
        values, ids = torch.topk(x, 3, dim=1)
        low, low_ids = torch.topk(x, 2, dim=-1, largest=False)
        dense = torch.full_like(x, float("-inf")).scatter_(1, ids, values)
        return dense.sigmoid() + ids.sum(-1, keepdim=True) + low.sum(-1, keepdim=True), low_ids

    check(Fn(fn), (rows(5),), ({0: N},), others=[(rows(9, seed=1),)])


def test_topk_beyond_tensorrt_limits_is_refused():
    with pytest.raises(DittoError, match=r"no converter for node topk .*k=4000 above TensorRT's TopK limit"):
        convert(Fn(lambda m, x: torch.topk(x, 4000, dim=-1).values), (torch.randn(2, 4096),))


# ---- casts and creation ------------------------------------------------------------------------------
def test_casts():
    def fn(m, x, y):
        return x.half().float() + x.to(torch.bfloat16).to(torch.float32) + y.type_as(x)[:, None], x.abs().to(torch.int32)

    check(Fn(fn), (rows(4), torch.arange(4)), ({0: N}, {0: N}), rtol=1e-2, atol=1e-2)


CREATION = {
    "static": lambda m, x: x + torch.ones(8) + torch.zeros(1, 8) + torch.full((8,), 2.5),
    "dynamic_size": lambda m, x: x + torch.ones(x.shape[0], 8) * 3 + x.new_zeros(x.shape[0], 1) + torch.full_like(x, 0.5),
    "arange": lambda m, x: x * torch.arange(x.shape[0]).unsqueeze(-1) + torch.arange(2, 10).float() + torch.zeros_like(x),
}


@pytest.mark.parametrize("name", sorted(CREATION))
def test_creation(name):
    check(Fn(CREATION[name]), (rows(4),), ({0: N},), others=[(rows(7, seed=7),)])


# ---- naming and bad input ----------------------------------------------------------------------------
def test_every_layer_is_named_after_its_fx_node():
    converted, gm = convert(Fn(SLICING["split_chunk"]), (rows(4),), ({0: N},))
    network = converted.network
    nodes = {n.name for n in gm.graph.nodes}
    names = [network.get_layer(i).name for i in range(network.num_layers)]
    assert all(name.split("/")[0] in nodes for name in names), [n for n in names if n.split("/")[0] not in nodes]


class _Cumprod(torch.nn.Module):
    """Its own forward (not Fn's), so that the line export records is in this file."""

    def forward(self, x):
        return torch.cumprod(x, 0)


def test_op_without_converter_names_node_target_and_source_line():
    with pytest.raises(DittoError, match=r"no converter for node cumprod \(target aten.cumprod.default\) from File .*test_converters.py"):
        convert(_Cumprod(), (rows(4),))


def test_capability_check_refuses_with_its_reason():
    with pytest.raises(DittoError, match=r"node bitwise_not \(target aten.bitwise_not.default: a bitwise op on torch.int64 \(bool only\)\)"):
        convert(Fn(lambda m, x: ~x), (torch.arange(4),))
