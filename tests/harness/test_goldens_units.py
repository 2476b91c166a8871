"""Golden fingerprints and staleness, value by value: what each stand-in number is, and that
every field of a golden's identity makes it stale on its own."""

import pytest
import torch

from harness import goldens

IDENTITY = {"model_hash": "abc", "dtype": "float32", "versions": {"torch": "2.13"}, "prompts": [[1]], "steps": 8,
            "format": "full", "format_version": 1}


@pytest.mark.parametrize("key", sorted(IDENTITY))
def test_each_identity_field_alone_makes_a_golden_stale(key):
    manifest = {**IDENTITY, key: "something else"}
    (reason,) = goldens.stale_reasons(manifest, IDENTITY)
    assert "something else" in reason


def test_fingerprint_stats_are_mean_std_min_max_and_mean_magnitude():
    values = torch.tensor([[-3.0, 1.0], [2.0, 4.0]])
    stats = goldens.fingerprint({"x": values})["x::stats"]
    # mean 1, sample std sqrt(26/3), min -3, max 4, mean |x| 2.5: on the scale of the values
    torch.testing.assert_close(stats, torch.tensor([1.0, (26 / 3) ** 0.5, -3.0, 4.0, 2.5]))
