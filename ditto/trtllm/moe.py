"""TensorRT-LLM's MoE configuration for the recognised `ditto.moe` layers.

Facts (read from NVIDIA/TensorRT-LLM, recorded here; re-check when the target moves):
- `tensorrt_llm/layers/moe.py` (commit 03961722f65265573cad179baca3bc5fe8c03f76):
  `MoeConfig.ExpertScaleNormalizationMode` NONE = 0 (softmax, then top-k), RENORMALIZE = 1
  (top-k of the logits, softmax over them), SPARSE_MIXER = 2; the plugin `MixtureOfExperts`
  version "1" takes the float32 router logits as `routing`; `fc` weights are [experts,
  fc_out, hidden] with the linear half left and the gated half right (`w3` then `w1`), `proj`
  [experts, hidden, inter]; activation ids gelu 0, relu 1, silu 2, swiglu 3, geglu 4,
  identity 5.
- A later revision of the same file adds DEVICE_LIMITED = 3, DEVICE_LIMITED_RENORM = 4 and
  the fields `shared_expert_intermediate_size`, `device_limited_n_group`,
  `device_limited_topk_group`, `device_limited_routed_scaling_factor`; engine config.json
  files written by TensorRT-LLM 0.17 carry `pretrained_config.moe` with exactly these nine
  keys: num_experts, shared_expert_intermediate_size, top_k, normalization_mode,
  sparse_mixer_epsilon, tp_mode, device_limited_n_group, device_limited_topk_group,
  device_limited_routed_scaling_factor.

Sigmoid scoring and an expert bias (selection only) have no TensorRT-LLM MoeConfig field in
these revisions: `plugin_unsupported()` says so and the plugin lowering must refuse them.
"""

from __future__ import annotations

from ditto.errors import DittoError

NO_MOE = {
    "num_experts": 0,
    "shared_expert_intermediate_size": 0,
    "top_k": 0,
    "normalization_mode": 0,
    "sparse_mixer_epsilon": 0.01,
    "tp_mode": 0,
    "device_limited_n_group": 0,
    "device_limited_topk_group": 0,
    "device_limited_routed_scaling_factor": 1.0,
}
PLUGIN_ACTIVATIONS = {"gelu": 0, "relu": 1, "silu": 2, "swiglu": 3, "geglu": 4, "identity": 5}


def moe_config(layers: list[dict], hf_config) -> dict:
    """`pretrained_config.moe` for the recognised MoE layers (NO_MOE when there are none)."""
    if not layers:
        return dict(NO_MOE)
    keys = ("num_experts", "top_k", "normalization_mode", "scoring", "activation", "routed_scaling", "has_expert_bias")
    first = {k: layers[0][k] for k in keys}
    for layer in layers[1:]:
        if {k: layer[k] for k in keys} != first:
            raise DittoError(
                f"MoE layers differ ({first} vs {({k: layer[k] for k in keys})}); TensorRT-LLM's config has one MoE "
                "configuration per model"
            )
    shared = getattr(hf_config, "shared_expert_intermediate_size", None)
    if shared is None and getattr(hf_config, "n_shared_experts", None):
        shared = hf_config.n_shared_experts * getattr(hf_config, "moe_intermediate_size", 0)
    return dict(
        NO_MOE,
        num_experts=first["num_experts"],
        top_k=first["top_k"],
        normalization_mode=first["normalization_mode"],
        shared_expert_intermediate_size=int(shared or 0),
        device_limited_routed_scaling_factor=float(first["routed_scaling"]),
    )


def plugin_unsupported(layer: dict) -> str | None:
    """Why TensorRT-LLM's MoE plugin cannot compute `layer`, or None."""
    if layer["scoring"] != "softmax":
        return f"{layer['scoring']} router scores (the plugin routes with softmax)"
    if layer["has_expert_bias"]:
        return "an expert bias for selection (no MoeConfig field)"
    if layer["routed_scaling"] != 1.0:
        return f"a routed scaling factor {layer['routed_scaling']} outside device-limited routing"
    if layer["activation"] not in PLUGIN_ACTIVATIONS:
        return f"activation {layer['activation']!r}"
    return None
