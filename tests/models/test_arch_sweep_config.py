"""The architecture sweep's tiny configs and classification (scripts/arch_sweep.py): the
shrunk default config must stay consistent, so that transformers itself can build and run
the model and the architecture enters the measured denominator instead of "setup"; families
that are not attention decoder-only LMs are excluded by name, before any config is built.

Planted bugs these kill: MLA models keeping grouped KV heads (transformers' attention fails
on 4 vs 8 heads), head_dim / KV heads left None (a TypeError in the attention's __init__),
per-layer lists longer than the layer count, RoPE parameters missing a layer type (KeyError),
M-RoPE sections left at a 128-wide head's (transformers 5.17's Cohere Compass: a size-0 copy),
a hybrid classified as a testable LM, the MLA refusal turned into a bare shape error."""

import pytest
import torch

from tests.tiny_models import arch_sweep, require_model_type

sweep = arch_sweep()

# architectures the sweep once left as "setup" (transformers failed on the shrunk config)
RUNNABLE = ["deepseek_v3", "hunyuan_v1_dense", "nemotron", "ministral", "cohere_compass_text", "dory", "dots1",
            "gemma3n_text", "dbrx"]


@pytest.mark.parametrize("model_type", RUNNABLE)
def test_shrunk_config_builds_and_runs_in_transformers(model_type):
    from transformers import AutoModelForCausalLM

    require_model_type(model_type)
    config = sweep.tiny_config(model_type)
    assert sweep.family(model_type, config) is None
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[5, 9, 23, 7]])).logits
    assert logits.shape == (1, 4, 256) and torch.isfinite(logits).all()


def test_shrinking_keeps_fields_consistent():
    mla = sweep.tiny_config("deepseek_v3")
    assert mla.num_key_value_heads == mla.num_attention_heads == 4
    assert mla.qk_head_dim == mla.qk_nope_head_dim + mla.qk_rope_head_dim
    assert mla.v_head_dim != mla.qk_head_dim  # MLA's shape kept: the value head is narrower
    assert mla.first_k_dense_replace == 1 and mla.n_group == 2  # the MoE layer is reached, grouped top-k works
    assert sweep.tiny_config("hunyuan_v1_dense").head_dim == 16
    assert sweep.tiny_config("nemotron").num_key_value_heads == 2
    gemma3n = sweep.tiny_config("gemma3n_text")
    assert len(gemma3n.intermediate_size) == gemma3n.num_hidden_layers == len(gemma3n.layer_types)
    compass = sweep.tiny_config("cohere_compass_text")
    assert set(compass.rope_parameters) == set(compass.layer_types)
    # M-RoPE sections cover the tiny head's rotary half (the modeling default is a 128-wide head's)
    assert all(sum(p["mrope_section"]) == compass.head_dim // 2 for p in compass.rope_parameters.values())


@pytest.mark.parametrize("model_type, expected", [
    ("lara_mini", "hybrid"), ("qwen4_exp_text", "hybrid"), ("zamba2", "hybrid"), ("inkling_text", "hybrid"),
    ("mamba2", "recurrent"), ("gemma4_assistant", "drafter"), ("bert", "encoder-only"),
])
def test_excluded_families_are_named_before_building_a_config(model_type, expected):
    assert expected in sweep.family(model_type, None)


def test_layer_types_of_linear_attention_make_a_hybrid():
    config = type("Config", (), {"layer_types": ["full_attention", "linear_attention"]})()
    assert "hybrid" in sweep.family("some_new_model", config)
    assert sweep.family("some_new_model", type("Config", (), {"layer_types": ["full_attention"]})()) is None


def test_multi_head_latent_attention_converts_with_a_padded_value_head(tmp_path):
    """The sweep's shrunk DeepSeek-V2 keeps MLA's narrower value head: it converts as one padded
    GPTAttention (parity vs HF: tests/passes/test_attention_mla.py)."""
    from transformers import AutoModelForCausalLM

    from ditto.pipeline import load_program

    torch.manual_seed(0)
    config = sweep.tiny_config("deepseek_v2")
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    attention = [params.as_dict() for params in load_program(str(tmp_path)).attention]
    assert attention and all(0 < p["value_head_size"] < p["head_size"] for p in attention), attention[0]


def test_markdown_groups_refusals_and_setups_by_reason(capsys):
    results = {
        "a": dict(outcome="refused", detail="fx: attention ...: the value head size 16 differs ... (multi-head latent "
                  "attention, ...)"),
        "b": dict(outcome="setup", detail="hf: ValueError: something transformers cannot do"),
        "c": dict(outcome="pass", detail="fx 0; replay 0"),
    }
    sweep.print_markdown(results)
    out = capsys.readouterr().out
    assert "| refused (DittoError) (1) | multi-head latent attention" in out
    assert "something transformers cannot do" in out


@pytest.mark.needs_tensorrt
def test_gemma3n_text_converts_and_replays(tmp_path):
    # newly testable: its altup prediction adds in place into a permuted matmul (the base is never
    # read again) and it multiplies with aten.multiply (replay needed the alias)
    from transformers import AutoModelForCausalLM

    from tests.tiny_models import assert_backends_match_hf

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(sweep.tiny_config("gemma3n_text")).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)
    model.save_pretrained(tmp_path)
    assert_backends_match_hf(str(tmp_path), steps=2)
