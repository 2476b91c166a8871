"""Values ditto takes from a model, checked against the model they came from: the expectation is
computed here from the HF config (never through ditto's helpers), and the RoPE table against
HF's own rotary embedding. `check_build` checks one `ditto build` of a built-in tiny model
(tests/trtllm/test_model_derived.py: half precision; tests/trt/test_build.py: float32).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

import ditto.builder as build_module
from ditto.builder import build
from ditto.models.tiny import tiny_model_dir
from ditto.pipeline import load_program
from ditto.trtllm.config import BuildOptions

# float16 options of a small engine (for engine_config without a build)
BUILD_OPTIONS = BuildOptions(dtype=torch.float16, max_batch_size=4, max_input_len=64, max_seq_len=128, max_num_tokens=256)
# small limits with a small KV block, so that the build's pool spans many blocks
LIMITS = dict(max_batch_size=3, max_input_len=32, max_seq_len=48, max_num_tokens=64, tokens_per_block=4)
NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
REPORT_DTYPES = {torch.float32: "FLOAT", torch.float16: "HALF", torch.bfloat16: "BF16"}

# What is in the model's code, not its config: GLM rotates adjacent pairs (modeling_glm.rotate_half
# interleaves); every other RoPE model here rotates halves (GPT-NeoX style). GPT-2 has no RoPE.
INTERLEAVED_ROPE = {"tiny-glm"}


def hf_config(name: str):
    """The HF config of tiny model `name`."""
    return AutoConfig.from_pretrained(tiny_model_dir(name))


def expected_attention(name: str, hf) -> dict:
    """The attention parameters the model implies, from its HF config."""
    heads = hf.num_attention_heads
    head_size = getattr(hf, "head_dim", None) or hf.hidden_size // heads
    rope = getattr(hf, "rope_parameters", None) if hf.model_type != "gpt2" else None
    max_positions = hf.max_position_embeddings
    out = dict(
        num_heads=heads,
        num_kv_heads=getattr(hf, "num_key_value_heads", None) or heads,
        head_size=head_size,
        # scores scale 1/(sqrt(head_size) q_scaling); Gemma-2 scales by query_pre_attn_scalar ** -0.5
        q_scaling=(getattr(hf, "query_pre_attn_scalar", None) or head_size) ** 0.5 / head_size ** 0.5,
        sliding_window=getattr(hf, "sliding_window", None) or 0,
        rotary_embedding_max_positions=max_positions,
        attn_logit_softcapping_scale=getattr(hf, "attn_logit_softcapping", None) or 0.0,
    )
    if rope is None:
        out.update(position_embedding_type="learned_absolute", rotary_embedding_dim=0)
        return out
    factor = rope.get("partial_rotary_factor", getattr(hf, "partial_rotary_factor", None) or 1.0)
    scaled = rope.get("rope_type", "default") != "default"
    out.update(
        position_embedding_type="rope_gptj" if name in INTERLEAVED_ROPE else "rope_gpt_neox",
        rotary_embedding_dim=int(head_size * factor),
        rotary_embedding_base=rope["rope_theta"],
        rotary_embedding_scale_type=rope["rope_type"] if scaled else "none",
        rotary_embedding_scale=rope.get("factor", 1.0) if scaled else 1.0,
        rotary_embedding_original_max_positions=rope.get("original_max_position_embeddings", max_positions),
    )
    return out


def check_attention(name: str, program, tokens_per_block: int) -> None:
    """Every layer's attention parameters are what tiny model `name`'s HF config implies."""
    hf = hf_config(name)
    want = expected_attention(name, hf)
    assert len(program.attention) == hf.num_hidden_layers
    for index, params in enumerate(program.attention):
        got = params.as_dict()
        assert got["layer_idx"] == index and got["tokens_per_block"] == tokens_per_block
        layer_type = (getattr(hf, "layer_types", None) or [None] * hf.num_hidden_layers)[index]
        layer_want = {**want, "sliding_window": 0} if layer_type == "full_attention" else want
        for field, value in layer_want.items():  # alternating layers (Gemma-2): no window on the full ones
            same = got[field] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value)
            assert same, f"{name} layer {index}: {field} {got[field]!r}, HF {value!r}"


def check_config(name: str, config: dict, dtype: torch.dtype, limits: dict) -> None:
    """config.json of an engine built from tiny model `name` in `dtype` with `limits`."""
    hf = hf_config(name)
    want = expected_attention(name, hf)
    pretrained, build_config = config["pretrained_config"], config["build_config"]
    rope = getattr(hf, "rope_parameters", None) if hf.model_type != "gpt2" else None
    scaling = None
    if rope and rope.get("rope_type", "default") != "default":
        scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "partial_rotary_factor")}
    expected = {
        "architecture": hf.architectures[0],
        "dtype": NAMES[dtype],
        "logits_dtype": "float32",
        "vocab_size": hf.vocab_size,
        "hidden_size": hf.hidden_size,
        "num_hidden_layers": hf.num_hidden_layers,
        "num_attention_heads": want["num_heads"],
        "num_key_value_heads": want["num_kv_heads"],
        "head_size": want["head_size"],
        "intermediate_size": getattr(hf, "intermediate_size", None) or hf.n_inner,
        "max_position_embeddings": hf.max_position_embeddings,
        # MoE models: the experts' gated activation, as TensorRT-LLM writes it for Mixtral (ditto/trtllm/moe.py)
        "hidden_act": "swiglu" if hf.model_type in ("mixtral", "qwen3_moe")
        else getattr(hf, "hidden_act", None) or getattr(hf, "hidden_activation", None) or hf.activation_function,
        "norm_epsilon": getattr(hf, "rms_norm_eps", None) or hf.layer_norm_epsilon,
        "position_embedding_type": want["position_embedding_type"],
        "rotary_embedding_dim": want["rotary_embedding_dim"],
        "rotary_scaling": scaling,
        # the window per layer; a full layer of an alternating model (Gemma-2) attends over max_seq_len
        "runtime_defaults": {"max_attention_window": [
            limits["max_seq_len"] if layer_type == "full_attention" else want["sliding_window"]
            for layer_type in (getattr(hf, "layer_types", None) or [None] * hf.num_hidden_layers)]}
        if want["sliding_window"] else None,
    }
    for field, value in expected.items():
        assert pretrained[field] == value, f"{name}: pretrained_config.{field} {pretrained[field]!r}, HF {value!r}"
    if rope is not None:
        assert math.isclose(pretrained["rotary_base"], rope["rope_theta"], rel_tol=1e-12), pretrained["rotary_base"]
    for field in ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens"):
        assert build_config[field] == limits[field], field
    plugin = build_config["plugin_config"]
    assert plugin["dtype"] == NAMES[dtype] and plugin["tokens_per_block"] == limits["tokens_per_block"]
    assert plugin["gpt_attention_plugin"] is None and build_config["ditto"]["attention"] == "native"


def check_rotary_table(name: str, program, dtype: torch.dtype) -> None:
    """The cos/sin table ditto found by probing equals HF's rotary embedding at every position."""
    hf = hf_config(name)
    want = expected_attention(name, hf)
    if want["rotary_embedding_dim"] == 0:
        assert "rotary_cos_sin" not in program.weights.names()
        return
    table = program.weights.load("rotary_cos_sin").float()
    model = AutoModelForCausalLM.from_config(hf)  # tiny; the rotary buffers are computed at init
    rotary = next(m for n, m in model.named_modules() if n.endswith("rotary_emb"))
    positions = torch.arange(hf.max_position_embeddings)[None]
    cos, sin = rotary(torch.zeros(1, dtype=torch.float32), positions)
    half = want["rotary_embedding_dim"] // 2
    # HF's cos/sin are float32, cast to the model dtype where applied; ditto's table keeps the
    # model dtype's rounding: half an ulp of 1 (float32: summation order only)
    tolerance = {torch.float32: 1e-5, torch.float16: 2**-11, torch.bfloat16: 2**-8}[dtype]
    assert table.shape == (hf.max_position_embeddings, 2 * half)
    assert (table[:, :half] - cos[0, :, :half]).abs().max().item() <= tolerance
    assert (table[:, half:] - sin[0, :, :half]).abs().max().item() <= tolerance


def check_build(name: str, program, config: dict, report: dict, dtype: torch.dtype, limits: dict) -> None:
    """Every model-derived value of a build: attention parameters, config.json, RoPE table, pool and logits I/O."""
    check_attention(name, program, limits["tokens_per_block"])
    check_config(name, config, dtype, limits)
    check_rotary_table(name, program, dtype)
    outputs = {o["name"]: o for o in report["outputs"]}
    inputs = {i["name"]: i for i in report["inputs"]}
    assert outputs["logits"]["dtype"] == "FLOAT", "logits must be float32 in every engine (TensorRT-LLM's logits_dtype)"
    assert inputs["kv_cache_pool"]["dtype"] == outputs["present_kv_cache_pool"]["dtype"] == REPORT_DTYPES[dtype]
    p = program.attention[0]
    assert inputs["kv_cache_pool"]["shape"][1:] == [len(program.attention), 2, p.num_kv_heads, limits["tokens_per_block"], p.head_size]



def build_keeping_program(name: str, folder: Path, dtype=None, **options):
    """(program, engine dir, build report) of one `ditto build` of `name` into `folder`: the
    program the build loaded is kept (for its attention parameters and weights)."""
    programs = []

    def load_and_keep(*args, **kwargs):
        programs.append(load_program(*args, **kwargs))
        return programs[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEBUG_ARTIFACTS_DIR", str(folder / "artifacts"))
        mp.setattr(build_module, "load_program", load_and_keep)
        path = build(name, folder / "engine", dtype=NAMES[dtype] if dtype is not None else None, **options)
    report = json.loads((folder / "artifacts" / "build_report.json").read_text())
    return programs[0], path, report
