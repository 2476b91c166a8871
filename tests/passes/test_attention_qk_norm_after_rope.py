"""QK-norm AFTER RoPE (HunYuan dense/MoE: q = RMSNorm(rope(q)) per head): RMSNorm's 1/rms is
invariant under the rotation, so with a norm weight equal within each rotated pair the norm commutes
with RoPE; `replace_attention` verifies that by probing and moves the transform before RoPE (the op
rotates its result). On tiny random HunYuan models with pair-constant random norm weights: hf vs fx
vs replay logits in float32 within 1e-4 of the largest logit. Weights that differ within a pair do
not commute: the RMSNorm (weight and eps fitted by probing) becomes the op's `query_norm_after_rope` /
`key_norm_after_rope`, computed by the reference op and the native lowering (fx and replay match hf);
the GPTAttention plugin lowering refuses it (TensorRT-LLM applies RoPE inside the op, with no field
for a norm after it)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from ditto.errors import DittoError
from ditto.pipeline import load_program
from ditto.trtllm.gpt_attention_plugin import refuse_unmapped_inputs
from tests.tiny_models import assert_backends_match_hf

_SWEEP = Path(__file__).resolve().parents[2] / "scripts" / "arch_sweep.py"


def _save_hunyuan(tmp_path, model_type: str, pair_constant: bool, eps: float | None = None) -> str:
    from transformers import AutoModelForCausalLM

    spec = importlib.util.spec_from_file_location("arch_sweep", _SWEEP)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    torch.manual_seed(0)
    config = sweep.tiny_config(model_type)
    if eps is not None:
        config.rms_norm_eps = eps
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
            elif "query_layernorm" in name or "key_layernorm" in name:
                half = p.numel() // 2  # NeoX-style RoPE rotates feature j with feature j + half
                pair = torch.rand(half) + 0.5
                p.copy_(torch.cat([pair, pair]) if pair_constant else torch.rand(p.numel()) * 2 + 0.1)
    model.save_pretrained(tmp_path)
    return str(tmp_path)


@pytest.mark.needs_tensorrt
@pytest.mark.parametrize("model_type", ["hunyuan_v1_dense", "hunyuan_v1_moe"])
def test_qk_norm_after_rope_commuting_converts(tmp_path, model_type):
    path = _save_hunyuan(tmp_path, model_type, pair_constant=True)
    program = load_program(path)
    assert len(program.attention) == 2
    assert all(p.position_embedding_type == "rope_gpt_neox" for p in program.attention)
    attention = [n for n in program.graph_module.graph.nodes if n.target == torch.ops.ditto.gpt_attention.default]
    # the norm moved before RoPE in the graph: the op gets no norm after RoPE (a plugin engine can take it)
    assert all(n.kwargs.get("query_norm_after_rope") is None and n.kwargs.get("key_norm_after_rope") is None
               for n in attention)
    assert_backends_match_hf(path)


def _norm_weights(program, name):
    return [program.weights.load(n).float() for n in program.weights.names() if n.startswith(name)]


@pytest.mark.needs_tensorrt
def test_qk_norm_after_rope_not_commuting_is_a_parameter(tmp_path):
    path = _save_hunyuan(tmp_path, "hunyuan_v1_dense", pair_constant=False, eps=0.1)  # an eps that matters
    program = load_program(path)
    head_size = program.attention[0].head_size
    attention = [n for n in program.graph_module.graph.nodes if n.target == torch.ops.ditto.gpt_attention.default]
    assert len(attention) == 2
    assert all(n.kwargs.get("query_norm_after_rope") is not None and n.kwargs.get("key_norm_after_rope") is not None
               for n in attention)
    # the fitted weight and eps: the model's query_layernorm of layer 0 and its rms_norm_eps
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    norm = program.weights.load(attention[0].kwargs["query_norm_after_rope"].target).float()
    layer = model.model.layers[0].self_attn
    assert norm.shape == (head_size + 1,)
    torch.testing.assert_close(norm[:-1], layer.query_layernorm.weight.float(), rtol=1e-4, atol=1e-5)
    assert norm[-1].item() == pytest.approx(layer.query_layernorm.variance_epsilon, rel=1e-2)
    assert_backends_match_hf(path)


def test_plugin_lowering_refuses_norm_after_rope():
    with pytest.raises(DittoError, match=r"AFTER RoPE[\s\S]*no field or input"):
        refuse_unmapped_inputs(0, {"qkv", "query_norm_after_rope"})


def test_layer_norm_after_rope_is_refused(tmp_path, monkeypatch):
    # a mean-subtracting norm after RoPE neither commutes with the rotation nor is an RMSNorm
    from transformers.models.hunyuan_v1_dense import modeling_hunyuan_v1_dense as hunyuan

    def layer_norm(self, x):
        x = x.float() - x.float().mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    path = _save_hunyuan(tmp_path, "hunyuan_v1_dense", pair_constant=True)
    monkeypatch.setattr(hunyuan.HunYuanDenseV1RMSNorm, "forward", layer_norm)
    with pytest.raises(DittoError, match=r"neither commutes with the rotation nor is an RMSNorm"):
        load_program(path)
