"""The `hf` backend's two modes agree: batched (left-padded batch, sdpa, one KV cache) and
eager (one sequence at a time, eager attention, no padding).

Batched is the default and what every comparison uses as its reference; eager is the
reading of the model that no padding or masking choice can touch. Same forced tokens, same
probes, the project's bound (tests/parity.py). Planted bugs this kills: padding on the wrong
side or positions counted from the padded start (every probe of the shorter prompts moves),
probes read from padding rows, logits of the wrong column, a mask not extended per step.
"""

import pytest
import torch

from ditto.errors import DittoError
from ditto.models.tiny import TINY_MODELS
from ditto.runtime.hf import HfBackend
from tests.parity import FLOAT32_BOUND, assert_passes, forced_request, verdict, worst_errors


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_batched_hf_matches_one_sequence_eager_hf(model, dtype):
    request = forced_request(model, dtype)
    eager = HfBackend("eager").run(request)
    batched = HfBackend("batched").run(request)
    errors = worst_errors(eager, batched)
    assert set(errors) >= {"logits", "layers.0.attn", "layers.0.mlp", "layers.1.out", "final_norm"}
    assert_passes(verdict(request, eager, batched, "hf-batched"))
    if dtype == torch.float32:  # both in float32: summation order alone, far inside the bound
        assert max(errors.values()) <= FLOAT32_BOUND / 10, errors
    for a, b in zip(eager, batched):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["position_ids"], b["position_ids"])
        assert a.keys() == b.keys()


def test_hf_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DITTO_HF_MODE", "eager")
    assert HfBackend().mode == "eager"
    monkeypatch.delenv("DITTO_HF_MODE")
    assert HfBackend().mode == "batched"
    monkeypatch.setenv("DITTO_HF_MODE", "fast")
    with pytest.raises(DittoError, match="DITTO_HF_MODE='fast'.*batched, eager"):
        HfBackend()
