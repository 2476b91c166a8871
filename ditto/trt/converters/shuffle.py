"""Shape and layout converters: views, (un)squeeze, permutes, expand, casts, copies.

View sizes may hold symbolic sizes (int64 [1] shape tensors from `sym_size` and symbolic
arithmetic): the reshape then takes a shape tensor, so the engine keeps the dynamic dim.
"""

from __future__ import annotations

import torch

from ditto.trt.context import TRT_DTYPE_NAMES
from ditto.trt.converters import converter
from ditto.trt.converters.symbolic import size_op

aten = torch.ops.aten


def dims_of(ctx, x) -> list:
    """x's dims: ints where static, int64 [1] tensors where dynamic."""
    return [d if d >= 0 else ctx.dim(x, i) for i, d in enumerate(x.shape)]


@converter(aten.view.default, aten.reshape.default, aten._unsafe_view.default)
def reshape(ctx, x, sizes):
    return ctx.reshape(x, list(sizes))


@converter(aten.view_as.default)
def view_as(ctx, x, other):
    """x reshaped to other's shape (Beam's attention output)."""
    dims = list(other.shape)
    if all(d >= 0 for d in dims):
        return ctx.reshape(x, dims)
    shape = ctx.shape_of(other)
    layer = ctx.network.add_shuffle(x)
    layer.set_input(1, shape)
    layer.zero_is_placeholder = False
    return ctx.out(layer, "view_as")


def _axes(ctx, axes: list[int]):
    return ctx.constant(torch.tensor(axes, dtype=torch.int64), "axes")


@converter(aten.unsqueeze.default)
def unsqueeze(ctx, x, dim):
    axes = _axes(ctx, [dim % (len(x.shape) + 1)])
    return ctx.out(ctx.network.add_unsqueeze(x, axes), "unsqueeze")


def _squeezable(x, dims) -> list[int]:
    """torch squeezes only dims of size 1; a dynamic dim is assumed not to be 1 (as export does)."""
    rank = len(x.shape)
    dims = range(rank) if dims is None else [dims] if isinstance(dims, int) else dims
    return sorted({d % rank for d in dims if x.shape[d % rank] == 1})


@converter(aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims)
def squeeze(ctx, x, dims=None):
    axes = _squeezable(x, dims)
    if not axes:
        return x
    return ctx.out(ctx.network.add_squeeze(x, _axes(ctx, axes)), "squeeze")


@converter(aten.permute.default)
def permute(ctx, x, perm):
    return ctx.transpose(x, [p % len(x.shape) for p in perm])


@converter(aten.transpose.int)
def transpose(ctx, x, a, b):
    perm = list(range(len(x.shape)))
    a, b = a % len(perm), b % len(perm)
    perm[a], perm[b] = perm[b], perm[a]
    return ctx.transpose(x, perm)


@converter(aten.t.default)
def t(ctx, x):
    return x if len(x.shape) < 2 else ctx.transpose(x, [1, 0])


@converter(aten.numpy_T.default)
def numpy_t(ctx, x):
    """`x.T`: every dim reversed."""
    return ctx.transpose(x, list(reversed(range(len(x.shape))))) if len(x.shape) > 1 else x


def expand_to(ctx, x, sizes: list):
    """Broadcast x to `sizes` (ints, -1 = keep, int64 [1] tensors) with a stride-0 slice."""
    x = ctx.to_rank(x, len(sizes))
    target = [dims_of(ctx, x)[i] if (isinstance(s, int) and s == -1) else s for i, s in enumerate(sizes)]
    strides = [0 if (x.shape[i] == 1 and not (isinstance(s, int) and s == 1)) else 1 for i, s in enumerate(target)]
    rank = len(sizes)
    if all(isinstance(s, int) for s in target):
        return ctx.out(ctx.network.add_slice(x, (0,) * rank, tuple(target), tuple(strides)), "expand")
    shape = ctx.shape_tensor(target)
    layer = ctx.network.add_slice(x, (0,) * rank, (1,) * rank, tuple(strides))
    layer.set_input(2, shape)
    return ctx.out(layer, "expand")


@converter(aten.expand.default)
def expand(ctx, x, sizes, implicit=False):
    return expand_to(ctx, x, list(sizes))


@converter(aten.expand_as.default)
def expand_as(ctx, x, other):
    return expand_to(ctx, x, dims_of(ctx, other))


# ---- casts and copies (a copy is the same value in a network) -------------------------------
def _dtype_supported(node) -> str | None:
    dtype = node.kwargs.get("dtype")
    if dtype is None:
        dtype = next((a for a in node.args[1:] if isinstance(a, torch.dtype)), None)
    return None if dtype is None or dtype in TRT_DTYPE_NAMES else f"dtype {dtype} has no TensorRT type"


@converter(aten._to_copy.default, aten.to.dtype_layout, supports=_dtype_supported)
def to_copy(ctx, x, dtype=None, **_):
    return x if dtype is None else ctx.cast(x, dtype)


@converter(aten.to.dtype, supports=_dtype_supported)
def to_dtype(ctx, x, dtype, *_, **__):
    return ctx.cast(x, dtype)


@converter(aten.type_as.default)
def type_as(ctx, x, other):
    return ctx.cast(x, ctx.torch_dtype(other.dtype))


@converter(aten.clone.default, aten.contiguous.default, aten.alias.default, aten.detach.default,
           aten.lift_fresh_copy.default)
def same_value(ctx, x, **_):
    return x


@converter(aten.flatten.using_ints)
def flatten(ctx, x, start_dim=0, end_dim=-1):
    rank = len(x.shape)
    if rank == 0:
        return ctx.reshape(x, [1])
    start, end = start_dim % rank, end_dim % rank
    dims = dims_of(ctx, x)
    inner = dims[start : end + 1]
    if all(isinstance(d, int) for d in inner):
        merged = 1
        for d in inner:
            merged *= d
    else:
        merged = -1
    return ctx.reshape(x, dims[:start] + [merged] + dims[end + 1 :])



# ---- repeats -----------------------------------------------------------------------------------
def _merged(a, b):
    return a * b if isinstance(a, int) and isinstance(b, int) else -1


def _int_repeats(node) -> str | None:
    repeats = node.args[1] if len(node.args) > 1 else node.kwargs.get("repeats")
    return None if isinstance(repeats, int) else "repeats given as a tensor (only an int is supported)"


@converter(aten.repeat_interleave.self_int, supports=_int_repeats)
def repeat_interleave(ctx, x, repeats, dim=None, output_size=None):
    """Each element `repeats` times in a row along `dim`: [.., n, ..] -> [.., n * repeats, ..]."""
    if dim is None:
        x, dim = ctx.reshape(x, [-1]), 0
    dim %= len(x.shape)
    dims = dims_of(ctx, x)
    spread = ctx.reshape(x, dims[: dim + 1] + [1] + dims[dim + 1 :])
    repeated = expand_to(ctx, spread, dims[: dim + 1] + [repeats] + dims[dim + 1 :])
    return ctx.reshape(repeated, dims[:dim] + [_merged(dims[dim], repeats)] + dims[dim + 1 :])


@converter(aten.repeat.default)
def repeat(ctx, x, repeats):
    """torch.Tensor.repeat (tiling): dim i becomes repeats[i] copies of x's dim i, one after another."""
    x = ctx.to_rank(x, len(repeats))
    dims = dims_of(ctx, x)
    interleaved = [size for d in dims for size in (1, d)]
    target = [size for r, d in zip(repeats, dims) for size in (r, d)]
    tiled = expand_to(ctx, ctx.reshape(x, interleaved), target)
    merged = [_merged(r, d) for r, d in zip(repeats, dims)]
    if sum(m == -1 for m in merged) > 1:  # two dynamic dims: sizes from the network
        merged = [m if m != -1 else size_op(ctx, d, r, "PROD") for m, r, d in zip(merged, repeats, dims)]
    return ctx.reshape(tiled, merged)
