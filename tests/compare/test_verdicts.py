"""Verdicts and numbers of a comparison that the other compare tests leave unasserted: mean
|a - b| is over the positions without a NaN (a NaN is counted out of tolerance, not spread
into the mean of the others), and a name present on either side only fails the dump."""

import math

import torch

from ditto.comparator import compare_dumps, compare_tensors


def test_mean_abs_skips_nan_positions():
    result = compare_tensors(torch.tensor([1.0, 2.0, math.nan, 4.0]), torch.tensor([1.0, 1.0, 1.0, 1.0]))
    assert result.mean_abs == 4 / 3  # |0| + |1| + |3| over the three positions without a NaN
    assert result.max_abs == 3 and result.nan_a == 1 and not result.passed


def test_a_name_on_one_side_only_fails_the_dump_whichever_side():
    t = torch.ones(3)
    assert compare_dumps({"x": t}, {"x": t}).passed
    assert not compare_dumps({"x": t, "extra": t}, {"x": t}).passed
    assert not compare_dumps({"x": t}, {"x": t, "extra": t}).passed
