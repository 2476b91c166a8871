"""`ditto.moe`'s routers and activation beyond TensorRT-LLM 0.x's two modes: grouped top-k
(DeepSeek-V3 / GLM-4-MoE with n_group > 1), the top-k on biased raw logits (Kolibri1),
PhiMoE's sparse mixer, and the clamped SwiGLU (GPT-OSS / MiniMax-M3): the reference kernel
against an independent token-by-token computation, and the TensorRT lowering replayed against
the op (`ditto/trt/converters/moe.py` routes in the same layers the plugin lowering uses)."""

from __future__ import annotations

import math

import pytest
import torch

from ditto.ops import moe as moe_op  # noqa: F401  (registers torch.ops.ditto.moe)


def _choose(values: list[float], k: int) -> list[int]:
    return sorted(range(len(values)), key=lambda e: -values[e])[:k]


def _route_token(logits: list[float], bias, case: dict) -> list[tuple[int, float]]:
    """One token's (expert, weight) pairs, written out from the models' own descriptions."""
    k, E = case["top_k"], len(logits)
    if case.get("mode") == 2:  # PhiMoE sparsemixer, inference branch
        eps, masked, out = case["eps"], list(logits), []
        for _ in range(2):
            top = max(masked)
            e = masked.index(top)
            keep = [m if (top - s) / max(abs(s), top) <= 2 * eps else -math.inf for s, m in zip(logits, masked)]
            z = sum(math.exp(v - top) for v in keep if v != -math.inf)
            out.append((e, math.exp(keep[e] - top) / z))
            masked[e] = -math.inf
        return out
    if case["scoring"] == "softmax":
        top = max(logits)
        z = sum(math.exp(v - top) for v in logits)
        scores = [math.exp(v - top) / z for v in logits]
    else:
        scores = [1 / (1 + math.exp(-v)) for v in logits]
    base = logits if case.get("selection") == "logits" else scores
    choice = [b + (bias[e] if bias is not None else 0.0) for e, b in enumerate(base)]
    groups = case.get("n_group", 1)
    if groups > 1:
        size = E // groups
        group_score = [sum(sorted(choice[g * size:(g + 1) * size], reverse=True)[:case["group_top"]]) for g in range(groups)]
        kept = set(_choose(group_score, case["topk_group"]))
        choice = [c if e // size in kept else -math.inf for e, c in enumerate(choice)]
    chosen = _choose(choice, k)
    weights = [scores[e] for e in chosen]
    if case["mode"] == 1:
        weights = [w / sum(weights) for w in weights]
    return list(zip(chosen, weights))


CASES = {
    "grouped-v3": dict(top_k=2, mode=1, scoring="sigmoid", bias=True, n_group=4, topk_group=2, group_top=2),
    "grouped-device-limited": dict(top_k=3, mode=0, scoring="softmax", bias=False, n_group=2, topk_group=1, group_top=1),
    "bias-on-logits": dict(top_k=2, mode=0, scoring="sigmoid", bias=True, selection="logits"),
    "sparse-mixer": dict(top_k=2, mode=2, scoring="softmax", bias=False, eps=0.15),
}


def _op_args(case: dict) -> dict:
    return dict(selection=case.get("selection", "scores"), n_group=case.get("n_group", 1),
                topk_group=case.get("topk_group", 1), group_top=case.get("group_top", 1),
                sparse_mixer_epsilon=case.get("eps", 0.0))


def _values(tokens=11, experts=8, seed=0, bias=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(tokens, experts, generator=g)
    return logits, (torch.randn(experts, generator=g) * 0.5 if bias else None)


@pytest.mark.parametrize("name", list(CASES))
def test_routing_matches_a_token_by_token_reading(name):
    case = CASES[name]
    logits, bias = _values(bias=case["bias"])
    weights, ids = moe_op.route(logits, bias, case["top_k"], case["mode"], case["scoring"], 1.0, **{
        k: v for k, v in zip(("selection", "n_group", "topk_group", "group_top", "sparse_mixer_epsilon"),
                             _op_args(case).values())})
    for t in range(logits.shape[0]):
        expected = dict(_route_token(logits[t].tolist(), None if bias is None else bias.tolist(), case))
        got = dict(zip(ids[t].tolist(), weights[t].tolist()))
        assert set(got) == set(expected), (t, got, expected)  # the same experts
        for e in got:  # float32 kernel vs float64 reading of O(1) values
            assert got[e] == pytest.approx(expected[e], rel=1e-5, abs=1e-6), (t, e)


def test_the_sparse_mixer_threshold_changes_the_weights():
    """Kills an epsilon ignored or not doubled: a token whose second logit lies between eps and
    2 eps below the first (relative) keeps it in the first softmax only with the doubled bound."""
    logits = torch.tensor([[1.0, 0.85, -5.0, -5.0]])
    inside, _ = moe_op.sparse_mixer(logits, 2, 0.1)  # 0.15 <= 0.2: both in the first softmax
    outside, _ = moe_op.sparse_mixer(logits, 2, 0.05)  # 0.15 > 0.1: the first weight is 1
    assert inside[0, 0].item() == pytest.approx(1 / (1 + math.exp(-0.15)), rel=1e-6)
    assert outside[0, 0].item() == 1.0


def test_clamped_swiglu_reads_as_its_definition():
    h = torch.tensor([[0.5, 9.0, -9.0, 2.0, 8.0, -9.0]])  # [linear | gate], inter 3
    got = moe_op.apply_activation(h, ("swiglu_clamped", 1.702, 1.0, 7.0))
    expected = []
    for lin, gate in zip([0.5, 9.0, -9.0], [2.0, 8.0, -9.0]):
        lin, gate = max(-7.0, min(7.0, lin)), min(gate, 7.0)
        expected.append((lin + 1.0) * gate / (1 + math.exp(-1.702 * gate)))
    torch.testing.assert_close(got[0], torch.tensor(expected), rtol=1e-6, atol=1e-6)


LOWERING = dict(CASES, **{"clamped-swiglu": dict(top_k=2, mode=1, scoring="softmax", bias=False, activation="swiglu_clamped")})


@pytest.mark.needs_tensorrt("tensorrt_rtx")
@pytest.mark.parametrize("name", list(LOWERING))
def test_native_lowering_replays_the_op(name):
    from tests.converter_check import Fn, N, check

    case = LOWERING[name]
    activation = case.get("activation", "swiglu")
    params = (1.702, 1.0, 0.7) if activation == "swiglu_clamped" else (1.0, 0.0, 0.0)
    experts, hidden, inter = 8, 8, 6
    g = torch.Generator().manual_seed(3)
    weights = dict(fc1=torch.randn(experts, 2 * inter, hidden, generator=g) / hidden**0.5,
                   fc2=torch.randn(experts, hidden, inter, generator=g) / inter**0.5)
    _, bias = _values(bias=case["bias"])
    if bias is not None:
        weights["bias"] = bias
    extra = _op_args(case)

    def fn(m, x, logits):
        return torch.ops.ditto.moe(x, logits, m.fc1, m.fc2, None, None, getattr(m, "bias", None), experts,
                                   case["top_k"], case["mode"], case["scoring"], activation, 1.0, extra["selection"],
                                   extra["n_group"], extra["topk_group"], extra["group_top"],
                                   extra["sparse_mixer_epsilon"], *params)

    def inputs(tokens, seed):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(tokens, hidden, generator=g), torch.randn(tokens, experts, generator=g) * 2

    # dense TensorRT computation vs the sparse reference: same products, other summation order
    check(Fn(fn, **weights), inputs(9, 1), ({0: N}, {0: N}), others=[inputs(5, 2)], rtol=1e-5, atol=1e-5)
