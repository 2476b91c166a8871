"""Build a TensorRT-LLM engine directory (config.json + rank0.engine) from a Hugging Face model.

Stages, each shown with its time: load, export, passes (the TensorRT-LLM-form FX graph),
network (TensorRT layers), build (TensorRT's builder), write (the directory, atomically).
With DEBUG_ARTIFACTS_DIR set, graph.txt, graph_module.py, trt_network_def.py and
build_report.json are written there; graph.txt lists the node names --add-output takes.

Attention: `plugin` (TensorRT-LLM's GPTAttention plugin; the engine's I/O is trtllm-build's)
needs tensorrt + tensorrt_llm, a GPU node; `native` (TensorRT's own layers) builds anywhere,
TensorRT-RTX on a CPU machine included, and its engine takes the paged KV-cache pool as the
input `kv_cache_pool` instead of `host_kv_cache_pool_pointers` and returns it updated as
`present_kv_cache_pool`. `auto` picks `plugin` when it can be created.

examples:
  ditto build ./Llama-2-7b-chat-hf ./engines/llama --dtype float16
  DEBUG_ARTIFACTS_DIR=./artifacts ditto build tiny-llama ./engine --add-output gpt_attention_1 --add-output silu --force
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("model", help="HF model directory, hub id in the local cache, or a built-in tiny name (tiny-llama, ...)")
    parser.add_argument("engine_dir", type=Path, help="output engine directory (refused if it exists, unless --force)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="engine dtype (default: the checkpoint's)")
    limits = parser.add_argument_group(
        "limits (the engine's optimization profile; each defaults to what trtllm-build 1.2 gives the same model)")
    limits.add_argument("--max-batch-size", type=int, help="sequences per step (default: 2048)")
    limits.add_argument("--max-input-len", type=int, help="tokens of one prompt (default: 1024, at most max-seq-len)")
    limits.add_argument("--max-seq-len", type=int,
                        help="prompt + generated tokens of one sequence (default: the model's max_position_embeddings "
                             "times its RoPE scaling factor, capped at the model's sequence limit where ditto's conversion "
                             "is exact only up to a length: sparse attention's top-k)")
    limits.add_argument("--max-num-tokens", type=int,
                        help="tokens of all sequences in one step (default: 8192, at most max-seq-len x max-batch-size)")
    limits.add_argument("--tokens-per-block", type=int, help="paged KV-cache block size, a power of 2 (default: 32)")
    outputs = parser.add_argument_group("extra engine outputs")
    outputs.add_argument("--add-output", action="append", default=[], metavar="NODE",
                         help="mark FX node NODE's value as an engine output named NODE (repeatable; names in graph.txt)")
    outputs.add_argument("--probe", action="append", default=[], metavar="NAME",
                         help="mark a probe by meaning (layers.0.attn, layers.1.mlp, final_norm, ...) as an output of that name (repeatable)")
    trt = parser.add_argument_group("TensorRT")
    trt.add_argument("--attention", choices=["auto", "plugin", "native"], default="auto",
                     help="attention lowering (default: %(default)s; see above)")
    trt.add_argument("--trt-provider", choices=["tensorrt", "tensorrt_rtx"],
                     help="TensorRT Python module (default: $DITTO_TRT_PROVIDER, else tensorrt if importable, else tensorrt_rtx)")
    parser.add_argument("--force", action="store_true", help="replace an existing engine directory")
    parser.add_argument("--verify", action="store_true",
                        help="replay the built network in torch on a small batch and print its largest difference from the FX graph per output")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code from its directory")


def run(args) -> int:
    from ditto.api import build
    from ditto.cli.progress import show

    path = build(
        args.model,
        args.engine_dir,
        dtype=args.dtype,
        max_batch_size=args.max_batch_size,
        max_input_len=args.max_input_len,
        max_seq_len=args.max_seq_len,
        max_num_tokens=args.max_num_tokens,
        tokens_per_block=args.tokens_per_block,
        add_output=tuple(args.add_output),
        probes=tuple(args.probe),
        attention=args.attention,
        force=args.force,
        trt_provider=args.trt_provider,
        trust_remote_code=args.trust_remote_code,
        verify=args.verify,
        progress=show,
    )
    print(f"engine: {path}")
    return 0
