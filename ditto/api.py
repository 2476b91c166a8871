"""ditto's Python API: `ditto.build`, `ditto.export`, `ditto.run`, `ditto.compare`.

The third way to use ditto, beside the `ditto` command and the pytest plugin: the same steps,
driven from Python, results returned as objects. Each function imports the heavy modules
(torch, transformers, TensorRT) only when called, so `import ditto` stays cheap. Failures
the user can act on raise `ditto.DittoError` with a message saying what to do.
Progress lines go to a `progress(line)` callback when given, else to the `ditto` logger.
"""

from __future__ import annotations

import os
from pathlib import Path

TYPE_CHECKING = False  # typing itself is not imported: `import ditto` stays a few milliseconds
if TYPE_CHECKING:
    from typing import Callable, Sequence, Union

    import torch

    from ditto.comparator.results import RunComparison
    from ditto.program import TrtllmProgram

    StepDump = dict[str, torch.Tensor]  # one per step (ditto.runtime.backend.StepDump)
    Dumps = Union[str, os.PathLike, StepDump, Sequence[StepDump]]


def build(model: str, engine_dir: str | os.PathLike, **options) -> Path:
    """Build a TensorRT-LLM engine directory (config.json + rank0.engine) from a Hugging Face model.

    `model`: a local HF directory, a hub id already in the local HF cache, or a built-in tiny
    name (`tiny-llama`, ...). `engine_dir`: the folder to write (refused if it exists, unless
    `force=True`). `options` are `ditto build`'s flags as keywords: `dtype`, `max_batch_size`,
    `max_input_len`, `max_seq_len`, `max_num_tokens`, `tokens_per_block` (each None = what
    trtllm-build 1.2 gives the model), `add_output` and `probes` (tuples of names), `attention`
    ("auto", "plugin", "native"), `trt_provider`, `force`, `verify`, `trust_remote_code`,
    `progress`. Returns the engine directory's path.

    Example::

        path = ditto.build("tiny-llama", "engines/tiny-llama", force=True, progress=print)
    """
    from ditto.builder import build as build_engine_dir

    return build_engine_dir(model, engine_dir, **options)


def export(
    model: str,
    dtype: str | None = None,
    *,
    tokens_per_block: int = 64,
    trust_remote_code: bool = False,
    artifacts_dir: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrtllmProgram:
    """Export `model` and rewrite it into TensorRT-LLM form, without building an engine.

    Returns a `ditto.program.TrtllmProgram`: `graph_module` (the FX graph, weights left in the
    checkpoint files until needed), `pass_log` ([(pass name, matches)]), `attention` (one
    GPTAttention parameter set per layer), `moe`, `probe_modules`, `hf_config`, `dtype`.
    With `artifacts_dir` (default: $DEBUG_ARTIFACTS_DIR) writes graph_module.py, graph.txt and
    passes.txt there.

    Example::

        program = ditto.export("tiny-llama")
        print(dict(program.pass_log)["replace_attention"])  # 2: one gpt_attention per layer
    """
    from ditto import fsutil
    from ditto.debug.artifacts import write_graph_artifacts
    from ditto.pipeline import load_program
    from ditto.progress import Stages

    if artifacts_dir is not None:  # checked before the export, whose work would be lost
        fsutil.check_output_dir(Path(artifacts_dir), "artifacts folder")
    with Stages(progress)("load, export, passes"):
        program = load_program(model, dtype, tokens_per_block=tokens_per_block, trust_remote_code=trust_remote_code)
    if artifacts_dir is not None:
        Path(artifacts_dir).mkdir(parents=True, exist_ok=True)
        write_graph_artifacts(program, Path(artifacts_dir))
    return program


def run(
    model: str,
    prompts: Sequence[str | Sequence[int]],
    *,
    backend: str = "fx",
    steps: int = 10,
    dtype: str = "float32",
    probes: Sequence[str] = (),
    all_probes: bool = False,
    device: str = "cpu",
    engine_dir: str | os.PathLike | None = None,
    forced_tokens: Sequence[Sequence[int]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Stepwise inference on one of ditto's backends: a context step, then `steps` generation steps.

    `prompts`: texts (tokenized with the model's tokenizer, else their UTF-8 bytes for the
    built-in tiny models) or lists of token ids, one per sequence. `backend`: fx, replay, hf,
    ditto or trtllm (the last two run the engine in `engine_dir`). `probes`: extra outputs by
    meaning (`layers.0.attn`, `final_norm`, ...; `all_probes` for every one). `forced_tokens[s][b]`:
    the token fed to sequence b at generation step s instead of the greedy choice. Returns one
    dump per step, `{name: tensor}`: the step's inputs, `logits` [batch, vocab] float32 and the
    probes (the format `ditto.compare` and `ditto.dumps.save_steps` take).

    Example::

        dumps = ditto.run("tiny-llama", ["Hello", [1, 2, 3]], steps=4)
        print(dumps[-1]["logits"].argmax(-1))  # the tokens chosen at the last step
    """
    from ditto.errors import DittoError
    from ditto.models.loader import DTYPES, load_config, load_model, resolve_model_dir
    from ditto.probes import all_probe_names, probe_modules
    from ditto.progress import Stages
    from ditto.runtime.backend import StepwiseRequest, get_backend
    from ditto.runtime.request import check_device, check_prompts, tokenize

    directory = resolve_model_dir(model)
    if steps < 0:
        raise DittoError(f"steps must be >= 0, not {steps}")
    if dtype not in DTYPES:
        raise DittoError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    check_device(device, "device")
    texts = [p for p in prompts if isinstance(p, str)]
    tokenized = iter(tokenize(directory, texts, None)[0] if texts else [])
    ids = [next(tokenized) if isinstance(p, str) else [int(t) for t in p] for p in prompts]
    config = load_config(directory)
    check_prompts(ids, getattr(config, "vocab_size", None))
    probes = list(probes)
    if all_probes:
        probes = all_probe_names(probe_modules(load_model(model, dtype).model, config.num_hidden_layers))
    runner = get_backend(backend)
    reason = runner.unavailable_reason()
    if reason:
        raise DittoError(f"backend {backend!r} cannot run here: {reason}")
    request = StepwiseRequest(model=model, prompts=ids, steps=steps, dtype=DTYPES[dtype], probes=probes, device=device,
                              engine_dir=str(engine_dir) if engine_dir else None,
                              forced_tokens=[list(t) for t in forced_tokens] if forced_tokens is not None else None)
    with Stages(progress)(f"run {backend} ({len(ids)} sequences, {steps} steps)"):
        return runner.run(request)


def compare(
    a: Dumps,
    b: Dumps,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    aliases: dict[str, str] | None = None,
) -> RunComparison:
    """Compare two runs tensor by tensor; `b` is the reference.

    `a`, `b`: two step files (step0.pt, step0.safetensors), two dump folders (steps paired by
    index), two step dumps, or two lists of step dumps as `ditto.run` returns. A tensor passes
    when |a - b| <= atol + rtol * |b| everywhere (default tolerances per dtype, atol scaled by
    max(1, max |b|); see ditto.comparator.tolerances). `aliases` pairs renamed tensors
    ({name in a: name in b}). Returns a `RunComparison`: `.passed`, `.steps` (per step, per
    tensor: max/mean abs error, cosine, worst index, ...); `ditto.comparator.format_table(result)`
    prints it as `ditto compare` does, `to_json(result)` gives JSON.

    Example::

        from ditto.comparator import format_table

        result = ditto.compare(ditto.run("tiny-llama", ["Hi"], dtype="float16"), ditto.run("tiny-llama", ["Hi"]))
        print(format_table(result))  # per step, per tensor: errors, cosine, worst element
    """
    from ditto.comparator import compare_paths, compare_runs
    from ditto.errors import DittoError

    if isinstance(a, (str, os.PathLike)) and isinstance(b, (str, os.PathLike)):
        return compare_paths(a, b, atol=atol, rtol=rtol, aliases=aliases)
    if isinstance(a, dict) and isinstance(b, dict):
        a, b = [a], [b]
    if isinstance(a, (str, os.PathLike, dict)) or isinstance(b, (str, os.PathLike, dict)):
        raise DittoError("compare two paths, two step dumps or two lists of step dumps; got "
                         f"{type(a).__name__} and {type(b).__name__}")
    return compare_runs(list(a), list(b), atol=atol, rtol=rtol, aliases=aliases)
