"""The `hf` backend on models whose caching differs from the usual one (ditto/runtime/hf.py):
no KV cache at all (OpenAI-GPT: the whole sequence again every step), a cache that needs
the whole sequence as input (CPM-Ant: batched and one-token steps raise, the backend falls
back to whole-sequence steps), and the usual KV cache the model now creates itself. Every
step's logits must equal the model run on the whole sequence so far, one sequence at a time
(float32, 1e-5 of the largest logit).

Planted bugs these kill: a no-cache model fed only the new token (it forgets its context),
the whole-sequence fallback feeding positions from the past length, the fallback dropped
(CPM-Ant raises), the model's returned cache not passed back (every step forgets the past)."""

import pytest
import torch

from ditto.runtime.backend import StepwiseRequest
from ditto.runtime.hf import HfBackend, _cache_kwarg

PROMPTS = [[5, 9, 23, 7, 100], [3, 4], [17, 18, 19, 20, 21, 22]]
STEPS = 3
FORCED = [[11, 12, 13], [40, 41, 42], [7, 7, 7]]

TINY = {
    "openai-gpt": dict(vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=64),
    "cpmant": dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, dim_head=16,
                   dim_ff=128, prompt_length=4, max_position_embeddings=64),
    "llama": dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64),
}


def _save(tmp_path, model_type):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **TINY[model_type])).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    model.save_pretrained(tmp_path)
    return model, str(tmp_path)


def _whole_sequence_logits(model, step):
    rows = []
    for b, prompt in enumerate(PROMPTS):
        ids = prompt + [FORCED[s][b] for s in range(step)]
        with torch.no_grad():
            rows.append(model(input_ids=torch.tensor([ids])).logits[0, -1])
    return torch.stack(rows)


@pytest.mark.parametrize("mode", ["batched", "eager"])
@pytest.mark.parametrize("model_type", sorted(TINY))
def test_every_step_equals_the_model_on_the_whole_sequence(tmp_path, model_type, mode):
    model, path = _save(tmp_path, model_type)
    if model_type == "openai-gpt":
        assert _cache_kwarg(model) is None  # the path under test: no KV cache
    request = StepwiseRequest(model=path, prompts=PROMPTS, steps=STEPS, forced_tokens=FORCED)
    dumps = HfBackend(mode).run(request)
    assert len(dumps) == STEPS + 1
    for step, dump in enumerate(dumps):
        expected = _whole_sequence_logits(model, step)
        scale = max(1.0, expected.abs().max().item())
        error = (dump["logits"] - expected).abs().max().item() / scale
        assert error <= 1e-5, (model_type, mode, step, error)
