"""GPT-OSS experts through the MoE pass, on the architecture sweep's tiny random gpt_oss config
(transformers' own modeling code): gate_up_proj with INTERLEAVED gate/up columns (gate = [..., ::2],
up = [..., 1::2]), biases on both expert projections, the clamped SwiGLU ((clamp(up) + 1) * glu,
alpha 1.702, limit 7), and a router with a bias whose weights are the softmax over the top-k logits.

- the pass reads off the clamped SwiGLU's parameters by probing and routes RENORMALIZE (softmax over
  the top-k logits = top-k of the softmax, renormalised);
- fc1 reaches the op in its one layout, [linear | gate] rows (the de-interleaved gate_up_proj,
  transposed to rows = outputs), its bias likewise: checked entry by entry against the checkpoint;
- hf vs fx vs replay logits in float32 within the project's 1e-4 bound (tests/parity.py), with the
  expert and router biases drawn large enough that dropping or misplacing any of them fails it;
- TensorRT-LLM's MoE plugin refuses the clamped SwiGLU (its swiglu_bias has no alpha/beta/limit);
- `Narrow` with a step (how the interleaved halves are read) on its own.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from ditto.models.weights import InMemoryTensor, Narrow, read_source
from ditto.pipeline import load_program
from ditto.trtllm.moe import plugin_unsupported
from tests.tiny_models import arch_sweep, assert_backends_match_hf


def _save_gpt_oss(directory) -> str:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(arch_sweep().tiny_config("gpt_oss")).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1 or name.endswith("bias"):  # expert [E, out] and router [E] biases too: nonzero
                p.normal_(0, 0.2)
    model.save_pretrained(directory)
    return str(directory)


@pytest.mark.needs_tensorrt
def test_interleaved_clamped_experts_are_recognised_and_reordered(tmp_path):
    path = _save_gpt_oss(tmp_path)
    program = load_program(path)
    assert len(program.moe) == 2
    for layer in program.moe:
        assert layer["activation"] == "swiglu_clamped"
        assert layer["activation_params"] == (1.702, 1.0, 7.0)
        assert (layer["normalization_mode"], layer["scoring"], layer["top_k"]) == (1, "softmax", 2)
        assert layer["has_bias"] and layer["has_fc2_bias"] and not layer["has_expert_bias"]
    checkpoint = load_file(f"{path}/model.safetensors")
    node = next(n for n in program.graph_module.graph.nodes if n.target == torch.ops.ditto.moe.default)
    fc1, fc1_bias = (program.weights.load(a.target) for a in (node.args[2], node.args[4]))
    gate_up = checkpoint["model.layers.0.mlp.experts.gate_up_proj"].transpose(1, 2)  # [E, 2I, H]: rows = outputs
    gate_up_bias = checkpoint["model.layers.0.mlp.experts.gate_up_proj_bias"]
    # the op's layout: the linear ("up", odd columns) half first, the gate (even columns) second
    assert torch.equal(fc1, torch.cat((gate_up[:, 1::2], gate_up[:, ::2]), dim=1))
    assert torch.equal(fc1_bias, torch.cat((gate_up_bias[:, 1::2], gate_up_bias[:, ::2]), dim=1))
    # TensorRT-LLM's MoE plugin has no clamped-SwiGLU fields: refused there (TensorRT layers lower it)
    assert "alpha/beta/limit" in plugin_unsupported(program.moe[0])
    assert_backends_match_hf(path, steps=2)


def test_narrow_with_a_step_reads_every_step_th_entry():
    source = InMemoryTensor(torch.arange(24.0).reshape(2, 12))
    assert torch.equal(read_source(Narrow(source, 1, 1, 6, 2)), torch.arange(24.0).reshape(2, 12)[:, 1::2])
    assert torch.equal(read_source(Narrow(source, 1, 3, 4)), torch.arange(24.0).reshape(2, 12)[:, 3:7])
