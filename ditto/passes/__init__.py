"""FX passes that rewrite an exported HF model into TensorRT-LLM form.

`PIPELINE` lists them in order; each module registers its pass by name. To add a pass:
write a module with `@register_pass("name")`, import it here and add the name to PIPELINE.
"""

from ditto.passes import (  # noqa: F401  (importing registers the passes)
    complex_to_real,
    eager_attention_to_sdpa,
    eliminate_dead_code,
    engine_inputs,
    functionalize_inplace,
    fuse_parallel_linears,
    gather_last_token,
    remove_export_artifacts,
    replace_attention,
    replace_moe,
    simplify_shuffles,
)

PIPELINE = [
    "functionalize_inplace",
    "complex_to_real",
    "remove_export_artifacts",
    "eager_attention_to_sdpa",
    "engine_inputs",
    "replace_attention",
    "replace_moe",
    "gather_last_token",
    "fuse_parallel_linears",
    "simplify_shuffles",
    "eliminate_dead_code",
]
