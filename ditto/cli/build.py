"""Build a TensorRT-LLM engine directory (config.json + rank0.engine) from a Hugging Face model.

On a GPU node with TensorRT-LLM, attention becomes TensorRT-LLM's GPTAttention plugin; without
it (TensorRT-RTX on a CPU machine) TensorRT's own layers (--attention native), and the engine
takes and returns the paged KV-cache pool as tensors.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("model", help="HF model directory, hub id in the local cache, or a built-in tiny name (tiny-llama, ...)")
    parser.add_argument("engine_dir", type=Path, help="output engine directory")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="engine dtype (default: the checkpoint's)")
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument("--max-input-len", type=int, default=128)
    parser.add_argument("--max-seq-len", type=int, default=256, help="prompt + generated tokens per sequence")
    parser.add_argument("--max-num-tokens", type=int, default=512, help="tokens of all sequences in one step")
    parser.add_argument("--tokens-per-block", type=int, default=32, help="paged KV-cache block size")
    parser.add_argument("--add-output", action="append", default=[], metavar="NODE",
                        help="mark an FX node's output as an extra engine output under its name (repeatable; names in graph.txt)")
    parser.add_argument("--attention", choices=["auto", "plugin", "native"], default="auto",
                        help="GPTAttention plugin (needs TensorRT-LLM) or TensorRT's own layers; auto picks what is installed")
    parser.add_argument("--trt-provider", choices=["tensorrt", "tensorrt_rtx"], help="TensorRT module (default: tensorrt if importable)")
    parser.add_argument("--force", action="store_true", help="replace an existing engine directory")
    parser.add_argument("--verify", action="store_true",
                        help="replay the built network in torch on a small batch and print its largest difference from the FX graph per output")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code from its directory")


def run(args) -> int:
    from ditto.build import build

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
        attention=args.attention,
        force=args.force,
        trt_provider=args.trt_provider,
        trust_remote_code=args.trust_remote_code,
        verify=args.verify,
    )
    print(f"engine: {path}")
    return 0
