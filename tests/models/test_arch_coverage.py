"""A CI-sized subset of the architecture sweep (`scripts/arch_sweep.py`): architectures that
needed a generic fix, each built tiny and random from its transformers config, through
hf, fx and replay (float32 logits within 1e-4 of the largest, the parity bound), or refused
with a DittoError naming the construct and the model source line."""

import pytest

from ditto.errors import DittoError
from ditto.pipeline import load_program
from tests.tiny_models import SMALL, assert_backends_match_hf, save_tiny

CONVERTED = {
    # QK-norm applied on the heads-first layout before RoPE: RoPE found through its cos/sin products
    "exaone4": dict(SMALL, sliding_window=4, layer_types=["sliding_attention", "full_attention"]),
    # two attentions per decoder layer (differential attention)
    "diffllama": dict(SMALL),
    # fused-QKV split with a list index (a lifted constant that lost its value on meta)
    "falcon": dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=256),
    # RMSNorm written with aten.square (replay needed a converter)
    "bitnet": dict(SMALL),
    # scores written as view(baddbmm(zeros, q, kᵀ, alpha=1/norm)) on flattened heads
    "gpt_neox_japanese": dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                              max_position_embeddings=256),
    # dense MoE routing (top-k scattered back into a -inf row, every expert computed): replay
    # needed top-k and scatter converters, and the leftover check had to let that top-k through
    "llama4_text": dict(SMALL, intermediate_size=32, intermediate_size_mlp=64, num_local_experts=4,
                        num_experts_per_tok=1),
    # in-place mul_ on the embeddings (replay needed out-of-place ops)
    "ctrl": dict(vocab_size=256, n_embd=64, n_layer=2, n_head=4, dff=128, n_positions=256),
}


@pytest.mark.needs_tensorrt
@pytest.mark.parametrize("model_type", sorted(CONVERTED))
def test_architecture_converts_and_replays(tmp_path, model_type):
    assert_backends_match_hf(save_tiny(tmp_path, model_type, **CONVERTED[model_type]), steps=2)


def test_value_dependent_mask_is_refused_naming_the_attention(tmp_path):
    # Doge's dynamic mask is computed from the value states: not a causal or sliding-window mask
    path = save_tiny(tmp_path, "doge", **dict(SMALL, num_key_value_heads=2))
    with pytest.raises(DittoError, match=r"modeling_doge.py.*mask depends on the token values"):
        load_program(path)


def test_bare_error_while_probing_names_node_and_source_line():
    import torch

    from ditto.graph.evaluate import evaluate

    class Histogram(torch.nn.Module):
        def forward(self, x):
            return torch.histc(x, bins=4)

    gm = torch.export.export(Histogram(), (torch.randn(8),)).module()
    x = next(n for n in gm.graph.nodes if n.op == "placeholder")
    histc = next(n for n in gm.graph.nodes if n.op == "call_function" and "histc" in str(n.target))
    with pytest.raises(DittoError, match=r"computing node histc .*test_arch_coverage.py.*NotImplementedError"):
        evaluate([histc], {x: torch.arange(8, dtype=torch.int32)}, lambda name: None)


def test_bare_error_in_a_pass_becomes_a_ditto_error_naming_the_pass():
    import torch

    from ditto.passes.manager import PASSES, register_pass, run_passes

    @register_pass("test_index_error")
    def _broken(ctx):
        return [][0]

    ctx = type("Ctx", (), {"gm": torch.fx.symbolic_trace(torch.nn.Identity())})()
    ctx.graph = ctx.gm.graph
    try:
        with pytest.raises(DittoError, match=r"pass test_index_error failed on this model with IndexError"):
            run_passes(ctx, ["test_index_error"])
    finally:
        del PASSES["test_index_error"]


@pytest.mark.needs_tensorrt
def test_gpt_neo_local_band_written_with_where_is_a_sliding_window(tmp_path):
    # GPT-Neo masks its scores with where(band, scores, min) before adding the padding mask;
    # the local layer's band of 4 keys must become sliding_window=4 (prompts are up to 9 long)
    path = save_tiny(tmp_path, "gpt_neo", vocab_size=256, hidden_size=64, num_layers=2, num_heads=4,
                     attention_types=[[["global", "local"], 1]], window_size=4, max_position_embeddings=256)
    assert [p.sliding_window for p in load_program(path).attention] == [0, 4]
    assert_backends_match_hf(path, steps=3)
