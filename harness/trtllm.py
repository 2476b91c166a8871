"""TensorRT-LLM's own engine for the `trtllm_engine` fixture: convert_checkpoint.py, then trtllm-build.

Runs only where TensorRT-LLM is installed (a GPU node, docker/); written against the
TensorRT-LLM 1.2 sources and NOT run on the CPU machines this was written on. Everything that
needs no TensorRT-LLM (script choice, command lines, probe-to-layer mapping) is tested.

Probes on TensorRT-LLM's network (the one thin per-framework mapping the harness keeps).
TensorRT-LLM's decoder-only models (`DecoderModelForCausalLM`: models/llama/model.py,
qwen, gemma, phi3, gpt) name their modules alike: `transformer.layers.{i}.attention`,
`transformer.layers.{i}.mlp`, the layer itself `transformer.layers.{i}`, and the final norm
`transformer.ln_f`. TensorRT-LLM names every TensorRT layer `<Arch>/<module path with
'/'>/<KIND>_<n>` (network.py's unique name generator), so a module's output is the output of
the *last* layer whose name lies under its path. To learn the layer names, the engine is
built once with DEBUG_ARTIFACTS_DIR (ditto.patches writes `trt_network_def.py`, one
`# <layer name>` comment per layer, in network order), then again with TRTLLM_ADD_OUTPUT
naming those layers with the probe names as aliases.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from ditto.errors import DittoError
from harness.engines import EngineBuilder, register_engine_builder
from harness.models import ModelUnderTest

NOT_INSTALLED = "TensorRT-LLM is not installed on this machine"
EXAMPLES_ENV = "TRTLLM_EXAMPLES_DIR"
DEFAULT_EXAMPLES = (Path("/app/tensorrt_llm/examples"), Path("/workspace/tensorrt_llm/examples"))

# probe kind -> TensorRT-LLM module path (layer-name form)
TRTLLM_MODULES = {
    "attn": "transformer/layers/{i}/attention",
    "mlp": "transformer/layers/{i}/mlp",
    "out": "transformer/layers/{i}",
    "final_norm": "transformer/ln_f",
}

# HF model_type -> (folder under examples/models/core, extra convert_checkpoint.py arguments)
CONVERT_SCRIPTS = {
    "llama": ("llama", []),
    "mistral": ("llama", []),
    "qwen2": ("qwen", []),
    "qwen3": ("qwen", []),
    "gemma": ("gemma", ["--ckpt-type", "hf"]),
    # tensorrt_llm/models/__init__.py MODEL_MAP (store id 2489028756; commit not given): GEMMA2_ARCHITECTURE
    # maps to GemmaForCausalLM, so Gemma-2 converts with gemma's script
    "gemma2": ("gemma", ["--ckpt-type", "hf"]),
    "phi3": ("phi", []),
    "gpt2": ("gpt", []),
    # examples/models/core/mixtral/README.md (commit 10c1d594): Mixtral uses llama's script
    "mixtral": ("llama", []),
    # tensorrt_llm/models/qwen/config.py (commit 0428c188) accepts qwen3_moe (MoE mode NONE)
    "qwen3_moe": ("qwen", []),
}


def trtllm_module(probe: str) -> str:
    """The TensorRT-LLM module path (with '/') whose output is `probe`."""
    match = re.fullmatch(r"layers\.(\d+)\.(attn|mlp|out)", probe)
    if match:
        return TRTLLM_MODULES[match.group(2)].format(i=match.group(1))
    if probe in TRTLLM_MODULES:
        return TRTLLM_MODULES[probe]
    raise DittoError(f"probe {probe!r} has no TensorRT-LLM module; known: layers.N.attn/mlp/out, final_norm")


def probe_layers(layer_names: list[str], probes: list[str]) -> dict[str, str]:
    """{TensorRT layer name: probe} for TRTLLM_ADD_OUTPUT: the last layer under each probe's module."""
    chosen: dict[str, str] = {}
    for probe in probes:
        under = "/" + trtllm_module(probe) + "/"
        inside = [name for name in layer_names if under in "/" + name]
        if not inside:
            raise DittoError(f"no TensorRT-LLM layer lies under {under.strip('/')} (probe {probe}); "
                             "the network's module names differ from harness.trtllm.TRTLLM_MODULES")
        chosen[inside[-1]] = probe
    return chosen


def layer_names_from_network_def(text: str) -> list[str]:
    """Layer names in network order from ditto's trt_network_def.py: the comment above each statement."""
    lines = text.splitlines()
    return [
        line[2:]
        for before, line, after in zip([""] + lines, lines, lines[1:] + [""])
        if before == "" and line.startswith("# ") and after and not after.startswith("#")
    ]


def examples_dir(environ=os.environ) -> Path:
    if environ.get(EXAMPLES_ENV):
        return Path(environ[EXAMPLES_ENV])
    for path in DEFAULT_EXAMPLES:
        if path.is_dir():
            return path
    raise DittoError(f"cannot find TensorRT-LLM's examples/ (tried {', '.join(map(str, DEFAULT_EXAMPLES))}); "
                     f"set {EXAMPLES_ENV} to the examples/ folder of the installed TensorRT-LLM release")


def convert_command(model_type: str, model_dir: Path, out: Path, dtype: str, examples: Path) -> list[str]:
    if model_type not in CONVERT_SCRIPTS:
        raise DittoError(f"no TensorRT-LLM convert_checkpoint.py known for model_type {model_type!r}; "
                         f"known: {', '.join(CONVERT_SCRIPTS)} (add one line to harness.trtllm.CONVERT_SCRIPTS)")
    folder, extra = CONVERT_SCRIPTS[model_type]
    script = examples / "models" / "core" / folder / "convert_checkpoint.py"
    return [sys.executable, str(script), "--model_dir", str(model_dir), "--output_dir", str(out),
            "--dtype", dtype, *extra]


def convert_env(examples: Path, environ=os.environ) -> dict[str, str]:
    """The environment for convert_checkpoint.py: newer example scripts import `examples._deprecation`,
    so the folder holding `examples/` goes first on PYTHONPATH."""
    paths = [str(examples.parent)] + [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def build_command(checkpoint: Path, out: Path, options: dict) -> list[str]:
    """trtllm-build under ditto's patches (scripts/trtllm-build) with the engine I/O ditto targets and
    the harness's limits, the same ditto build gets (one profile for both engines; flags as
    tensorrt_llm/commands/build.py 1.2 takes them, `--kv_cache_type paged`, not the deprecated
    `--paged_kv_cache`)."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "trtllm-build"
    if not script.is_file():
        raise DittoError(f"{script} is missing: trtllm_engine needs a ditto checkout (scripts/trtllm-build)")
    return [sys.executable, str(script), "--checkpoint_dir", str(checkpoint), "--output_dir", str(out),
            "--max_batch_size", str(options["max_batch_size"]), "--max_input_len", str(options["max_input_len"]),
            "--max_seq_len", str(options["max_seq_len"]), "--max_num_tokens", str(options["max_num_tokens"]),
            "--tokens_per_block", str(options["tokens_per_block"]), "--gpt_attention_plugin", "auto",
            "--remove_input_padding", "enable", "--kv_cache_type", "paged", "--workers", "1"]


def build_trtllm_engine(model: ModelUnderTest, folder: Path, options: dict) -> None:
    examples = examples_dir()
    with tempfile.TemporaryDirectory(prefix="trtllm-", dir=folder.parent) as work:
        checkpoint, artifacts = Path(work) / "checkpoint", Path(work) / "artifacts"
        _run(convert_command(model.config.model_type, model.directory, checkpoint, options["dtype"], examples),
             **convert_env(examples))
        if not options["probes"]:
            _run(build_command(checkpoint, folder, options))
            return
        # first build: only to learn the layer names
        _run(build_command(checkpoint, Path(work) / "names-only", options), DEBUG_ARTIFACTS_DIR=str(artifacts))
        network_defs = sorted(artifacts.rglob("trt_network_def.py"))
        if not network_defs:
            raise DittoError(f"trtllm-build wrote no trt_network_def.py under {artifacts}; are ditto.patches applied?")
        layers = probe_layers(layer_names_from_network_def(network_defs[0].read_text()), options["probes"])
        _run(build_command(checkpoint, folder, options), TRTLLM_ADD_OUTPUT=json.dumps(layers))


def _run(command: list[str], **env: str) -> None:
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise DittoError(f"{Path(command[1]).name} failed (exit {done.returncode}):\n{tail}")


def _unavailable() -> str | None:
    return None if importlib.util.find_spec("tensorrt_llm") is not None else NOT_INSTALLED


register_engine_builder("trtllm", EngineBuilder(build_trtllm_engine, _unavailable))
