"""Export a model and rewrite it into TensorRT-LLM form, without building an engine.

Prints what each pass did and the recognised attention; with --artifacts DIR (or
DEBUG_ARTIFACTS_DIR) writes graph_module.py and graph.txt there.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("model", help="HF model directory, hub id in the local cache, or a built-in tiny name (tiny-llama, ...)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="weights dtype (default: the checkpoint's)")
    parser.add_argument("--artifacts", type=Path, help="folder for graph_module.py and graph.txt (default: $DEBUG_ARTIFACTS_DIR)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code from its directory")


def run(args) -> int:
    from ditto.api import export
    from ditto.cli.progress import show

    program = export(args.model, args.dtype, trust_remote_code=args.trust_remote_code, artifacts_dir=args.artifacts,
                     progress=show)
    for name, count in program.pass_log:
        print(f"{name}: {count}")
    first = program.attention[0]
    print(
        f"attention: {len(program.attention)} layers, {first.num_heads} heads / {first.num_kv_heads} KV heads x "
        f"{first.head_size}, {first.position_embedding_type}"
        + (f" (rotary dim {first.rotary_embedding_dim})" if first.has_rope else "")
    )
    if program.sequence_limit is not None:
        print(f"sequence limit: {program.sequence_limit.tokens} tokens ({program.sequence_limit.construct})")
    if args.artifacts:
        print(f"artifacts: {args.artifacts}")
    return 0
