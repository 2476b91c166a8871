"""Replay of IAttention, RotaryEmbedding and KVCacheUpdate, layers only tests build (ditto/replay/attention.py),
against attention written in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ditto.replay import ReplayError, replay_network
from tests.replay._helpers import (
    Net,
    randn,
    rng,
    trt,
)

# ---- attention, rotary embedding, KV-cache update -----------------------------------------


def _numpy_attention(q, k, v, allowed):
    """Plain attention of one sequence: q [Hq, Sq, D], k/v [Hkv, Skv, D], allowed [Sq, Skv]."""
    group = q.shape[0] // k.shape[0]
    out = np.zeros(q.shape, np.float64)
    for h in range(q.shape[0]):
        scores = q[h] @ k[h // group].T
        scores = np.where(allowed, scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        out[h] = (p / p.sum(-1, keepdims=True)) @ v[h // group]
    return out


@pytest.mark.parametrize("causal", ["NONE", "UPPER_LEFT", "LOWER_RIGHT"])
def test_attention_padded_gqa(causal):
    q, k, v = randn(2, 4, 3, 8), randn(2, 2, 5, 8), randn(2, 2, 5, 8)
    net = Net()
    att = net.network.add_attention_v2(net.input("q", q), net.input("k", k), net.input("v", v),
                                       trt.AttentionNormalizationOp.SOFTMAX, getattr(trt.CausalMaskKind, causal))
    att.decomposable = True
    net.out(att)
    rows, cols = np.arange(3)[:, None], np.arange(5)[None, :]
    allowed = {"NONE": np.ones((3, 5), bool), "UPPER_LEFT": cols <= rows, "LOWER_RIGHT": cols <= rows + 2}[causal]
    expected = np.stack([_numpy_attention(q[b], k[b], v[b], allowed) for b in range(2)])
    np.testing.assert_allclose(net.run(q=q, k=k, v=v)["out"], expected, rtol=1e-5, atol=1e-5)
    assert net.builds()


def test_attention_padded_key_value_lengths():
    q, k, v = randn(2, 2, 3, 4), randn(2, 2, 5, 4), randn(2, 2, 5, 4)
    lengths = np.array([5, 2], dtype=np.int32)
    net = Net()
    att = net.network.add_attention_v2(net.input("q", q), net.input("k", k), net.input("v", v),
                                       trt.AttentionNormalizationOp.SOFTMAX, trt.CausalMaskKind.NONE)
    att.key_value_lengths = net.input("lengths", lengths)
    net.out(att)
    out = net.run(q=q, k=k, v=v, lengths=lengths)["out"]
    for b in range(2):
        allowed = np.broadcast_to(np.arange(5)[None, :] < lengths[b], (3, 5))
        np.testing.assert_allclose(out[b], _numpy_attention(q[b], k[b], v[b], allowed), rtol=1e-5, atol=1e-5)
    att.causal_kind = trt.CausalMaskKind.LOWER_RIGHT
    with pytest.raises(ReplayError, match="LOWER_RIGHT"):
        net.run(q=q, k=k, v=v, lengths=lengths)


@pytest.mark.parametrize("kind", ["bool", "add"])
def test_attention_masks(kind):
    q, k, v = randn(1, 2, 3, 4), randn(1, 2, 3, 4), randn(1, 2, 3, 4)
    allowed = np.array([[True, False, True], [True, True, False], [False, True, True]])
    mask = allowed[None, None] if kind == "bool" else np.where(allowed, 0, -1e9).astype(np.float32)[None, None]
    net = Net()
    att = net.network.add_attention_v2(net.input("q", q), net.input("k", k), net.input("v", v),
                                       trt.AttentionNormalizationOp.SOFTMAX, trt.CausalMaskKind.NONE)
    att.mask = net.input("mask", mask)
    net.out(att)
    np.testing.assert_allclose(net.run(q=q, k=k, v=v, mask=mask)["out"][0], _numpy_attention(q[0], k[0], v[0], allowed), rtol=1e-5, atol=1e-5)


def test_attention_packed_sequences():
    q_len, kv_len = [2, 1, 4], [3, 5, 4]
    q, k, v = randn(sum(q_len), 4, 8), randn(sum(kv_len), 2, 8), randn(sum(kv_len), 2, 8)
    q_cum, kv_cum = np.cumsum([0] + q_len).astype(np.int32), np.cumsum([0] + kv_len).astype(np.int32)
    net = Net()
    att = net.network.add_attention_v2(net.input("q", q), net.input("k", k), net.input("v", v),
                                       trt.AttentionNormalizationOp.SOFTMAX, trt.CausalMaskKind.LOWER_RIGHT)
    att.query_form = trt.AttentionIOForm.PACKED_NHD
    att.key_value_form = trt.AttentionIOForm.PACKED_NHD
    att.query_lengths = net.input("ql", q_cum)
    att.key_value_lengths = net.input("kl", kv_cum)
    net.out(att)
    out = net.run(q=q, k=k, v=v, ql=q_cum, kl=kv_cum)["out"]
    for b in range(3):
        sq, skv = q_len[b], kv_len[b]
        allowed = np.arange(skv)[None, :] <= np.arange(sq)[:, None] + (skv - sq)
        qs, ks = slice(q_cum[b], q_cum[b + 1]), slice(kv_cum[b], kv_cum[b + 1])
        expected = _numpy_attention(q[qs].transpose(1, 0, 2), k[ks].transpose(1, 0, 2), v[ks].transpose(1, 0, 2), allowed)
        np.testing.assert_allclose(out[qs], expected.transpose(1, 0, 2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("interleaved, rotary_dim, positions", [(False, 0, False), (True, 0, False), (False, 4, True), (True, 4, True)])
def test_rotary_embedding(interleaved, rotary_dim, positions):
    b, h, s, d = 2, 3, 5, 8
    r = rotary_dim or d
    x = randn(b, h, s, d)
    angles = rng.uniform(-3, 3, size=(7 if positions else b, s if not positions else r // 2))
    if not positions:
        angles = rng.uniform(-3, 3, size=(b, s, r // 2))
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    pos = rng.integers(0, 7, size=(b, s)).astype(np.int64)
    net = Net()
    layer = net.network.add_rotary_embedding(net.input("x", x), net.input("cos", cos), net.input("sin", sin), interleaved, rotary_dim)
    if positions:
        layer.set_input(3, net.input("pos", pos))
    net.out(layer)
    feed = dict(x=x, cos=cos, sin=sin, **({"pos": pos} if positions else {}))
    # RoPE as complex rotation: pair (a, b) is a + ib, multiplied by e^(i angle)
    theta = angles[pos] if positions else angles  # [b, s, r/2]
    first = x[..., 0:r:2] if interleaved else x[..., : r // 2]
    second = x[..., 1:r:2] if interleaved else x[..., r // 2 : r]
    z = (first + 1j * second) * np.exp(1j * theta.astype(np.float32))[:, None]
    expected = x.copy()
    if interleaved:
        expected[..., 0:r:2], expected[..., 1:r:2] = z.real, z.imag
    else:
        expected[..., : r // 2], expected[..., r // 2 : r] = z.real, z.imag
    np.testing.assert_allclose(net.run(**feed)["out"], expected, rtol=1e-5, atol=1e-5)


def test_kv_cache_update_in_place_padded_and_packed():
    cache = np.zeros((2, 3, 6, 4), np.float32)
    update = randn(2, 3, 2, 4)
    write = np.array([1, 4], dtype=np.int32)
    net = Net()
    layer = net.network.add_kv_cache_update(net.input("cache", cache), net.input("update", update), net.input("write", write), trt.KVCacheMode.LINEAR)
    net.out(layer)
    assert net.builds()
    cache_t = torch.from_numpy(cache.copy())
    out = replay_network(net.network, {"cache": cache_t, "update": torch.from_numpy(update), "write": torch.from_numpy(write)})["out"]
    expected = cache.copy()
    expected[0, :, 1:3], expected[1, :, 4:6] = update[0], update[1]
    assert out is cache_t  # the engine updates the cache in place
    np.testing.assert_array_equal(out.numpy(), expected)
    with pytest.raises(ReplayError, match="drops such updates silently"):
        replay_network(net.network, {"cache": cache_t, "update": torch.from_numpy(update), "write": torch.tensor([0, 5], dtype=torch.int32)})

    packed = randn(5, 3, 4)  # sequences of 2 and 3 tokens
    lengths = np.array([0, 2, 5], dtype=np.int32)
    net = Net()
    layer = net.network.add_kv_cache_update(net.input("cache", cache), net.input("update", packed), net.input("write", write), trt.KVCacheMode.LINEAR)
    layer.update_form = trt.AttentionIOForm.PACKED_NHD
    layer.update_lengths = net.input("lengths", lengths)
    net.out(layer)
    out = net.run(cache=cache, update=packed, write=np.array([0, 3], np.int32), lengths=lengths)["out"]
    expected = cache.copy()
    expected[0, :, 0:2] = packed[0:2].transpose(1, 0, 2)
    expected[1, :, 3:6] = packed[2:5].transpose(1, 0, 2)
    np.testing.assert_array_equal(out, expected)
