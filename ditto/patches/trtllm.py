"""The monkeypatches themselves: thin wrappers that call ditto.debug.trtllm and write artifacts.

Patched. Read in TensorRT-LLM's sources: generation.py at v1.2.0rc2, builder.py / network.py /
functional.py in recent main-line and 0.x-era copies (the same shapes in both). `apply` checks the
signatures at import, so a release that changed them fails there, not mid-build:

- `tensorrt_llm.builder.Builder.build_engine(self, network, builder_config, managed_weights=None)`:
  called by `tensorrt_llm.builder.build` once the network is complete (after graph rewriting and
  `--visualize_network`'s ONNX export), right before `build_serialized_network`. Before it runs:
  `TRTLLM_ADD_OUTPUT` outputs are marked; with DEBUG_ARTIFACTS_DIR, `trt_network_def.py` and
  `plugin.txt` are written. Plugin fields come from `tensorrt_llm.network.get_plugin_info`, which
  `functional.gpt_attention` fills (`_add_plugin_info`) with the exact PluginFieldCollection it
  created, keyed by the final layer name.
- `tensorrt_llm.runtime.generation.GenerationSession.dump_debug_buffers(self, step)`: called after
  every step in debug mode with `self.debug_buffer` holding the step's engine inputs and outputs
  (extra outputs included). With DEBUG_ARTIFACTS_DIR it writes `step{step}.pt` there (in
  `rank{r}/` when the world size is above 1) instead of `tllm_debug/*.npy`.
"""

from __future__ import annotations

import functools
import inspect
import os

from ditto import fsutil
from ditto.debug.artifacts import artifacts_dir
from ditto.debug.network_def import write_network_definition
from ditto.debug.trtllm import (
    ADD_OUTPUT_ENV,
    PluginFields,
    add_outputs,
    check_trtllm_version,
    format_plugin_fields,
    parse_add_output,
    step_dump,
)
from ditto.dumps import save_step
from ditto.errors import DittoError

NETWORK_DEF_FILE = "trt_network_def.py"
PLUGIN_FILE = "plugin.txt"
PLUGIN_TYPES = ("GPTAttention",)  # the plugins whose fields plugin.txt records


def apply() -> str:
    """Patch the installed TensorRT-LLM (idempotent); returns its supported release line."""
    try:
        import tensorrt_llm
    except ImportError as e:
        raise DittoError(
            f"ditto.patches patches TensorRT-LLM, which cannot be imported here ({e}); run it where "
            "TensorRT-LLM is installed, e.g. the GPU-node image built from docker/"
        ) from e
    line = check_trtllm_version(tensorrt_llm.__version__)
    from tensorrt_llm.builder import Builder
    from tensorrt_llm.network import get_plugin_info
    from tensorrt_llm.runtime.generation import GenerationSession

    patches = [
        (Builder, "build_engine", ("self", "network", "builder_config"),
         lambda original: _build_engine(original, get_plugin_info)),
        (GenerationSession, "dump_debug_buffers", ("self", "step"), _dump_debug_buffers),
    ]
    for owner, name, leading_params, _ in patches:  # check all before patching any
        _check_signature(owner, name, leading_params)
    for owner, name, _, make in patches:
        original = getattr(owner, name)
        if not hasattr(original, "__ditto_original__"):
            wrapper = functools.wraps(original)(make(original))
            wrapper.__ditto_original__ = original
            setattr(owner, name, wrapper)
    return line


def _check_signature(owner, name: str, leading_params: tuple[str, ...]) -> None:
    params = tuple(inspect.signature(getattr(owner, name)).parameters)[: len(leading_params)]
    if params != leading_params:
        raise DittoError(
            f"ditto.patches: {owner.__module__}.{owner.__name__}.{name} takes ({', '.join(params)}, ...), "
            f"not ({', '.join(leading_params)}, ...) as in the TensorRT-LLM sources it was written against; "
            "this TensorRT-LLM build is not supported"
        )


def _build_engine(original, get_plugin_info):
    def build_engine(self, network, builder_config, *args, **kwargs):
        trt_network = network.trt_network
        folder = artifacts_dir()
        spec = parse_add_output(os.environ.get(ADD_OUTPUT_ENV))
        try:
            add_outputs(trt_network, spec)
        except DittoError:
            if folder is not None:  # the layer names to choose from
                write_network_definition(trt_network, folder / NETWORK_DEF_FILE)
            raise
        if folder is not None:
            write_network_definition(trt_network, folder / NETWORK_DEF_FILE)
            fsutil.write_text(folder / PLUGIN_FILE, format_plugin_fields(_plugin_records(trt_network, get_plugin_info)))
        return original(self, network, builder_config, *args, **kwargs)

    return build_engine


def _plugin_records(trt_network, get_plugin_info) -> list[PluginFields]:
    records = []
    for i in range(trt_network.num_layers):
        name = trt_network.get_layer(i).name
        info = get_plugin_info(trt_network, name)
        if info is None or info.plugin_creator.name not in PLUGIN_TYPES:
            continue
        creator = info.plugin_creator
        records.append(PluginFields(name, creator.name, creator.plugin_version, dict(info.pfc_as_ndarray)))
    return records


def _dump_debug_buffers(original):
    def dump_debug_buffers(self, step, *args, **kwargs):
        folder = artifacts_dir()
        if folder is None:
            return original(self, step, *args, **kwargs)
        if self.mapping.world_size > 1:  # one folder per rank, as tllm_debug/PP_*/TP_* does
            folder = folder / f"rank{self.mapping.rank}"
        context = _step_context(self.runtime, step)
        shapes = {}
        for name in self.debug_buffer:
            try:
                shapes[name] = tuple(context.get_tensor_shape(name))
            except Exception:  # not an engine I/O name: dumped as bound
                continue
        save_step(folder / f"step{step}.pt", step_dump(self.debug_buffer, shapes))

    return dump_debug_buffers


def _step_context(runtime, step: int):
    """The execution context `GenerationSession.handle_per_step` ran `step` on."""
    if step == 0:
        return runtime.ctx_context
    return runtime.context_0 if step % 2 else runtime.context_1
