"""OpenAI-GPT's eager attention: K pre-transposed by a permute of the projected heads
(permute(view(k), [0, 2, 3, 1])) and a multiplicative 0/1 causal mask (w * b + -1e4 * (1 - b),
b a slice of a tril buffer) become SDPA's key and additive mask, which `replace_attention` then
checks as causal. On a tiny random OpenAI-GPT: hf vs fx vs replay logits in float32 within 1e-4 of
the largest logit. On a small graph: the rewrite computes the same numbers, and a buffer that is not
0/1 (where w * b + c * (1 - b) is not a mask) is left alone."""

import pytest
import torch

from ditto.pipeline import load_program
from tests.passes._helpers import FLOAT32, check_pass, module_context
from tests.tiny_models import assert_backends_match_hf, save_sweep_model

SDPA = torch.ops.aten.scaled_dot_product_attention.default


class OpenAIStyleAttention(torch.nn.Module):
    def __init__(self, fill: float):
        super().__init__()
        self.register_buffer("bias", torch.tril(torch.ones(8, 8)).view(1, 1, 8, 8) * fill)

    def forward(self, q, k, v):  # q, v [1, heads, t, d]; k [1, t, heads, d] as projected
        w = torch.matmul(q, k.permute(0, 2, 3, 1)) / 4.0
        b = self.bias[:, :, : w.size(-2), : w.size(-1)]
        w = w * b + -1e4 * (1 - b)
        return torch.matmul(torch.softmax(w, dim=-1), v)


def _context(fill: float):
    q, v = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    k = torch.randn(1, 5, 2, 4)
    return module_context(OpenAIStyleAttention(fill), q, k, v)


def test_permuted_key_and_multiplicative_mask_become_sdpa():
    ctx, feeds = _context(1.0)
    check_pass(ctx, feeds, "eager_attention_to_sdpa", matches=1, tolerance=FLOAT32)
    sdpa = [n for n in ctx.graph.nodes if n.target == SDPA]
    assert len(sdpa) == 1 and sdpa[0].kwargs["scale"] == pytest.approx(0.25)


def test_mask_buffer_that_is_not_zero_one_is_left_alone():
    ctx, feeds = _context(0.5)  # w * 0.5 - 5e3: not a mask, scores scaled where b is 0.5
    check_pass(ctx, feeds, "eager_attention_to_sdpa", matches=0, tolerance=FLOAT32)


@pytest.mark.needs_tensorrt
def test_openai_gpt_converts(tmp_path):
    path = save_sweep_model(tmp_path, "openai-gpt")
    program = load_program(path)
    assert len(program.attention) == 2
    assert all(p.sliding_window == 0 and p.position_embedding_type == "learned_absolute" for p in program.attention)
    assert_backends_match_hf(path)
