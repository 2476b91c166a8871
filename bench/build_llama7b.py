"""Benchmark: `ditto build` of a Llama-2-7B config with random float16 weights on this machine.

    nice -n 19 python bench/build_llama7b.py [--layers 32] [--checkpoint DIR]

Writes the checkpoint (random fp16, one safetensors shard per layer, generated and saved one
shard at a time; ~13.5 GB for 32 layers) to a temp folder (or DIR, kept and reused), runs
`ditto build` in a child process and prints the wall time of each stage and the child's peak
RSS against the weights' bytes (target: peak RSS <= 1.3x the weights). `--layers` builds the
same config with fewer layers when the machine has less memory or time. Refuses to start
without the disk it needs: the checkpoint, the build's staged weights and plan, the engine.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def write_checkpoint(folder: Path, layers: int) -> int:
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers, num_attention_heads=32,
                         num_key_value_heads=32, max_position_embeddings=4096, vocab_size=32000, rms_norm_eps=1e-5,
                         torch_dtype="float16")
    config.save_pretrained(folder)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    groups: dict[str, list[str]] = {}
    for key in shapes:
        match = re.match(r"model\.layers\.(\d+)\.", key)
        groups.setdefault(f"layer{match.group(1)}" if match else "other", []).append(key)
    weight_map, total = {}, 0
    for i, keys in enumerate(groups.values()):
        file = f"model-{i:05d}.safetensors"
        tensors = {k: (torch.randn(shapes[k], generator=gen) * 0.02).half() for k in keys}
        save_file(tensors, folder / file)
        total += sum(t.numel() * 2 for t in tensors.values())
        weight_map.update({k: file for k in keys})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--checkpoint", type=Path, help="keep (and reuse) the random checkpoint in this folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ditto-bench-7b-"))
    model = args.checkpoint or work / "model"
    try:
        estimate = (2 * 32000 * 4096 + args.layers * 202_383_360) * 2  # embeddings + per-layer fp16 bytes
        needed = estimate * (3 if (model / "config.json").exists() else 4)
        free = shutil.disk_usage(work).free
        if free < needed * 1.1:
            raise SystemExit(f"needs ~{needed / 2**30:.0f} GiB free disk at {work}, has {free / 2**30:.0f} GiB")
        start = time.perf_counter()
        if (model / "config.json").exists():
            weight_bytes = sum(f.stat().st_size for f in model.glob("*.safetensors"))
        else:
            model.mkdir(parents=True, exist_ok=True)
            weight_bytes = write_checkpoint(model, args.layers)
        print(f"checkpoint: {weight_bytes / 2**30:.2f} GiB in {time.perf_counter() - start:.0f}s", flush=True)
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "ditto.cli.main", "build", str(model), str(work / "engine"),
             "--max-batch-size", "4", "--max-seq-len", "512", "--max-num-tokens", "1024"],
            capture_output=True, text=True,
        )
        wall = time.perf_counter() - start
        if result.returncode:
            raise SystemExit(f"ditto build failed:\n{result.stderr[-3000:]}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        for line in result.stderr.splitlines():
            if line.endswith("s") and " done in " in line:
                print(line.removeprefix("[ditto] "))
        engine = (work / "engine" / "rank0.engine").stat().st_size
        print(f"layers {args.layers}: weights {weight_bytes / 2**30:.2f} GiB, engine {engine / 2**30:.2f} GiB, "
              f"wall {wall:.0f}s, peak RSS {peak / 2**30:.2f} GiB = {peak / weight_bytes:.2f}x weights")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
