"""Engine builders the fixtures call, and the cache around them.

A builder writes one engine directory for a model; `build_engine` runs it at most once per
model content, options and versions (harness.engine_cache). Adding a builder is one
`register_engine_builder(name, EngineBuilder(...))`; `ditto` (ditto.builder) and `trtllm`
(harness.trtllm) are built in.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.engine_cache import CacheResult, get_or_build
from harness.models import ModelUnderTest
from harness.versions import full_versions


@dataclass(frozen=True)
class EngineBuilder:
    build: Callable[[ModelUnderTest, Path, dict], None]  # (model, empty folder, options) -> engine in folder
    unavailable_reason: Callable[[], str | None] = lambda: None  # None: this machine can build
    versions: Callable[[], dict[str, str]] = dict  # versions beyond ditto/torch/transformers


ENGINE_BUILDERS: dict[str, EngineBuilder] = {}


def register_engine_builder(name: str, builder: EngineBuilder) -> None:
    ENGINE_BUILDERS[name] = builder


# TensorRT-LLM 1.2's PluginConfig default; passed explicitly so both engines use the same
TOKENS_PER_BLOCK = 32


def engine_options(model: ModelUnderTest, dtype: str, steps: int, probes: list[str]) -> dict:
    """Build options sized for the harness's request: its batch, its longest sequence, its probes.

    Every limit is explicit and given to both builders (ditto build, trtllm-build), so the two
    engines share one optimization profile; max_num_tokens is what trtllm-build's
    check_max_num_tokens clamps its 8192 default to (max_seq_len * max_batch_size).
    """
    max_seq_len = max(len(p) for p in model.prompts) + steps + 1
    return {
        "dtype": dtype,
        "max_batch_size": len(model.prompts),
        "max_input_len": max(len(p) for p in model.prompts),
        "max_seq_len": max_seq_len,
        "max_num_tokens": max(len(model.prompts) * max_seq_len, TOKENS_PER_BLOCK),
        "tokens_per_block": TOKENS_PER_BLOCK,
        "probes": [p for p in probes if p != "logits"],
    }


def build_engine(name: str, model: ModelUnderTest, cache_dir: Path, options: dict) -> CacheResult:
    """The cached engine of builder `name` for `model`; raises LookupError for an unknown builder."""
    if name not in ENGINE_BUILDERS:
        raise LookupError(f"no engine builder {name!r}; registered: {', '.join(sorted(ENGINE_BUILDERS))}")
    builder = ENGINE_BUILDERS[name]
    inputs = {
        "model_hash": model.content_hash,
        "builder": name,
        "options": options,
        "versions": {**full_versions(), **builder.versions()},
    }
    return get_or_build(cache_dir, f"{model.key}-{name}", inputs, lambda folder: builder.build(model, folder, options))


def _ditto_build(model: ModelUnderTest, folder: Path, options: dict) -> None:
    from ditto.builder import build

    build(str(model.directory), folder, dtype=options["dtype"], max_batch_size=options["max_batch_size"],
          max_input_len=options["max_input_len"], max_seq_len=options["max_seq_len"],
          max_num_tokens=options["max_num_tokens"], tokens_per_block=options["tokens_per_block"],
          probes=tuple(p for p in options["probes"] if p != "logits"), force=True)


def _ditto_unavailable() -> str | None:
    if importlib.util.find_spec("ditto.builder") is None:
        return "ditto.builder is not part of this ditto checkout"
    if importlib.util.find_spec("tensorrt") is None and importlib.util.find_spec("tensorrt_rtx") is None:
        return "neither tensorrt nor tensorrt_rtx is installed on this machine"
    return None


def _trt_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("tensorrt", "tensorrt-rtx-cu12", "tensorrt-rtx-cu13", "tensorrt-llm"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return found


register_engine_builder("ditto", EngineBuilder(_ditto_build, _ditto_unavailable, _trt_versions))
