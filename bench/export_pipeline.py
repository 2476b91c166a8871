"""Benchmark: export + ditto's full pass pipeline vs bare torch.export, on the meta device.

    python bench/export_pipeline.py [--models llama-2-7b llama-2-70b mixtral-8x7b]

For each config (no weights: nothing is downloaded or materialised) it times, in one run,
side by side: (a) bare `torch.export` of the HF model, (b) ditto's `load_program` (load on
meta + export + passes). It prints the ratio (b - a) / a, the pipeline's overhead over bare
export (target <= 0.5), and the peak RSS of the process (target < 4 GiB for 70B).
Each measurement runs in its own subprocess so peak RSS is per measurement. Each run is done
three times; the table shows the best and the spread (max - min) of the times.

The checkpoint is written in the model's original layout (transformers' reverse conversion:
Mixtral's per-expert `experts.{i}.w1.weight`), so ditto's loader goes through transformers'
conversion machinery as with a real download. MoE experts are exported with transformers'
`batched_mm` implementation in both measurements (ditto picks it; bare export is given it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = {
    "mixtral-8x7b": dict(model_type="mixtral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                         num_local_experts=8, num_experts_per_tok=2, rope_theta=1e6),
    "llama-2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, max_position_embeddings=4096),
    "llama-2-70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                        num_key_value_heads=8, max_position_embeddings=4096),
}

_CHILD = r"""
import json, resource, sys, time, torch
mode, directory = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if mode == "bare":
    from transformers import AutoConfig, AutoModelForCausalLM
    config = AutoConfig.from_pretrained(directory)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    if getattr(model, "_can_set_experts_implementation", lambda: False)():
        model.set_experts_implementation("batched_mm")
    n = torch.export.Dim("num_tokens", min=1, max=8192)
    ids = torch.zeros(1, 8, dtype=torch.long, device="meta")
    pos = torch.arange(8, device="meta")[None]
    torch.export.export(model, (), dict(input_ids=ids, position_ids=pos, use_cache=False),
                        dynamic_shapes=dict(input_ids={1: n}, position_ids={1: n}, use_cache=None), strict=False)
else:
    from ditto.pipeline import load_program
    program = load_program(directory)
    print(json.dumps({"passes": program.pass_log}), file=sys.stderr)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def _write_config(folder: Path, name: str) -> None:
    """config.json + a *sparse* model.safetensors: a real header naming every weight with its
    shape, and a data region that takes no disk space (the pipeline never reads weights)."""
    import struct

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = dict(CONFIGS[name])
    config = AutoConfig.for_model(kwargs.pop("model_type", "llama"), vocab_size=32000, rms_norm_eps=1e-5,
                                  torch_dtype="float16", **kwargs)
    config.save_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    state = model.state_dict()
    try:  # transformers 5: the checkpoint layout (e.g. per-expert tensors), as save_pretrained writes it
        from transformers.core_model_loading import revert_weight_conversion

        state = revert_weight_conversion(model, state)
    except ImportError:
        pass
    header, offset = {}, 0
    for key, param in state.items():
        size = param.numel() * 2
        header[key] = {"dtype": "F16", "shape": list(param.shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(folder / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        f.truncate(8 + len(blob) + offset)


def _measure(mode: str, folder: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(folder)], capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    print(f"{'model':<12} {'bare export s':>14} {'ditto s':>12} {'overhead':>9} {'bare RSS GiB':>13} {'ditto RSS GiB':>14}")
    for name in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            _write_config(folder, name)
            runs = [(_measure("bare", folder), _measure("ditto", folder)) for _ in range(3)]  # interleaved
        bare_s = [b["seconds"] for b, _ in runs]
        ditto_s = [d["seconds"] for _, d in runs]
        overhead = (min(ditto_s) - min(bare_s)) / min(bare_s)
        print(f"{name:<12} {min(bare_s):>8.1f} ±{max(bare_s) - min(bare_s):<4.1f} {min(ditto_s):>6.1f} "
              f"±{max(ditto_s) - min(ditto_s):<4.1f} {overhead:>8.0%} {max(b['peak_rss_gib'] for b, _ in runs):>13.2f} "
              f"{max(d['peak_rss_gib'] for _, d in runs):>14.2f}", flush=True)


if __name__ == "__main__":
    main()
