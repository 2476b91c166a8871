"""ditto.comparator.tolerances: the calibrated rule's noise is a distance, whichever side hf errs on."""

import pytest
import torch

from ditto.comparator.tolerances import CalibratedRule, noise_band


def test_noise_is_the_largest_absolute_error_below_the_oracle_too():
    """hf below the oracle is as noisy as hf above it: noise = max |hf - oracle| (a signed max
    would give 0.01 here and a band four times too tight; found by the mutant tol_noise_signed)."""
    oracle = [{"layers.0.out": torch.tensor([1.0, -2.0, 3.0])}]
    hf = [{"layers.0.out": torch.tensor([1.01, -2.5, 3.0])}]  # +0.01 on one element, -0.5 on another
    rule = CalibratedRule(torch.bfloat16)
    band = noise_band(hf, oracle, rule)
    assert band.noise[0]["layers.0.out"] == pytest.approx(0.5)
    assert band.allowed[0]["layers.0.out"] == pytest.approx(rule.allowed(0.5, 3.0))
    hf_below = [{"layers.0.out": torch.tensor([0.9, -2.0, 3.0])}]  # every error negative
    assert noise_band(hf_below, oracle, rule).noise[0]["layers.0.out"] == pytest.approx(0.1)
