"""A fast kernel for `torch.ops.ditto.gpt_attention`: the whole batch in one SDPA call.

The reference kernel (`ditto.ops.gpt_attention`) is the specification: it loops over the
sequences in Python and reads `sequence_length` back to the host every layer. This kernel
computes the same function for the whole batch at once, with no host sync per layer:

- The step's layout (which token belongs to which sequence at which position, which cache
  slots to write and read, the attention mask) depends only on the step's lengths and block
  offsets, the same for every layer. It is built once per step on the host, uploaded once,
  and reused by every layer of that step (`_StepLayout`, memoised on the step's
  `sequence_length` tensor object).
- New K/V are written into the paged cache with one indexed store each; each sequence's keys
  and values are read back with one gather into a padded [batch, kv_heads, max_len, head]
  tensor; padding and the causal / sliding-window rule become a boolean mask.
- GQA/MQA without copying K/V: the query heads sharing one KV head are folded into the
  query-length axis ([batch, kv_heads, group * queries, head]), so one SDPA call serves them.
- Scores and softmax in float32, as in the reference (q, k, v are upcast before SDPA).
- ALiBi: the boolean mask becomes a float one, slope_h * (key - query) where allowed, -inf elsewhere.

It computes only what it knows. `supported(params)` lists the parameters it implements; a call
with anything else (a soft-cap, a parameter this module has never heard of at a non-default
value) runs the reference kernel instead. Tests compare this kernel with the reference on
random shapes (tests/ops/test_gpt_attention_batched.py).
"""

from __future__ import annotations

import inspect
import weakref

import torch
import torch.nn.functional as F

from ditto.errors import DittoError
from ditto.ops.gpt_attention import _SIGNATURE, gpt_attention
from ditto.ops.kv_cache import layer_unit, pool_at
from ditto.ops.rope import apply_rope

# The parameters this kernel implements, with the values it implements. Any other parameter of
# the op must be at its declared default (new parameters default to "off") or the call falls
# back to the reference kernel.
_IMPLEMENTED = {
    "layer_idx": None,  # any value
    "num_heads": None,
    "num_kv_heads": None,
    "head_size": None,
    "q_scaling": None,
    "position_embedding_type": {"learned_absolute", "rope_gpt_neox", "rope_gptj", "alibi"},
    "rotary_embedding_dim": None,
    # the cos/sin table carries the scaling; the kernel only reads rows of it, as the reference
    "rotary_embedding_base": None,
    "rotary_embedding_scale_type": None,
    "rotary_embedding_scale": None,
    "rotary_embedding_max_positions": None,
    "rotary_embedding_original_max_positions": None,
    "attn_logit_softcapping_scale": {0.0},  # SDPA cannot cap logits: the reference does it
    "alibi_slopes": None,  # a float mask: slope_h * (key - query) where allowed, -inf elsewhere
    "attention_sinks": {None},  # SDPA has no sink logit: the reference adds it to the denominator
    "query_position_scale": {None},  # per-position query scale: the reference applies it
    "query_norm_after_rope": {None},  # RMSNorm after RoPE: the reference applies it
    "key_norm_after_rope": {None},
    "sliding_window": None,
    "tokens_per_block": None,
    "value_head_size": None,  # informational (MLA padding happens outside the op)
    "query_key_head_size": None,
}


def unsupported(bound: dict, signature: inspect.Signature = _SIGNATURE) -> list[str]:
    """The parameters (name=value) of a bound call that this kernel does not implement."""
    names = [name for name in signature.parameters if name not in _TENSOR_NAMES]
    problems = []
    for name in names:
        value = bound.get(name, signature.parameters[name].default)
        if name in _IMPLEMENTED:
            allowed = _IMPLEMENTED[name]
            if allowed is not None and value not in allowed:
                problems.append(f"{name}={value!r}")
        elif not _is_default(value, signature.parameters[name].default):
            problems.append(f"{name}={value!r}")
    return problems


def _is_default(value, default) -> bool:
    if default is inspect.Parameter.empty:
        return False
    if isinstance(value, torch.Tensor) or isinstance(default, torch.Tensor):
        return value is default
    return value == default


# The op's tensor inputs as this kernel knows them (deliberately not read from the op: a tensor
# input added later must be at its default, e.g. None, or the reference kernel runs).
_TENSOR_NAMES = {
    "qkv", "sequence_length", "host_past_key_value_lengths", "host_max_attention_window_sizes",
    "host_sink_token_length", "context_lengths", "cache_indirection", "host_request_types",
    "kv_cache_block_offsets", "host_kv_cache_block_offsets", "host_kv_cache_pool_pointers",
    "host_kv_cache_pool_mapping", "rotary_inv_freq", "rotary_cos_sin", "host_context_lengths",
    "host_runtime_perf_knobs", "host_context_progress",
}


def batched_gpt_attention(*args, **kwargs) -> torch.Tensor:
    """Drop-in for `torch.ops.ditto.gpt_attention` (same arguments); falls back to the
    reference kernel for parameters it does not implement."""
    bound = _SIGNATURE.bind(*args, **kwargs)
    values = bound.arguments
    if unsupported(values):
        return gpt_attention(*args, **kwargs)
    return _attend(**{**{k: v.default for k, v in _SIGNATURE.parameters.items()}, **values})


def batched_gpt_attention_unchecked(*args, **kwargs) -> torch.Tensor:
    """`batched_gpt_attention` for a call site already checked with `unsupported` (an FX node
    whose parameters are constants): the tensors in the op's order, the parameters by name."""
    return _attend(*args, **kwargs)


def _rope_halves(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary_dim: int) -> torch.Tensor:
    """The reference's rope_gpt_neox rotation in fewer kernels, with the same products and sums:
    (first, second) -> (first cos - second sin, second cos + first sin) is x * [cos, cos] +
    [-second, first] * [sin, sin]; cos/sin [tokens, 1, rotary_dim] already doubled."""
    rot = x[..., :rotary_dim] if rotary_dim < x.shape[-1] else x
    half = rotary_dim // 2
    turned = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)
    out = rot * cos + turned * sin
    return out if rot is x else torch.cat((out, x[..., rotary_dim:]), dim=-1)


class _StepLayout:
    """Everything about one step that every layer shares, on the device."""

    def __init__(self, sequence_length, host_request_types, host_context_lengths, host_offsets, tokens_per_block,
                 sliding_window, device):
        totals = sequence_length.tolist()  # the step's one host sync
        types = host_request_types.tolist()
        counts = [int(host_context_lengths[b]) if t == 0 else 1 for b, t in enumerate(types)]
        batch = len(counts)
        self.batch = batch
        self.max_new = max(counts)
        self.max_len = max(totals)
        # token t of the packed qkv is query row (b, i): i-th new token of sequence b
        token_batch = torch.cat([torch.full((n,), b, dtype=torch.int64) for b, n in enumerate(counts)])
        token_row = torch.cat([torch.arange(n, dtype=torch.int64) for n in counts])
        token_pos = torch.cat([torch.arange(t - n, t, dtype=torch.int64) for n, t in zip(counts, totals)])
        tpb = tokens_per_block
        self.pool_idx = 0  # one pool (what ditto's runtimes allocate); other layers are refused in layer()
        offsets = host_offsets[self.pool_idx].long()  # [batch, 2, max_blocks]
        max_blocks = offsets.shape[-1]
        # write: the K and V unit (of layer 0 of the pool) and slot of each new token
        write_k = offsets[token_batch, 0, token_pos // tpb]
        write_v = offsets[token_batch, 1, token_pos // tpb]
        # read: for every sequence every position < max_len (clamped into its block table)
        positions = torch.arange(self.max_len, dtype=torch.int64)
        blocks = (positions // tpb).clamp(max=max_blocks - 1)
        read_k = offsets[:, 0, blocks]  # [batch, max_len]
        read_v = offsets[:, 1, blocks]
        key_valid = positions[None, :] < torch.tensor(totals)[:, None]  # [batch, max_len]
        # query row i of sequence b sits at position past_b + i; rows past the sequence's new
        # tokens are padding and attend to key 0 only (their output is dropped)
        past = torch.tensor([t - n for n, t in zip(counts, totals)])
        rows = torch.arange(self.max_new)
        query_pos = past[:, None] + rows[None, :]  # [batch, max_new]
        allowed = positions[None, None, :] <= query_pos[:, :, None]
        if sliding_window > 0:
            allowed &= positions[None, None, :] > query_pos[:, :, None] - sliding_window
        allowed &= key_valid[:, None, :]
        padding_row = rows[None, :] >= torch.tensor(counts)[:, None]
        allowed |= padding_row[:, :, None] & (positions == 0)[None, None, :]
        put = lambda x: x.to(device, non_blocking=True)  # noqa: E731
        self.token_batch, self.token_row, self.token_pos = put(token_batch), put(token_row), put(token_pos)
        self.write_units = put(torch.stack((write_k, write_v)))  # [2, tokens]
        self.write_slots = put(token_pos % tpb)
        self.read_units = put(torch.stack((read_k, read_v)))  # [2, batch, max_len]
        self.read_slots = put(positions % tpb)
        self.key_valid = put(key_valid)
        self.mask = put(allowed[:, None])  # [batch, 1, max_new, max_len]
        self.distance = put((positions[None, None, :] - query_pos[:, :, None]).float())  # [batch, max_new, max_len]
        self.sliding_window = sliding_window
        self._layers: dict[tuple, tuple] = {}
        self._cos_sin_key, self._cos_sin = None, None
        self._halves_key, self._halves = None, None
        self._masks: dict[int, torch.Tensor] = {}

    def mask_for_group(self, group: int) -> torch.Tensor:
        """The mask with each query row repeated for the `group` heads folded into the query axis."""
        if group not in self._masks:
            B, _, N, L = self.mask.shape
            self._masks[group] = self.mask.expand(B, group, N, L).reshape(B, 1, group * N, L)
        return self._masks[group]

    def layer(self, layer_idx: int, pool_mapping, pool_pointers, unit_shape: tuple):
        """(the pool as units [n, kv_heads, tokens_per_block, head], write units [2, tokens], read
        units [2, batch, max_len]) of one attention layer, looked up once per step."""
        key = (layer_idx, unit_shape)
        if key not in self._layers:
            pool_idx, layer_in_pool = (int(v) for v in pool_mapping[layer_idx].tolist())
            if pool_idx != self.pool_idx:
                raise DittoError(f"attention layer {layer_idx} is in KV-cache pool {pool_idx}; the batched kernel reads "
                                 "one pool: run with DITTO_FX_ATTENTION=reference")
            units = pool_at(int(pool_pointers[pool_idx, 0])).view(-1, *unit_shape)
            self._layers[key] = (units, layer_unit(self.write_units, layer_in_pool),
                                 layer_unit(self.read_units, layer_in_pool))
        return self._layers[key]

    def cos_sin_halves(self, table: torch.Tensor, rotary_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) at the new tokens' positions, each [tokens, 1, rotary_dim]: the table's
        rotary_dim/2 frequencies written twice, as the halves of a neox rotation use them."""
        key = (table.data_ptr(), table._version, rotary_dim)
        if self._halves_key != key:
            rows = self.cos_sin(table)
            half = rotary_dim // 2
            cos, sin = rows[:, None, :half], rows[:, None, half:rotary_dim]
            self._halves = (torch.cat((cos, cos), dim=-1), torch.cat((sin, sin), dim=-1))
            self._halves_key = key
        return self._halves

    def cos_sin(self, table: torch.Tensor) -> torch.Tensor:
        """The rows of a cos/sin table at the new tokens' positions, [tokens, rotary_dim] float32."""
        key = (table.data_ptr(), table._version)
        if self._cos_sin_key != key:
            self._cos_sin = table[self.token_pos].float()
            self._cos_sin_key = key
        return self._cos_sin


# The layout of the step being run: keyed by the step's `sequence_length` tensor object (every
# layer of one graph run receives that same object) and by what else the layout reads.
_LAST: dict = {}


def _layout(sequence_length, host_request_types, host_context_lengths, host_offsets, tokens_per_block, sliding_window,
            device) -> _StepLayout:
    key = (sequence_length._version, host_request_types.data_ptr(), host_context_lengths.data_ptr(),
           host_offsets.data_ptr(), tokens_per_block, sliding_window, str(device))
    ref = _LAST.get("tensor")
    if ref is not None and ref() is sequence_length and _LAST.get("key") == key:
        return _LAST["layout"]
    layout = _StepLayout(sequence_length, host_request_types, host_context_lengths, host_offsets, tokens_per_block,
                         sliding_window, device)
    _LAST.update(tensor=weakref.ref(sequence_length), key=key, layout=layout)
    return layout


def _attend(
    qkv, sequence_length, host_past_key_value_lengths, host_max_attention_window_sizes, host_sink_token_length,
    context_lengths, cache_indirection, host_request_types, kv_cache_block_offsets, host_kv_cache_block_offsets,
    host_kv_cache_pool_pointers, host_kv_cache_pool_mapping, rotary_inv_freq, rotary_cos_sin, host_context_lengths,
    host_runtime_perf_knobs, host_context_progress, *, layer_idx, num_heads, num_kv_heads, head_size, q_scaling,
    position_embedding_type, rotary_embedding_dim, sliding_window, tokens_per_block, alibi_slopes=None,
    **_same_for_this_kernel,
) -> torch.Tensor:
    H, KV, D = num_heads, num_kv_heads, head_size
    layout = _layout(sequence_length, host_request_types, host_context_lengths, host_kv_cache_block_offsets,
                     tokens_per_block, sliding_window, qkv.device)
    units, write_units, read_units = layout.layer(layer_idx, host_kv_cache_pool_mapping, host_kv_cache_pool_pointers,
                                                  (KV, tokens_per_block, D))
    T = qkv.shape[0]
    # Q and K side by side in qkv: upcast and rotate them together
    qk = qkv[:, : (H + KV) * D].reshape(T, H + KV, D).float()
    v = qkv[:, (H + KV) * D :].reshape(T, KV, D)
    if position_embedding_type == "rope_gpt_neox":
        qk = _rope_halves(qk, *layout.cos_sin_halves(rotary_cos_sin, rotary_embedding_dim), rotary_embedding_dim)
    elif position_embedding_type.startswith("rope"):
        qk = apply_rope(qk, layout.cos_sin(rotary_cos_sin), rotary_embedding_dim, position_embedding_type)
    q, k = qk[:, :H], qk[:, H:]
    units[write_units[0], :, layout.write_slots] = k.to(units.dtype)
    units[write_units[1], :, layout.write_slots] = v.to(units.dtype)

    # [2, batch, max_len, KV, D]; positions past a sequence's end may hold anything: zero them
    kv = units[read_units, :, layout.read_slots]
    kv = torch.where(layout.key_valid[None, :, :, None, None], kv, 0).float()
    keys, values = kv[0].transpose(1, 2), kv[1].transpose(1, 2)  # [batch, KV, max_len, D]

    B, N, G = layout.batch, layout.max_new, H // KV
    scale = 1.0 / (D**0.5 * q_scaling)
    alibi = None
    if alibi_slopes is not None:  # [B, KV, G * N, L]: slope of head kv * G + g times (key - query), -inf masked
        bias = alibi_slopes.float().view(1, KV, G, 1, 1) * layout.distance[:, None, None]
        alibi = torch.where(layout.mask[:, :, None], bias, float("-inf")).reshape(B, KV, G * N, -1)
    if N == 1:  # generation: one query per sequence, in batch order; the G heads of a KV head as G queries
        mask = layout.mask if alibi is None else alibi
        out = F.scaled_dot_product_attention(q.reshape(B, KV, G, D), keys, values, attn_mask=mask, scale=scale)
        return out.reshape(B, H * D).to(qkv.dtype)
    queries = q.new_zeros((B, N, H, D))
    queries[layout.token_batch, layout.token_row] = q
    # fold the G query heads of each KV head into the query axis: [B, KV, G * N, D]
    queries = queries.view(B, N, KV, G, D).permute(0, 2, 3, 1, 4).reshape(B, KV, G * N, D)
    mask = layout.mask_for_group(G) if alibi is None else alibi
    out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, scale=scale)
    out = out.view(B, KV, G, N, D).permute(0, 3, 1, 2, 4).reshape(B, N, H * D)
    return out[layout.token_batch, layout.token_row].to(qkv.dtype)

