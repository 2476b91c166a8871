"""Deep random models for the verdict checks at depth: transformers' own classes, seeded weights.

`make_deep_model(shape, folder, device)` writes a normal Hugging Face directory (config.json +
safetensors, `save_pretrained`) for one of SHAPES. The narrow shapes (24 layers, hidden 256)
run on a CPU in seconds; the real shapes (Qwen2.5-1.5B, Llama-3.1-8B: their configs, random
weights) are for a GPU (`device="cuda"` draws the weights there).

Weights: matrices ~ N(0, 1/fan_in), so every projection keeps the scale of its input and the
attention scores have a standard deviation of about 1 (sharp enough that which keys a query
sees, where RoPE puts them and which K/V heads it reads all change the output); norm weights
~ 1 + N(0, 0.1), biases ~ N(0, 0.1). Seeded per tensor name: the same folder every time.

Command line (for a GPU node): `python -m tests.deep_models qwen2.5-1.5b ./deep/qwen --device cuda`,
then `pytest --ditto-model=./deep/qwen --ditto-dtype=bfloat16 --ditto-backends=hf,fx`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import zlib
from pathlib import Path

import torch

_NARROW = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=24, num_attention_heads=8,
               num_key_value_heads=2, head_dim=32, vocab_size=512, max_position_embeddings=4096)

# name -> config kwargs (model_type included)
SHAPES: dict[str, dict] = {
    # GQA 8 query heads over 2 KV heads (a wrong head map changes the output), llama3 RoPE scaling
    "llama-deep": dict(model_type="llama", **_NARROW, rms_norm_eps=1e-5,
                       rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                                            high_freq_factor=4.0, original_max_position_embeddings=1024)),
    # QKV bias, tied embeddings, RoPE base 1e6
    "qwen2-deep": dict(model_type="qwen2", **_NARROW, rms_norm_eps=1e-6, tie_word_embeddings=True,
                       rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
    # Qwen2.5-1.5B's config.json, random weights
    "qwen2.5-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                         max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
    # Llama-3.1-8B's config.json, random weights
    "llama-3.1-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                         max_position_embeddings=131072, rms_norm_eps=1e-5,
                         rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                                              low_freq_factor=1.0, high_freq_factor=4.0,
                                              original_max_position_embeddings=8192)),
}


def make_deep_model(shape: str, folder: Path, device: str = "cpu", dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write the model `shape` into `folder` (skipped when a finished copy is there); returns `folder`."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    folder = Path(folder)
    stamp = folder / "DITTO_DEEP_MODEL"
    if stamp.is_file() and stamp.read_text() == _stamp(shape, dtype):
        return folder
    kwargs = dict(SHAPES[shape])
    config = AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    with torch.device(device):  # transformers' init runs there too (fast on a GPU), then our seeded values
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    with torch.no_grad():
        for name, param in model.named_parameters():  # tied parameters are listed once
            param.copy_(_seeded(name, tuple(param.shape), device))
    hf_logging.disable_progress_bar()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))  # another process may race us
    try:
        model.save_pretrained(tmp)
        (tmp / stamp.name).write_text(_stamp(shape, dtype))
        shutil.rmtree(folder, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:  # the other process won; its copy is identical
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _stamp(shape: str, dtype: torch.dtype) -> str:
    return json.dumps([SHAPES[shape], str(dtype), 1], sort_keys=True)


def _seeded(name: str, shape: tuple[int, ...], device: str) -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(zlib.crc32(name.encode()))
    values = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
    if len(shape) >= 2:
        return values / shape[-1] ** 0.5
    return values * 0.1 if name.endswith("bias") else 1.0 + 0.1 * values


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--device", default="cpu", help="where the weights are drawn (cuda for the real shapes)")
    args = parser.parse_args(argv)
    print(make_deep_model(args.shape, args.folder, args.device))


if __name__ == "__main__":
    main()
