"""`ditto.build`: model -> TensorRT-LLM engine directory, stage by stage with progress.

Stages: load + export + passes (ditto.pipeline), network (ditto.trt.network), build
(TensorRT's builder), write (config.json + rank0.engine, atomically). With
DEBUG_ARTIFACTS_DIR set: graph files, `trt_network_def.py` and `build_report.json`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from ditto.cli.progress import stage
from ditto.debug.artifacts import artifacts_dir
from ditto.errors import DittoError
from ditto.pipeline import load_program
from ditto.trt.network import NetworkLimits, build_network
from ditto.trt.provider import trt_module
from ditto.trtllm.config import BuildOptions, engine_config, write_engine_dir


def build(
    model: str,
    engine_dir: str | Path,
    *,
    dtype: str | None = None,
    max_batch_size: int = 4,
    max_input_len: int = 128,
    max_seq_len: int = 256,
    max_num_tokens: int = 512,
    tokens_per_block: int = 32,
    add_output: tuple[str, ...] = (),
    probes: tuple[str, ...] = (),
    attention: str = "auto",
    force: bool = False,
    trt_provider: str | None = None,
    trust_remote_code: bool = False,
    verify: bool = False,
) -> Path:
    engine_dir = Path(engine_dir)
    if engine_dir.exists() and not force:
        raise DittoError(f"{engine_dir} already exists; pass --force to replace it")
    trt = trt_module(trt_provider)
    if attention == "auto":
        attention = "plugin" if _has_trtllm_plugins(trt) else "native"
    timings: dict[str, float] = {}

    def timed(name):
        class _Timer:
            def __enter__(self):
                self.start = time.perf_counter()
                self.cm = stage(name)
                self.cm.__enter__()

            def __exit__(self, *exc):
                self.cm.__exit__(*exc)
                timings[name] = time.perf_counter() - self.start

        return _Timer()

    with timed("load, export, passes"):
        program = load_program(model, dtype, tokens_per_block=tokens_per_block, trust_remote_code=trust_remote_code)
    options = BuildOptions(
        dtype=program.dtype,
        max_batch_size=max_batch_size,
        max_input_len=max_input_len,
        max_seq_len=max_seq_len,
        max_num_tokens=max_num_tokens,
        tokens_per_block=tokens_per_block,
        gpt_attention_plugin=attention == "plugin",
    )
    extra = {name: name for name in add_output}
    if probes:  # probes by meaning (layers.3.mlp, ...) -> their FX nodes, outputs named by meaning
        from ditto.probes import check_probes, fx_probe_nodes

        wanted = check_probes(list(probes), program.probe_modules, model)
        found = fx_probe_nodes(program.graph_module.graph, {p: program.probe_modules[p] for p in wanted})
        extra.update({probe: node.name for probe, node in found.items()})
    limits = NetworkLimits(max_batch_size=max_batch_size, max_seq_len=max_seq_len, max_num_tokens=max_num_tokens)
    with timed("network"):
        built = build_network(program, trt, limits, extra, attention=attention)
    with timed("build"):
        config = built.builder.create_builder_config()
        profile = built.builder.create_optimization_profile()
        for name, (lo, opt, hi) in built.profile.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
        engine = built.builder.build_serialized_network(built.network, config)
        if engine is None:
            raise DittoError("TensorRT failed to build the engine; rerun with DEBUG_ARTIFACTS_DIR set and read trt_network_def.py")
    if verify:
        from ditto.replay.verify import verify_build

        with timed("verify (replay vs fx)"):
            report = verify_build(program, built.network, trt, extra, max_seq_len)
        for name, diff in report.items():
            print(f"verify: {name}: max abs difference replay vs fx {diff:.3g}")
    with timed("write"):
        trtllm_config = engine_config(program.hf_config, program.attention, options)
        trtllm_config["build_config"]["ditto"] = {"attention": attention, "trt_provider": trt.__name__, "outputs": built.outputs}
        path = write_engine_dir(engine_dir, trtllm_config, engine, force=force)
    _write_artifacts(built, timings)
    return path


def _has_trtllm_plugins(trt) -> bool:
    registry = getattr(trt, "get_plugin_registry", None)
    if registry is None or not hasattr(registry(), "get_plugin_creator"):
        return False
    try:
        return registry().get_plugin_creator("GPTAttention", "1", "tensorrt_llm") is not None
    except Exception:
        return False


def _write_artifacts(built, timings: dict) -> None:
    folder = artifacts_dir()
    if folder is None:
        return
    from ditto.debug.network_def import write_network_definition

    network = built.network
    write_network_definition(network, folder / "trt_network_def.py")
    layers = Counter(str(network.get_layer(i).type).split(".")[-1] for i in range(network.num_layers))
    report = {
        "layers": network.num_layers,
        "layers_by_type": dict(layers.most_common()),
        "inputs": [_io(network.get_input(i)) for i in range(network.num_inputs)],
        "outputs": [_io(network.get_output(i)) for i in range(network.num_outputs)],
        "profile": {k: [list(s) for s in v] for k, v in built.profile.items()},
        "stage_seconds": timings,
    }
    (folder / "build_report.json").write_text(json.dumps(report, indent=2))


def _io(tensor) -> dict:
    return {"name": tensor.name, "shape": list(tensor.shape), "dtype": str(tensor.dtype).split(".")[-1]}
