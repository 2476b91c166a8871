"""Converter cases the first tests left open, looked at because of unlisted mutants of the
mutation suite: a `*_like` creation on a dynamic dim keeps its input's integer dtype, and a
negated symbolic size (export's `operator.neg` on a dynamic dim) is 0 - n; checked through
TensorRT and replay like the rest."""

import operator

import torch

from tests.converter_check import Fn, N, check, convert, rows


def test_full_like_keeps_an_integer_dtype():
    """`full_like(ids, 3)` on a dynamic dim is int32 like `ids` (a one-element constant broadcast:
    its dtype must be given, torch.full would make it int64). The unlisted mutant
    conv_full_like_float is equivalent (the converter takes the dtype export recorded)."""

    def fn(m, x, ids):
        return x + 1, torch.full_like(ids, 3) + ids

    check(Fn(fn), (rows(4), torch.arange(4, dtype=torch.int32)), ({0: N}, {0: N}),
          others=[(rows(7, seed=7), torch.arange(7, dtype=torch.int32))])


def test_negated_symbolic_size():
    """x.flatten()[-n:] on a dynamic n: the start is neg(n) = 0 - n (mutant conv_symbolic_neg_swapped)."""

    def fn(m, x):
        return x.reshape(-1)[-x.shape[0]:] * 2

    _, gm = convert(Fn(fn), (rows(4),), ({0: N},))
    assert any(n.target is operator.neg for n in gm.graph.nodes), gm.graph  # the path under test is reached
    check(Fn(fn), (rows(4),), ({0: N},), others=[(rows(7, seed=7),)])
