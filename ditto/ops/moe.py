"""`torch.ops.ditto.moe`: TensorRT-LLM's MixtureOfExperts as a torch op, with a reference kernel.

Semantics follow TensorRT-LLM's MoE layer and plugin (`tensorrt_llm/layers/moe.py`, commit
03961722f65265573cad179baca3bc5fe8c03f76; facts in `ditto/trtllm/moe.py`):

- `hidden_states` [num_tokens, hidden] (any float dtype), `router_logits` [num_tokens,
  num_experts] (the plugin's `routing` input; routed in float32).
- Routing, `normalization_mode` as TensorRT-LLM's `MoeConfig.ExpertScaleNormalizationMode`:
  0 NONE: weights = top-k of softmax(logits); 1 RENORMALIZE: top-k of softmax(logits),
  divided by their sum (= softmax over the top-k logits, how TensorRT-LLM computes it).
  2 SPARSE_MIXER (PhiMoE, top-2 only): twice, take the largest remaining logit m; mask every
  logit s with (m - s) / max(|s|, m) > 2 * `sparse_mixer_epsilon`; the weight is the softmax
  of the unmasked remaining logits at the chosen expert, which is then removed.
  Extensions of TensorRT-LLM's `MoeConfig` modes (TensorRT-LLM 1.x routes outside the plugin,
  in TensorRT layers, so ditto's plugin lowering routes them the same way):
  `scoring="sigmoid"` (scores = sigmoid(logits)); `expert_bias` [num_experts] added for the
  choice of experts only (the weights stay unbiased) to the scores, or to the raw logits with
  `selection="logits"`; group-limited choice (`n_group` > 1, DeepSeek-V3 style, TensorRT-LLM's
  DEVICE_LIMITED with `group_top=1`): each group of num_experts / n_group experts scores the
  sum of its `group_top` largest choice values, only the `topk_group` best groups stay
  eligible; `routed_scaling` multiplying the final weights.
- `fc1_weight` [num_experts, fc1_out, hidden] and `fc2_weight` [num_experts, hidden, inter]
  (TensorRT-LLM's `fc` / `proj`, rows = outputs). Gated activations ("swiglu", "geglu"):
  fc1_out = 2 * inter and, as in TensorRT-LLM, the LEFT half is the linear part and the
  RIGHT half the gate: h = left * act(right). "swiglu_clamped" (GPT-OSS / MiniMax-M3 style,
  TensorRT-LLM's `swiglu_bias` family): g = min(right, limit), l = clamp(left, -limit, limit),
  h = (l + `activation_beta`) * g * sigmoid(`activation_alpha` * g); `activation_limit` <= 0
  means no clamp. Others ("silu", "gelu", "gelu_tanh", "relu",
  "identity"): h = act(fc1 x). Optional biases [num_experts, out].
- output[t] = sum_k weight[t, k] * fc2_{e(t,k)}(h), accumulated in float32 and returned in
  the dtype of `hidden_states`.
"""

from __future__ import annotations

import inspect
from typing import Optional

import torch

GATED = {"swiglu": "silu", "geglu": "gelu", "swiglu_clamped": "silu"}
_ACTIVATIONS = {
    "silu": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
    "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "relu": torch.relu,
    "identity": lambda x: x,
}
ACTIVATIONS = tuple(_ACTIVATIONS) + tuple(GATED)
NORMALIZATION_NONE, NORMALIZATION_RENORMALIZE, NORMALIZATION_SPARSE_MIXER = 0, 1, 2


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
    selection: str = "scores",
    n_group: int = 1,
    topk_group: int = 1,
    group_top: int = 1,
    sparse_mixer_epsilon: float = 0.0,
    activation_alpha: float = 1.0,
    activation_beta: float = 0.0,
    activation_limit: float = 0.0,
) -> torch.Tensor:
    """Reference kernel in plain torch (see the module docstring)."""
    weights, experts = route(router_logits, expert_bias, top_k, normalization_mode, scoring, routed_scaling, selection,
                             n_group, topk_group, group_top, sparse_mixer_epsilon)
    act = (activation, activation_alpha, activation_beta, activation_limit)
    out = torch.zeros(hidden_states.shape, dtype=torch.float32, device=hidden_states.device)
    for e in range(num_experts):
        token, slot = torch.where(experts == e)
        if token.numel() == 0:
            continue
        h = expert_mlp(hidden_states[token], e, fc1_weight, fc2_weight, fc1_bias, fc2_bias, act)
        out.index_add_(0, token, h.float() * weights[token, slot, None])
    return out.to(hidden_states.dtype)


def route(logits, expert_bias, top_k: int, normalization_mode: int, scoring: str, routed_scaling: float,
          selection: str = "scores", n_group: int = 1, topk_group: int = 1, group_top: int = 1,
          sparse_mixer_epsilon: float = 0.0):
    """(weights [T, k] float32, expert ids [T, k]) as TensorRT-LLM routes (module docstring)."""
    logits = logits.float()
    if normalization_mode == NORMALIZATION_SPARSE_MIXER:
        weights, experts = sparse_mixer(logits, top_k, sparse_mixer_epsilon)
        return weights * routed_scaling, experts
    scores = torch.softmax(logits, dim=-1) if scoring == "softmax" else torch.sigmoid(logits)
    choice = logits if selection == "logits" else scores
    choice = choice + expert_bias.float() if expert_bias is not None else choice
    if n_group > 1:
        choice = group_limited(choice, n_group, topk_group, group_top)
    experts = torch.topk(choice, top_k, dim=-1).indices
    weights = scores.gather(-1, experts)
    if normalization_mode == NORMALIZATION_RENORMALIZE:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights * routed_scaling, experts


def group_limited(choice: torch.Tensor, n_group: int, topk_group: int, group_top: int) -> torch.Tensor:
    """`choice` with the experts outside the `topk_group` best groups set to -inf; a group's
    score is the sum of its `group_top` largest values."""
    tokens, experts = choice.shape
    grouped = choice.view(tokens, n_group, experts // n_group)
    group_scores = grouped.topk(group_top, dim=-1).values.sum(dim=-1)
    keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter(1, group_scores.topk(topk_group, dim=-1).indices, True)
    return grouped.masked_fill(~keep[..., None], float("-inf")).view(tokens, experts)


def sparse_mixer(logits: torch.Tensor, top_k: int, epsilon: float):
    """PhiMoE's sparse mixer at inference (TensorRT-LLM SPARSE_MIXER): (weights, ids) [T, k]."""
    if top_k != 2:
        raise ValueError(f"the sparse mixer picks 2 experts, not {top_k}")
    remaining, weights, ids = logits, [], []
    for _ in range(top_k):
        top, chosen = remaining.max(dim=-1, keepdim=True)
        masked = (top - logits) / logits.abs().clamp(min=top) > 2 * epsilon
        gates = torch.softmax(remaining.masked_fill(masked, float("-inf")), dim=-1)
        weights.append(gates.gather(-1, chosen))
        ids.append(chosen)
        remaining = remaining.scatter(-1, chosen, float("-inf"))
    return torch.cat(weights, dim=-1), torch.cat(ids, dim=-1)


def expert_mlp(x, e: int, fc1_weight, fc2_weight, fc1_bias, fc2_bias, activation) -> torch.Tensor:
    """Expert `e` on tokens `x`, in the dtype of the weights."""
    h = torch.nn.functional.linear(x, fc1_weight[e], fc1_bias[e] if fc1_bias is not None else None)
    h = apply_activation(h, activation)
    return torch.nn.functional.linear(h, fc2_weight[e], fc2_bias[e] if fc2_bias is not None else None)


def apply_activation(h: torch.Tensor, activation) -> torch.Tensor:
    """`activation`: a name, or (name, alpha, beta, limit) for the parametrised ones."""
    activation, alpha, beta, limit = activation if isinstance(activation, tuple) else (activation, 1.0, 0.0, 0.0)
    if activation == "swiglu_clamped":
        linear, gate = h.chunk(2, dim=-1)
        if limit > 0:
            linear, gate = linear.clamp(-limit, limit), gate.clamp(max=limit)
        return (linear + beta) * gate * torch.sigmoid(alpha * gate)
    if activation in GATED:
        linear, gate = h.chunk(2, dim=-1)
        return linear * _ACTIVATIONS[GATED[activation]](gate)
    return _ACTIVATIONS[activation](h)


_SIGNATURE = inspect.signature(moe._init_fn)


@moe.register_fake
def _(*args, **kwargs):
    hidden_states = _SIGNATURE.bind(*args, **kwargs).arguments["hidden_states"]
    return torch.empty_like(hidden_states)
