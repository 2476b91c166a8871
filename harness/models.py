"""A model under test: its spec, a short key for file names, a content hash, its probes and prompts.

The content hash keys the engine cache and is recorded in golden manifests, so a changed
checkpoint never meets an engine or a golden made from the old one. It covers config.json
(less the version of transformers that saved it) and every weight file; weights up to
FULL_HASH_LIMIT are hashed in full, larger checkpoints by their safetensors headers (names,
dtypes, shapes, offsets) plus SAMPLES evenly spaced 1 MiB blocks per file, so hashing a
140 GB checkpoint takes a second, not minutes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from ditto.errors import DittoError

FULL_HASH_LIMIT = 1 << 30
SAMPLES = 16
_BLOCK = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Prompt lengths of the batch every backend runs: ragged on purpose (packing, per-sequence
# positions), one of length 2 so a sequence is shorter than another's context, and long enough
# to span several KV blocks in every backend (fx: 64 tokens a block, the built network and
# replay: 32): 130 spans 3 (fx) and 5 (replay) blocks in the context step; 61 starts a new
# block in both at the 4th generation step (the default 8 steps run it to 69).
PROMPT_LENGTHS = (61, 2, 130)


def builtin_models() -> list[str]:
    from ditto.models.tiny import TINY_MODELS

    return sorted(TINY_MODELS)


@dataclass(frozen=True)
class ModelUnderTest:
    spec: str  # as the user gave it

    @property
    def key(self) -> str:
        """A file-name-safe name: the tiny name, a directory's name, or `org--name` for a hub id."""
        path = Path(self.spec)
        name = path.name if path.exists() else self.spec.replace("/", "--")
        return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"

    @functools.cached_property
    def directory(self) -> Path:
        from ditto.models.loader import resolve_model_dir

        return resolve_model_dir(self.spec)

    @functools.cached_property
    def config(self):
        from ditto.models.loader import load_config

        return load_config(self.directory)

    @functools.cached_property
    def weight_bytes(self) -> int:
        return sum(p.stat().st_size for p in _weight_files(self.directory))

    @functools.cached_property
    def content_hash(self) -> str:
        return content_hash(self.directory)

    @functools.cached_property
    def probes(self) -> list[str]:
        """Every probe of the model, shallowest first, ending with `logits`."""
        from ditto.models.loader import load_model
        from ditto.probes import all_probe_names, probe_modules

        loaded = load_model(self.spec)  # meta device: costs no weight memory
        return sort_probes(all_probe_names(probe_modules(loaded.model, loaded.config.num_hidden_layers)))

    @functools.cached_property
    def prompts(self) -> list[list[int]]:
        """Fixed token ids, seeded; ids 0-2 are left out (often pad/bos/eos)."""
        vocab = int(getattr(self.config, "vocab_size", 0) or 0)
        if vocab < 4:
            raise DittoError(f"{self.spec}: config.json has no usable vocab_size ({vocab}); cannot make prompts")
        gen = torch.Generator().manual_seed(0)
        return [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in PROMPT_LENGTHS]


def probe_depth(name: str) -> tuple[int, int]:
    """Sort key: layer index, then attn < mlp < out inside a layer; final_norm and logits last."""
    match = re.fullmatch(r"layers\.(\d+)\.(\w+)", name)
    if match:
        return int(match.group(1)), {"attn": 0, "mlp": 1, "out": 2}.get(match.group(2), 3)
    return (1 << 30, {"final_norm": 0, "logits": 1}.get(name, 2))


def sort_probes(names) -> list[str]:
    return sorted(names, key=probe_depth)


def content_hash(directory: Path) -> str:
    files = _weight_files(directory)
    total = sum(p.stat().st_size for p in files)
    digest = hashlib.sha256()
    from ditto.models.tiny import recipe_identity

    digest.update(recipe_identity(directory) or _config_bytes(directory / "config.json"))
    for path in files:
        digest.update(f"\0{path.relative_to(directory)}\0{path.stat().st_size}\0".encode())
        if total <= FULL_HASH_LIMIT:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(_BLOCK), b""):
                    digest.update(block)
        else:
            _sampled(path, digest)
    return digest.hexdigest()[:16]


def _config_bytes(path: Path) -> bytes:
    """config.json without `transformers_version`: which transformers saved a config does not change the model."""
    try:
        config = json.loads(path.read_text())
    except ValueError:
        return path.read_bytes()
    config.pop("transformers_version", None)
    return json.dumps(config, sort_keys=True).encode()


def _weight_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def _sampled(path: Path, digest) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        if path.suffix == ".safetensors" and size >= 8:
            (header_len,) = struct.unpack("<Q", f.read(8))
            digest.update(f.read(min(header_len, size - 8)))
        for i in range(SAMPLES):
            f.seek(max(0, (size - _BLOCK) * i // max(1, SAMPLES - 1)))
            digest.update(f.read(_BLOCK))
