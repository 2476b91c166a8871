"""ALiBi as a parameter of the one `gpt_attention` op (position_embedding_type "alibi" plus the
op's `alibi_slopes` input), on tiny random BLOOM (bias through baddbmm) and MPT (scores + bias,
mask through masked_fill) models: hf vs fx vs replay logits in float32 within 1e-4 of the largest
logit (the parity bound; ignoring the bias misses it by far), the recognised slopes, and the
TensorRT-LLM plugin field and input they become. A score bias that is not ALiBi is refused."""

import pytest
import torch

from ditto.errors import DittoError
from ditto.pipeline import load_program
from ditto.trtllm.gpt_attention_plugin import PluginOptions, gpt_attention_input_names
from tests.tiny_models import assert_backends_match_hf, plugin_field, save_tiny

# standard ALiBi slopes for 4 heads: 2 ** (-8 * h / 4), h = 1..4 (BLOOM and MPT with alibi_bias_max 8)
SLOPES = [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]


@pytest.mark.needs_tensorrt
@pytest.mark.parametrize("model_type, size", [
    ("bloom", dict(vocab_size=256, hidden_size=64, n_layer=2, n_head=4)),
    ("mpt", dict(vocab_size=256, d_model=64, n_layers=2, n_heads=4, max_seq_len=256, expansion_ratio=2)),
])
def test_alibi_is_a_parameter(tmp_path, model_type, size):
    path = save_tiny(tmp_path, model_type, **size)
    program = load_program(path)
    assert [p.position_embedding_type for p in program.attention] == ["alibi", "alibi"]
    slopes = program.weights.load("alibi_slopes").float()
    assert torch.allclose(slopes, torch.tensor(SLOPES), rtol=1e-5), slopes
    params = program.attention[0]
    assert int(plugin_field(params, "position_embedding_type")) == 4  # PositionEmbeddingType.alibi
    options = PluginOptions(dtype="float32", tokens_per_block=params.tokens_per_block, max_context_length=64)
    names = gpt_attention_input_names(params, options)
    assert names.index("alibi_slopes") == names.index("host_context_lengths") - 1  # IdxEntry order
    assert "rotary_cos_sin" not in names
    assert_backends_match_hf(path)


def test_a_score_bias_that_is_not_alibi_is_refused():
    from torch.fx import Graph

    from ditto.passes.replace_attention import _alibi_slopes

    t = 8
    graph = Graph()
    node = graph.call_function(torch.ops.aten.scaled_dot_product_attention.default, ())
    allowed = torch.ones(t, t, dtype=torch.bool).tril()
    distance = (torch.arange(t)[None, :] - torch.arange(t)[:, None]).float()
    alibi = torch.tensor([0.5, 0.25])[:, None, None] * distance + torch.arange(t).float()[:, None]  # + row constants
    assert torch.allclose(_alibi_slopes(node, alibi, allowed, 2, torch.float32), torch.tensor([0.5, 0.25]))
    squared = torch.tensor([0.5, 0.25])[:, None, None] * distance**2
    with pytest.raises(DittoError, match="not ALiBi"):
        _alibi_slopes(node, squared, allowed, 2, torch.float32)
