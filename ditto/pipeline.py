"""The pipeline: model spec -> meta model -> ExportedProgram -> TensorRT-LLM-form TrtllmProgram.

Each stage's output can be dumped (DEBUG_ARTIFACTS_DIR) and is the next stage's input.
"""

from __future__ import annotations

import torch

from ditto.debug.artifacts import write_graph_artifacts
from ditto.errors import DittoError
from ditto.exporter.export import export_model
from ditto.exporter.graph import to_graph_module
from ditto.models.attention_impl import cannot_compute, guarded_sdpa
from ditto.models.loader import load_model
from ditto.passes.check_supported import check_supported
from ditto.passes.manager import PassContext, run_passes
from ditto.passes.replace_attention import refuse_unsupported_rope
from ditto.probes import probe_modules
from ditto.program import TrtllmProgram
from ditto.trtllm.inputs import ENGINE_INPUTS


def load_program(
    model: str,
    dtype: str | torch.dtype | None = None,
    *,
    tokens_per_block: int = 64,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    passes: list[str] | None = None,
) -> TrtllmProgram:
    """Export `model` and rewrite it into TensorRT-LLM form, with weights left on disk."""
    loaded = load_model(model, dtype, trust_remote_code=trust_remote_code, attn_implementation=attn_implementation)
    refuse_unsupported_rope(loaded.config)
    try:
        with guarded_sdpa():
            exported = export_model(loaded)
    except Exception as e:
        reason = cannot_compute(e)
        if reason is None:
            raise
        if attn_implementation is not None:
            raise DittoError(f"{reason}; export with attn_implementation='eager'") from e
        # the model's SDPA path would drop part of the attention (ditto.models.attention_impl)
        loaded = load_model(model, dtype, trust_remote_code=trust_remote_code, attn_implementation="eager")
        exported = export_model(loaded)
    gm, weights = to_graph_module(exported, loaded)
    ctx = PassContext(gm, weights, loaded, tokens_per_block=tokens_per_block)
    log = run_passes(ctx, passes)  # None: every registered pass, in `ditto.passes.manager.pipeline()` order
    _prune_weights(ctx)
    check_supported(ctx)
    num_layers = len(ctx.attention)
    input_dims = {
        spec.name: tuple(num_layers if d == "num_layers" else d for d in spec.dims) for spec in ENGINE_INPUTS
    }
    program = TrtllmProgram(
        graph_module=gm,
        weights=weights,
        hf_config=loaded.config,
        dtype=loaded.dtype,
        attention=list(ctx.attention),
        input_dims=input_dims,
        pass_log=log,
        probe_modules=probe_modules(loaded.model, num_layers),
        moe=list(ctx.moe),
        sequence_limit=min(ctx.sequence_limits, key=lambda limit: limit.tokens, default=None),
    )
    write_graph_artifacts(program)
    return program


def _prune_weights(ctx: PassContext) -> None:
    used = {n.target for n in ctx.graph.nodes if n.op == "get_attr"}
    for name in ctx.weights.names():
        if name not in used:
            ctx.weights.remove(name)
            if hasattr(ctx.gm, name):
                delattr(ctx.gm, name)
    if not used:
        raise DittoError("the rewritten graph uses no weights; the export produced an empty model")
