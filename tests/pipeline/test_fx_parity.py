"""The `fx` backend (ditto's TensorRT-LLM-form graph in torch) against Hugging Face.

Context step + 8 generation steps, batch of 3 ragged prompts, HF's tokens forced on both; judged
by the project's rule (tests/parity.py: fixed in float32, against the float32 oracle within
hf's own noise in half precision).
"""

import pytest
import torch

from ditto.models.tiny import TINY_MODELS
from ditto.runtime.backend import get_backend
from tests.parity import assert_passes, forced_request, verdict


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_fx_matches_hf(model, dtype):
    request = forced_request(model, dtype)
    reference = get_backend("hf").run(request)
    got = get_backend("fx").run(request)
    run = verdict(request, reference, got)
    assert {t.name for t in run.steps[0].tensors} >= {"logits", "layers.0.attn", "layers.0.mlp", "layers.1.out",
                                                      "final_norm"}
    assert_passes(run)
    # the same token ids were fed
    for ref, dump in zip(reference, got):
        assert torch.equal(ref["input_ids"], dump["input_ids"])
        assert torch.equal(ref["position_ids"], dump["position_ids"])
