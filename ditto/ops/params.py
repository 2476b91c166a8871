"""Model-derived parameters of TensorRT-LLM's GPTAttention plugin, as ditto recognises them.

The `gpt_attention` op in the FX graph carries exactly these values as its attributes;
the torch reference kernel, the native TensorRT lowering and the TensorRT-LLM plugin
lowering all read them from here. Names follow TensorRT-LLM's `functional.gpt_attention()`
keyword arguments.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class GPTAttentionParams:
    layer_idx: int  # index among the attention layers (the KV-cache layer)
    num_heads: int
    num_kv_heads: int
    head_size: int
    # softmax scale = 1 / (sqrt(head_size) * q_scaling), as in TensorRT-LLM
    q_scaling: float = 1.0
    # "learned_absolute" (no RoPE in the plugin), "rope_gpt_neox" (halves rotated),
    # "rope_gptj" (interleaved pairs rotated), "alibi" (slope_h * (key - query) added to the
    # scaled scores; the slopes are the op's `alibi_slopes` tensor input)
    position_embedding_type: str = "learned_absolute"
    rotary_embedding_dim: int = 0
    rotary_embedding_base: float = 10000.0
    # "none", "linear", "dynamic", "longrope", "llama3", "yarn" (TensorRT-LLM RotaryScalingType)
    rotary_embedding_scale_type: str = "none"
    rotary_embedding_scale: float = 1.0
    rotary_embedding_max_positions: int = 1024
    rotary_embedding_original_max_positions: int = 1024
    attn_logit_softcapping_scale: float = 0.0
    # 0: full causal attention; > 0: sliding window length (keys older than this are not attended)
    sliding_window: int = 0
    # the paged KV cache layout
    tokens_per_block: int = 64
    # Multi-head latent attention (DeepSeek-V2/V3) with its K/V decompressed per head: the model's value
    # (or query/key) head is narrower than `head_size`; 0 when equal. The attention pass zero-pads the
    # narrower side to `head_size` before the op and slices the output back to `value_head_size` after it;
    # the op, its lowerings and the KV cache compute with `head_size` only (a valid plain GPTAttention,
    # `is_mla_enabled` 0; TensorRT-LLM's own MLA mode is not used, see ditto/trtllm/gpt_attention_plugin.py).
    value_head_size: int = 0
    query_key_head_size: int = 0

    @property
    def has_rope(self) -> bool:
        return self.position_embedding_type.startswith("rope")

    @property
    def has_alibi(self) -> bool:
        return self.position_embedding_type == "alibi"

    @property
    def qkv_width(self) -> int:
        return (self.num_heads + 2 * self.num_kv_heads) * self.head_size

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
