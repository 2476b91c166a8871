"""Export a model and rewrite it into TensorRT-LLM form, without building an engine.

Prints what each pass did and the recognised attention; with --artifacts DIR (or
DEBUG_ARTIFACTS_DIR) writes graph_module.py and graph.txt there.
"""

from __future__ import annotations

from pathlib import Path

from ditto.cli.progress import stage


def add_arguments(parser) -> None:
    parser.add_argument("model", help="HF model directory, hub id in the local cache, or a built-in tiny name (tiny-llama, ...)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="weights dtype (default: the checkpoint's)")
    parser.add_argument("--artifacts", type=Path, help="folder for graph_module.py and graph.txt (default: $DEBUG_ARTIFACTS_DIR)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code from its directory")


def run(args) -> int:
    from ditto.debug.artifacts import write_graph_artifacts
    from ditto import fsutil
    from ditto.pipeline import load_program

    if args.artifacts:
        fsutil.check_output_dir(args.artifacts, "--artifacts")  # before the export, whose work would be lost
    with stage("load, export, passes"):
        program = load_program(args.model, args.dtype, trust_remote_code=args.trust_remote_code)
    for name, count in program.pass_log:
        print(f"{name}: {count}")
    first = program.attention[0]
    print(
        f"attention: {len(program.attention)} layers, {first.num_heads} heads / {first.num_kv_heads} KV heads x "
        f"{first.head_size}, {first.position_embedding_type}"
        + (f" (rotary dim {first.rotary_embedding_dim})" if first.has_rope else "")
    )
    if args.artifacts:
        args.artifacts.mkdir(parents=True, exist_ok=True)
        print(f"artifacts: {write_graph_artifacts(program, args.artifacts)}")
    return 0
