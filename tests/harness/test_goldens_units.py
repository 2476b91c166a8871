"""Golden fingerprints and staleness, value by value: what each stand-in number is, and that
every field of a golden's identity makes it stale on its own."""

import pytest
import torch

from harness import goldens

IDENTITY = {"model_hash": "abc", "dtype": "float32", "prompts": [[1]], "steps": 8, "format": "full", "format_version": 1}


@pytest.mark.parametrize("key", sorted(IDENTITY))
def test_each_identity_field_alone_makes_a_golden_stale(key):
    manifest = {**IDENTITY, key: "something else"}
    (reason,) = goldens.stale_reasons(manifest, IDENTITY)
    assert "something else" in reason


def test_identity_is_what_the_golden_was_computed_from_not_where():
    """The model's content hash stands for its weights; versions and device are the environment."""
    assert set(goldens.IDENTITY) == set(IDENTITY)
    assert not set(goldens.ENVIRONMENT) & set(goldens.IDENTITY)


def test_another_environment_is_named_but_not_stale():
    here = {"versions": {"ditto": "0.1.0", "torch": "2.11", "transformers": "5.17"}, "device": "cuda"}
    manifest = {**IDENTITY, "versions": {"ditto": "0.1.0", "torch": "2.13", "transformers": "5.24"}, "device": "cpu"}
    assert goldens.stale_reasons(manifest, IDENTITY) == []
    assert goldens.environment_differences(manifest, here) == [
        "versions: golden {'ditto': '0.1.0', 'torch': '2.13', 'transformers': '5.24'}, this run "
        "{'ditto': '0.1.0', 'torch': '2.11', 'transformers': '5.17'}",
        "device: golden 'cpu', this run 'cuda'",
    ]
    assert goldens.environment_differences({**manifest, **here}, here) == []


def test_fingerprint_stats_are_mean_std_min_max_and_mean_magnitude():
    values = torch.tensor([[-3.0, 1.0], [2.0, 4.0]])
    stats = goldens.fingerprint({"x": values})["x::stats"]
    # mean 1, sample std sqrt(26/3), min -3, max 4, mean |x| 2.5: on the scale of the values
    torch.testing.assert_close(stats, torch.tensor([1.0, (26 / 3) ** 0.5, -3.0, 4.0, 2.5]))
