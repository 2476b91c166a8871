"""A paged KV cache in torch, laid out and addressed as TensorRT-LLM's runtime does.

One pool [num_blocks, num_layers, 2, num_kv_heads, tokens_per_block, head_size]; each
sequence owns whole blocks; `step_inputs` builds the engine inputs of one step (packed
tokens, block offsets, lengths, request types) exactly as TensorRT-LLM's runtime feeds a
`trtllm-build` engine with in-flight batching and beam width 1.
"""

from __future__ import annotations

import math

import torch

from ditto.errors import DittoError
from ditto.ops.kv_cache import block_offset, register_pool, unregister_pool
from ditto.ops.params import GPTAttentionParams


class PagedKVCache:
    def __init__(self, attention: list[GPTAttentionParams], max_seq_len: int, batch: int, dtype, device="cpu",
                 reuse: torch.Tensor | None = None):
        kv_shapes = {(p.num_kv_heads, p.head_size, p.tokens_per_block) for p in attention}
        if len(kv_shapes) != 1:
            raise DittoError(f"layers with different KV shapes {sorted(kv_shapes)} (KV heads, head size, tokens per block) "
                             "share the one pool only once the pad_kv_shapes pass has padded them to one shape")
        self._allocate(len(attention), *kv_shapes.pop(), max_seq_len, batch, dtype, device, reuse)
        # what TensorRT-LLM's C++ executor feeds by default: the model's window per layer (runtime_defaults)
        self.windows = [p.sliding_window or max_seq_len for p in attention]

    @classmethod
    def for_engine(cls, num_layers: int, num_kv_heads: int, head_size: int, tokens_per_block: int, max_seq_len: int,
                   batch: int, dtype, device="cpu", windows: list[int] | None = None) -> "PagedKVCache":
        """A cache for an engine known only by its config.json (no attention parameters);
        `windows`: its per-layer attention windows (runtime_defaults), None: the full sequence."""
        cache = cls.__new__(cls)
        cache._allocate(num_layers, num_kv_heads, head_size, tokens_per_block, max_seq_len, batch, dtype, device)
        if windows is not None and len(windows) != num_layers:
            raise DittoError(f"the engine config gives {len(windows)} attention windows for {num_layers} layers")
        cache.windows = [min(w, max_seq_len) for w in windows] if windows else [max_seq_len] * num_layers
        return cache

    def _allocate(self, num_layers, num_kv_heads, head_size, tokens_per_block, max_seq_len, batch, dtype, device,
                  reuse=None):
        """`reuse`: an earlier cache's pool, zeroed and used again when it has this shape, type and device
        (a runner that recorded CUDA graphs over one pool keeps its address across runs)."""
        self.num_kv_heads, self.head_size, self.tokens_per_block = num_kv_heads, head_size, tokens_per_block
        self.num_layers = num_layers
        self.max_seq_len = max_seq_len
        self.blocks_per_seq = math.ceil(max_seq_len / self.tokens_per_block)
        self.batch = batch
        shape = (batch * self.blocks_per_seq, self.num_layers, 2, self.num_kv_heads, self.tokens_per_block, self.head_size)
        if (reuse is not None and tuple(reuse.shape) == shape and reuse.dtype == dtype
                and reuse.device == torch.device(device)):
            self.pool = reuse.zero_()
        else:
            self.pool = torch.zeros(shape, dtype=dtype, device=device)
        self.pointer = register_pool(self.pool)
        # sequence b owns blocks [b * blocks_per_seq, (b + 1) * blocks_per_seq)
        offsets = torch.empty((1, batch, 2, self.blocks_per_seq), dtype=torch.int32)
        for b in range(batch):
            for j in range(self.blocks_per_seq):
                block = b * self.blocks_per_seq + j
                offsets[0, b, 0, j] = block_offset(block, self.num_layers, 0)
                offsets[0, b, 1, j] = block_offset(block, self.num_layers, 1)
        self.offsets = offsets

    def close(self) -> None:
        unregister_pool(self.pool)

    def step_inputs(
        self, new_tokens: list[list[int]], past_lengths: list[int], context_lengths: list[int], is_context: bool, device="cpu"
    ) -> dict[str, torch.Tensor]:
        counts = [len(t) for t in new_tokens]
        total = [p + n for p, n in zip(past_lengths, counts)]
        if max(total) > self.max_seq_len:
            raise DittoError(f"sequence length {max(total)} exceeds the cache's max_seq_len {self.max_seq_len}")
        i32 = dict(dtype=torch.int32)
        batch = len(new_tokens)
        inputs = {
            "input_ids": torch.tensor([t for seq in new_tokens for t in seq], **i32),
            "position_ids": torch.cat([torch.arange(p, p + n, **i32) for p, n in zip(past_lengths, counts)]),
            "last_token_ids": torch.tensor(counts, **i32).cumsum(0, **i32),
            "kv_cache_block_offsets": self.offsets[:, :batch].clone(),
            "host_kv_cache_block_offsets": self.offsets[:, :batch].clone(),
            "host_kv_cache_pool_pointers": torch.tensor([[self.pointer, 0]], dtype=torch.int64),
            "host_kv_cache_pool_mapping": torch.tensor([[0, layer] for layer in range(self.num_layers)], **i32),
            "sequence_length": torch.tensor(total, **i32),
            "host_request_types": torch.full((batch,), 0 if is_context else 1, **i32),
            "host_past_key_value_lengths": torch.tensor(host_past_key_value_lengths(past_lengths, context_lengths, is_context), **i32),
            "context_lengths": torch.tensor(context_lengths, **i32),
            "host_runtime_perf_knobs": torch.full((16,), -1, dtype=torch.int64),
            "host_context_progress": torch.zeros(1, dtype=torch.int64),
            "host_context_lengths": torch.tensor(context_lengths, **i32),
            "host_max_attention_window_sizes": torch.tensor(self.windows, **i32),
            "host_sink_token_length": torch.zeros(1, **i32),
            "cache_indirection": torch.zeros((batch, 1, self.max_seq_len), **i32),
        }
        # device tensors go to the device; host_* stay on the CPU, as in TensorRT-LLM
        return {k: (v if k.startswith("host_") else v.to(device)) for k, v in inputs.items()}


def host_past_key_value_lengths(past_lengths: list[int], context_lengths: list[int], is_context: bool) -> list[int]:
    """What TensorRT-LLM's Python session feeds as `host_past_key_value_lengths` (generation.py,
    `_get_context_shape_buffer` / `_get_next_step_shape_buffer`; see ditto/trtllm/contract.py):
    the context lengths in the context step, then `max_context_length + step` for every sequence,
    `step` counting the generation steps already run (0 for the first). Not the per-sequence past
    length: the plugin only reads it on the host to size its work.
    """
    if is_context:
        return list(context_lengths)
    step = past_lengths[0] - context_lengths[0]  # the same for every sequence: one token per step
    return [max(context_lengths) + step] * len(past_lengths)


# Inputs that differ from run to run without meaning anything (addresses); left out of dumps.
UNDUMPED_INPUTS = ("host_kv_cache_pool_pointers",)
