"""`torch.ops.ditto.moe`: TensorRT-LLM's MixtureOfExperts as a torch op, with a reference kernel.

Semantics follow TensorRT-LLM's MoE layer and plugin (`tensorrt_llm/layers/moe.py`, commit
03961722f65265573cad179baca3bc5fe8c03f76; facts in `ditto/trtllm/moe.py`):

- `hidden_states` [num_tokens, hidden] (any float dtype), `router_logits` [num_tokens,
  num_experts] (the plugin's `routing` input; routed in float32).
- Routing, `normalization_mode` as TensorRT-LLM's `MoeConfig.ExpertScaleNormalizationMode`:
  0 NONE: weights = top-k of softmax(logits); 1 RENORMALIZE: top-k of softmax(logits),
  divided by their sum (= softmax over the top-k logits, how TensorRT-LLM computes it).
  Extensions TensorRT-LLM's plugin does not have (the plugin lowering refuses them):
  `scoring="sigmoid"` (scores = sigmoid(logits)), `expert_bias` [num_experts] added to the
  scores for the choice of experts only (the weights stay unbiased), `routed_scaling`
  multiplying the final weights.
- `fc1_weight` [num_experts, fc1_out, hidden] and `fc2_weight` [num_experts, hidden, inter]
  (TensorRT-LLM's `fc` / `proj`, rows = outputs). Gated activations ("swiglu", "geglu"):
  fc1_out = 2 * inter and, as in TensorRT-LLM, the LEFT half is the linear part and the
  RIGHT half the gate: h = left * act(right). Others ("silu", "gelu", "gelu_tanh", "relu",
  "identity"): h = act(fc1 x). Optional biases [num_experts, out].
- output[t] = sum_k weight[t, k] * fc2_{e(t,k)}(h), accumulated in float32 and returned in
  the dtype of `hidden_states`.
"""

from __future__ import annotations

import inspect
from typing import Optional

import torch

GATED = {"swiglu": "silu", "geglu": "gelu"}
_ACTIVATIONS = {
    "silu": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
    "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "relu": torch.relu,
    "identity": lambda x: x,
}
ACTIVATIONS = tuple(_ACTIVATIONS) + tuple(GATED)
NORMALIZATION_NONE, NORMALIZATION_RENORMALIZE = 0, 1


@torch.library.custom_op("ditto::moe", mutates_args=())
def moe(
    hidden_states: torch.Tensor,
    router_logits: torch.Tensor,
    fc1_weight: torch.Tensor,
    fc2_weight: torch.Tensor,
    fc1_bias: Optional[torch.Tensor],
    fc2_bias: Optional[torch.Tensor],
    expert_bias: Optional[torch.Tensor],
    num_experts: int,
    top_k: int,
    normalization_mode: int,
    scoring: str,
    activation: str,
    routed_scaling: float,
) -> torch.Tensor:
    """Reference kernel in plain torch (see the module docstring)."""
    weights, experts = route(router_logits, expert_bias, top_k, normalization_mode, scoring, routed_scaling)
    out = torch.zeros(hidden_states.shape, dtype=torch.float32, device=hidden_states.device)
    for e in range(num_experts):
        token, slot = torch.where(experts == e)
        if token.numel() == 0:
            continue
        h = expert_mlp(hidden_states[token], e, fc1_weight, fc2_weight, fc1_bias, fc2_bias, activation)
        out.index_add_(0, token, h.float() * weights[token, slot, None])
    return out.to(hidden_states.dtype)


def route(logits, expert_bias, top_k: int, normalization_mode: int, scoring: str, routed_scaling: float):
    """(weights [T, k] float32, expert ids [T, k]) as TensorRT-LLM routes (module docstring)."""
    logits = logits.float()
    scores = torch.softmax(logits, dim=-1) if scoring == "softmax" else torch.sigmoid(logits)
    choice = scores + expert_bias.float() if expert_bias is not None else scores
    experts = torch.topk(choice, top_k, dim=-1).indices
    weights = scores.gather(-1, experts)
    if normalization_mode == NORMALIZATION_RENORMALIZE:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights * routed_scaling, experts


def expert_mlp(x, e: int, fc1_weight, fc2_weight, fc1_bias, fc2_bias, activation: str) -> torch.Tensor:
    """Expert `e` on tokens `x`, in the dtype of the weights."""
    h = torch.nn.functional.linear(x, fc1_weight[e], fc1_bias[e] if fc1_bias is not None else None)
    h = apply_activation(h, activation)
    return torch.nn.functional.linear(h, fc2_weight[e], fc2_bias[e] if fc2_bias is not None else None)


def apply_activation(h: torch.Tensor, activation: str) -> torch.Tensor:
    if activation in GATED:
        linear, gate = h.chunk(2, dim=-1)
        return linear * _ACTIVATIONS[GATED[activation]](gate)
    return _ACTIVATIONS[activation](h)


_SIGNATURE = inspect.signature(moe._init_fn)


@moe.register_fake
def _(*args, **kwargs):
    hidden_states = _SIGNATURE.bind(*args, **kwargs).arguments["hidden_states"]
    return torch.empty_like(hidden_states)
