"""Paged KV-cache pools addressed the way TensorRT-LLM addresses them: by raw pointer.

A TensorRT-LLM engine receives `host_kv_cache_pool_pointers` (int64 addresses of the pool
buffers). The torch reference kernels receive the same input, so ditto's FX graph has the
engine's exact signature; this registry maps an address back to the torch tensor that
owns it.

Pool layout (TensorRT-LLM's primary pool): [num_blocks, num_layers, 2 (K, V), num_kv_heads,
tokens_per_block, head_size]. A block offset counts "units" of one K or V block of one layer;
K of block b is unit `b * num_layers * 2`, V is that + 1, and layer l of a pool adds `2 * l`.
"""

from __future__ import annotations

import torch

_POOLS: dict[int, torch.Tensor] = {}


def register_pool(pool: torch.Tensor) -> int:
    """Make `pool` reachable by its address (what goes into host_kv_cache_pool_pointers)."""
    _POOLS[pool.data_ptr()] = pool
    return pool.data_ptr()


def unregister_pool(pool: torch.Tensor) -> None:
    _POOLS.pop(pool.data_ptr(), None)


def pool_at(address: int) -> torch.Tensor:
    try:
        return _POOLS[address]
    except KeyError:
        raise RuntimeError(
            f"no KV-cache pool registered at address {address:#x}; allocate pools with "
            "ditto.ops.kv_cache.register_pool before running the graph"
        ) from None


def block_offset(block_id: int, num_layers: int, kv: int) -> int:
    """The unit offset TensorRT-LLM stores in kv_cache_block_offsets for K (kv=0) or V (kv=1)."""
    return block_id * num_layers * 2 + kv


# K and V of one layer are two consecutive units; layer l of a pool sits 2 * l units past layer 0
UNITS_PER_LAYER = 2


def layer_unit(block_units, layer_in_pool: int):
    """The unit of layer `layer_in_pool` given layer 0's unit (what kv_cache_block_offsets holds for
    a block's K or V); works on ints and tensors alike."""
    return block_units + UNITS_PER_LAYER * layer_in_pool
