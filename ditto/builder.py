"""Model -> TensorRT-LLM engine directory, stage by stage (the public entry point is `ditto.build`).

Stages: load + export + passes (ditto.pipeline), network (ditto.trt.network), build
(TensorRT's builder), write (config.json + rank0.engine, atomically). With
DEBUG_ARTIFACTS_DIR set: graph files, `trt_network_def.py` and `build_report.json`.
Progress (each stage's start and time, `--verify`'s differences) goes to a `progress`
callback, one line per call (the CLI prints them), else to the `ditto` logger at INFO.
"""

from __future__ import annotations

import dataclasses
import json
import mmap
import os
from collections import Counter
from pathlib import Path

from ditto import fsutil
from ditto.debug.artifacts import artifacts_dir
from ditto.errors import DittoError
from ditto.pipeline import load_program
from ditto.probes import program_probe_nodes
from ditto.progress import Progress, Stages, or_log
from ditto.trt.engine import build_engine
from ditto.trt.network import NetworkLimits, build_network, resolve_attention
from ditto.trt.provider import trt_module
from ditto.trtllm.config import (
    TRTLLM_BUILD_DEFAULTS,
    BuildOptions,
    check_limit_values,
    engine_config,
    engine_dir_problem,
    resolve_limits,
    write_engine_dir,
)


def build(
    model: str,
    engine_dir: str | Path,
    *,
    dtype: str | None = None,
    max_batch_size: int | None = None,
    max_input_len: int | None = None,
    max_seq_len: int | None = None,
    max_num_tokens: int | None = None,
    tokens_per_block: int | None = None,
    add_output: tuple[str, ...] = (),
    probes: tuple[str, ...] = (),
    attention: str = "auto",
    force: bool = False,
    trt_provider: str | None = None,
    trust_remote_code: bool = False,
    verify: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Limits left None get trtllm-build 1.2's defaults for the model (ditto.trtllm.config.resolve_limits).

    `progress(line)` is called at each stage's start and end (default: the `ditto` logger at INFO).
    """
    progress = or_log(progress)
    engine_dir = Path(engine_dir)
    given = dict(max_batch_size=max_batch_size, max_input_len=max_input_len, max_seq_len=max_seq_len,
                 max_num_tokens=max_num_tokens, tokens_per_block=tokens_per_block)
    check_limit_values(**given)
    check_engine_target(engine_dir, force)  # before the long stages: their work is lost otherwise
    folder = artifacts_dir()  # checked writable now, for the same reason
    trt = trt_module(trt_provider)
    attention = resolve_attention(trt, attention)
    stages = Stages(progress)
    with stages("load, export, passes"):
        program = load_program(model, dtype, tokens_per_block=tokens_per_block or TRTLLM_BUILD_DEFAULTS["tokens_per_block"],
                               trust_remote_code=trust_remote_code)
    resolved = resolve_limits(program.hf_config, sequence_limit=program.sequence_limit, **given)
    if program.sequence_limit is not None and max_seq_len is None and resolved.max_seq_len == program.sequence_limit.tokens:
        progress(f"max_seq_len: {resolved.max_seq_len}, capped by the model's sequence limit: "
                 f"{program.sequence_limit.construct}")
    options = BuildOptions(dtype=program.dtype, **dataclasses.asdict(resolved), gpt_attention_plugin=attention == "plugin")
    extra = {name: name for name in add_output}
    # probes by meaning (layers.3.mlp, ...) -> their FX nodes, outputs named by meaning
    extra.update({probe: node.name for probe, node in program_probe_nodes(program, probes, model).items()})
    limits = NetworkLimits(max_batch_size=options.max_batch_size, max_seq_len=options.max_seq_len,
                           max_num_tokens=options.max_num_tokens, max_input_len=options.max_input_len)
    moe = "native"
    if program.moe:  # TensorRT-LLM's MoE plugin where it can be created, TensorRT layers otherwise
        from ditto.trt.converters.moe import resolve_moe

        moe, why = resolve_moe(trt)
        print(f"moe: {len(program.moe)} layer(s) lowered to "
              f"{'TensorRT-LLM MixtureOfExperts plugin' if moe == 'plugin' else 'TensorRT layers'} ({why})")
    engine_dir.parent.mkdir(parents=True, exist_ok=True)
    with stages("network"):
        # computed weights are staged beside the engine directory (see ditto.trt.weights)
        built = build_network(program, trt, limits, extra, attention=attention, staging_dir=engine_dir.parent,
                              plugin_options=options.plugin_options(), moe=moe)
    plan_path = fsutil.temp_path(engine_dir, "plan")
    try:
        if folder is not None:  # before the build, so that a failed build can be read
            from ditto.debug.network_def import write_network_definition

            write_network_definition(built.network, folder / "trt_network_def.py")
        with stages("build"):
            build_engine(built, trt, Path(plan_path))
        if verify:
            from ditto.replay.verify import verify_build

            with stages("verify (replay vs fx)"):
                report = verify_build(program, built.network, trt, extra, options.max_seq_len)
            for name, diff in report.items():
                progress(f"verify: {name}: max abs difference replay vs fx {diff:.3g}")
        built.weights.release_pages()  # the network's weights are no longer needed in memory
        with stages("write"):
            trtllm_config = engine_config(program.hf_config, program.attention, options, moe=program.moe)
            trtllm_config["build_config"]["ditto"] = {"attention": attention, "moe": moe, "trt_provider": trt.__name__,
                                                      "outputs": built.outputs}
            with open(plan_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as plan:
                path = write_engine_dir(engine_dir, trtllm_config, plan, force=force)
    finally:
        built.weights.close()
        if os.path.lexists(plan_path):
            os.unlink(plan_path)
    if folder is not None:
        _write_report(built, stages.seconds, folder)
    return path


def check_engine_target(engine_dir: Path, force: bool) -> None:
    """Refuse, before any work, an engine path that cannot be written or must not be replaced.

    `--force` replaces only an engine folder ditto wrote (recognised by its contents) or an
    empty folder, never a model checkpoint or a folder of someone's notes.
    """
    if engine_dir.exists():
        if not force:
            raise DittoError(f"{engine_dir} already exists; pass --force to replace it, or choose another directory")
        problem = engine_dir_problem(engine_dir)
        if problem:
            raise DittoError(f"--force replaces only an engine folder ditto wrote, and {engine_dir} {problem}; "
                             "choose another directory")
    fsutil.check_output_dir(engine_dir.parent, "the folder that will hold the engine folder,")
    fsutil.sweep_leftovers(engine_dir.parent)  # plans and staging folders of crashed builds


def _write_report(built, timings: dict, folder: Path) -> None:
    network = built.network
    layers = Counter(str(network.get_layer(i).type).split(".")[-1] for i in range(network.num_layers))
    report = {
        "layers": network.num_layers,
        "layers_by_type": dict(layers.most_common()),
        "inputs": [_io(network.get_input(i)) for i in range(network.num_inputs)],
        "outputs": [_io(network.get_output(i)) for i in range(network.num_outputs)],
        "profile": {k: [list(s) for s in v] for k, v in built.profile.items()},
        "stage_seconds": timings,
        "weights": {"mapped_from_checkpoint_bytes": built.weights.mapped_bytes, "staged_bytes": built.weights.staged_bytes},
    }
    fsutil.write_text(folder / "build_report.json", json.dumps(report, indent=2))


def _io(tensor) -> dict:
    return {"name": tensor.name, "shape": list(tensor.shape), "dtype": str(tensor.dtype).split(".")[-1]}
