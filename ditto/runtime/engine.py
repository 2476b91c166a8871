"""Run an engine directory (`config.json` + `rank0.engine`) step by step on TensorRT's runtime.

One `EngineRunner` deserializes the engine with the TensorRT module that built it, creates one
execution context, and runs the stepwise contract of `ditto.runtime.backend`: a context step
over the packed prompts, then one generation step per forced token, with the paged KV cache of
`ditto.runtime.paged_cache` (TensorRT-LLM's layout and inputs). Per step it binds every engine
input (host or device memory, as the engine says), checks each shape against the engine's
optimization profile, asks the context for the output shapes, allocates the outputs, executes,
and returns `logits` and the requested probes (extra engine outputs named by meaning).

Two engine kinds, one runner:
- a native-attention engine (`ditto build` without TensorRT-LLM): the pool is the input
  `kv_cache_pool` and comes back as `present_kv_cache_pool`, copied into the pool each step;
- a plugin engine (`ditto build` with TensorRT-LLM, or `trtllm-build`): the pool is reached
  through `host_kv_cache_pool_pointers`; TensorRT-LLM's plugin library must be loaded first
  (`import tensorrt_llm` runs `_common._init`, which calls `plugin._load_plugin_lib`).

The TensorRT calls used (TensorRT 10 / TensorRT-RTX Python API): `Runtime(Logger)`,
`deserialize_cuda_engine`, `num_io_tensors`, `get_tensor_name/mode/dtype/location`,
`get_tensor_profile_shape`, `create_execution_context`, `set_input_shape`,
`set_tensor_address`, `get_tensor_shape`, `execute_async_v3`. In CI these run on a test double
that executes the network by replay (tests/trt_runtime_double.py); no engine has been executed
on TensorRT by this project.

The `ditto` and `trtllm` backends are registered at the bottom; the harness gives them the
engine directory (`StepwiseRequest.engine_dir`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ditto.errors import DittoError
from ditto.runtime.backend import StepDump, StepwiseRequest, register_backend
from ditto.runtime.fx import max_seq_len_for
from ditto.runtime.paged_cache import PagedKVCache
from ditto.runtime.stepwise import run_steps
from ditto.trt.attention_native import POOL_INPUT, POOL_OUTPUT
from ditto.trt.provider import PROVIDERS
from ditto.trtllm.config import CONFIG_FILE, ENGINE_FILE, attention_windows

# TensorRT DataType names -> torch dtypes (the I/O types ditto's and TensorRT-LLM's engines use)
TORCH_DTYPES = {
    "FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
    "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool,
}
CONFIG_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# GPUs whose engines TensorRT-RTX refuses to run. Measured on the H200 test machine (sm_90):
# "TensorRT-RTX does not support this compute capability". Other data-centre parts are not
# listed because nobody here has seen them refused; add them when seen.
RTX_REFUSED_CAPABILITIES = {(9, 0): "sm_90 (Hopper data-centre GPUs such as H100/H200)"}
OUTPUTS_NOT_PROBES = ("logits", POOL_OUTPUT)


@dataclass(frozen=True)
class EngineConfig:
    """What the runner reads from config.json (TensorRT-LLM's schema, as `ditto build` and
    `trtllm-build` write it)."""

    dtype: torch.dtype
    num_layers: int
    num_kv_heads: int
    head_size: int
    tokens_per_block: int
    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    max_num_tokens: int
    uses_plugin: bool  # the engine has GPTAttention plugin layers (TensorRT-LLM's plugin library needed)
    trt_provider: str  # the TensorRT module that built the engine and must run it
    windows: list[int] | None  # per-layer attention windows (runtime_defaults), None: full attention

    @classmethod
    def read(cls, engine_dir: Path) -> "EngineConfig":
        path = engine_dir / CONFIG_FILE
        if not path.is_file() or not (engine_dir / ENGINE_FILE).is_file():
            raise DittoError(f"{engine_dir} is not an engine directory (needs {CONFIG_FILE} and {ENGINE_FILE}); "
                             "build one with `ditto build MODEL DIR`")
        try:
            config = json.loads(path.read_text())
            pretrained, build = config["pretrained_config"], config["build_config"]
            plugin = build["plugin_config"]
            num_heads = pretrained["num_attention_heads"]
            ditto_section = build.get("ditto", {})
            return cls(
                dtype=CONFIG_DTYPES[pretrained["dtype"]],
                num_layers=pretrained["num_hidden_layers"],
                num_kv_heads=pretrained.get("num_key_value_heads") or num_heads,
                head_size=pretrained.get("head_size") or pretrained["hidden_size"] // num_heads,
                tokens_per_block=plugin["tokens_per_block"],
                max_batch_size=build["max_batch_size"],
                max_input_len=build["max_input_len"],
                max_seq_len=build["max_seq_len"],
                max_num_tokens=build["max_num_tokens"],
                uses_plugin=plugin.get("gpt_attention_plugin") is not None and ditto_section.get("attention") != "native",
                # trtllm-build engines are TensorRT engines; ditto records its provider
                trt_provider=ditto_section.get("trt_provider", "tensorrt"),
                windows=attention_windows(config),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DittoError(f"{path} is not a TensorRT-LLM engine config ({type(e).__name__}: {e}); "
                             "rebuild the engine") from None

    def check_fits(self, request: StepwiseRequest) -> None:
        """The request within the engine's build limits (else the profile would refuse it mid-run)."""
        lengths = [len(p) for p in request.prompts]
        problems = []
        if len(lengths) > self.max_batch_size:
            problems.append(f"{len(lengths)} sequences > max_batch_size {self.max_batch_size}")
        if max(lengths) > self.max_input_len:
            problems.append(f"a prompt of {max(lengths)} tokens > max_input_len {self.max_input_len}")
        if max(lengths) + request.steps > self.max_seq_len:
            problems.append(f"{max(lengths)} + {request.steps} steps > max_seq_len {self.max_seq_len}")
        if sum(lengths) > self.max_num_tokens:
            problems.append(f"{sum(lengths)} packed prompt tokens > max_num_tokens {self.max_num_tokens}")
        if problems:
            raise DittoError(f"the request does not fit the engine: {'; '.join(problems)}; rebuild it with larger limits")


def load_trtllm_plugins(trt) -> None:
    """Load TensorRT-LLM's plugin library into `trt`'s registry, or say exactly what is missing."""
    from ditto.trtllm.gpt_attention_plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

    if trt.__name__ != "tensorrt":
        raise DittoError(f"the engine has TensorRT-LLM plugin layers, which {trt.__name__} cannot run; "
                         "run it where TensorRT and TensorRT-LLM are installed (docker/)")
    if importlib.util.find_spec("tensorrt_llm") is None:
        raise DittoError("the engine has TensorRT-LLM plugin layers and tensorrt_llm is not installed; "
                         "run it in the image in docker/")
    importlib.import_module("tensorrt_llm")  # _common._init -> plugin._load_plugin_lib()
    if trt.get_plugin_registry().get_plugin_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None:
        raise DittoError("importing tensorrt_llm did not register the GPTAttention plugin "
                         "(TRT_LLM_NO_LIB_INIT set?); unset it and retry")


class EngineSession:
    """One deserialized engine and its execution context; `execute` runs one step."""

    def __init__(self, trt, plan: bytes, device: torch.device):
        self.trt, self.device = trt, device
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise DittoError(f"{trt.__name__} could not deserialize the engine (its log above says why); an engine "
                             "runs only with the TensorRT version that built it, on a GPU it supports")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [n for n in names if is_input[n]]
        self.outputs = [n for n in names if not is_input[n]]
        self.dtypes = {n: _torch_dtype(self.engine.get_tensor_dtype(n), n) for n in names}
        self.on_host = {n: self.engine.get_tensor_location(n) == trt.TensorLocation.HOST for n in names}

    def execute(self, feed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [n for n in self.inputs if n not in feed]
        if missing:
            raise DittoError(f"the engine takes inputs {missing} that the runner does not provide; "
                             "was it built for another configuration (beam search, LoRA, ...)?")
        bound = {}  # kept alive until execute returns: TensorRT reads these addresses
        for name in self.inputs:
            value = self._placed(name, feed[name])
            self._check_profile(name, tuple(value.shape))
            if not self.context.set_input_shape(name, tuple(value.shape)):
                raise DittoError(f"TensorRT refused shape {tuple(value.shape)} for input {name!r}")
            self._set_address(name, value)
            bound[name] = value
        outputs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise DittoError(f"TensorRT could not infer the shape of output {name!r} ({shape}) from the inputs")
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device="cpu" if self.on_host[name] else self.device)
            self._set_address(name, outputs[name])
        stream = torch.cuda.current_stream(self.device).cuda_stream if self.device.type == "cuda" else 0
        if not self.context.execute_async_v3(stream):
            raise DittoError("TensorRT failed to execute the engine (its log above says why)")
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        return outputs

    def _placed(self, name: str, value: torch.Tensor) -> torch.Tensor:
        if value.dtype != self.dtypes[name]:
            raise DittoError(f"input {name!r} is {value.dtype}; the engine takes {self.dtypes[name]}")
        return value.to("cpu" if self.on_host[name] else self.device).contiguous()

    def _check_profile(self, name: str, shape: tuple) -> None:
        low, _, high = (tuple(s) for s in self.engine.get_tensor_profile_shape(name, 0))
        if len(shape) != len(low) or any(not lo <= d <= hi for d, lo, hi in zip(shape, low, high)):
            raise DittoError(f"input {name!r} has shape {shape}, outside the engine's profile {low}..{high}; "
                             "rebuild the engine with limits that fit the request")

    def _set_address(self, name: str, value: torch.Tensor) -> None:
        if not self.context.set_tensor_address(name, value.data_ptr()):
            raise DittoError(f"TensorRT refused the address of {name!r}")


def _torch_dtype(trt_dtype, name: str) -> torch.dtype:
    key = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if key not in TORCH_DTYPES:
        raise DittoError(f"engine tensor {name!r} has data type {key}, which the runner does not handle")
    return TORCH_DTYPES[key]


class EngineRunner:
    """An engine directory, ready to run stepwise requests."""

    def __init__(self, engine_dir: str | os.PathLike, trt=None, device: str | torch.device = "cuda"):
        self.engine_dir = Path(engine_dir)
        self.config = EngineConfig.read(self.engine_dir)
        self.trt = trt if trt is not None else importlib.import_module(self.config.trt_provider)
        if self.config.uses_plugin:
            load_trtllm_plugins(self.trt)
        self.device = torch.device(device)
        self.session = EngineSession(self.trt, (self.engine_dir / ENGINE_FILE).read_bytes(), self.device)

    def run(self, request: StepwiseRequest) -> list[StepDump]:
        config = self.config
        config.check_fits(request)
        probes = [p for p in request.probes if p != "logits"]
        absent = [p for p in probes if p not in self.session.outputs]
        if absent:
            have = [n for n in self.session.outputs if n not in OUTPUTS_NOT_PROBES]
            raise DittoError(f"engine {self.engine_dir} has no output for probe(s) {absent} (it has {have or 'none'}); "
                             f"rebuild it with `ditto build ... --probe {absent[0]}`")
        native = POOL_INPUT in self.session.inputs
        cache = PagedKVCache.for_engine(config.num_layers, config.num_kv_heads, config.head_size, config.tokens_per_block,
                                        max_seq_len_for(request), len(request.prompts), config.dtype, self.device,
                                        windows=config.windows)

        def step(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            feed = dict(inputs)
            if native:
                feed[POOL_INPUT] = cache.pool
            outputs = self.session.execute(feed)
            if native:
                cache.pool.copy_(outputs.pop(POOL_OUTPUT))
            result = {"logits": outputs["logits"].float()}
            result.update({p: outputs[p].reshape(-1, outputs[p].shape[-1]) for p in probes})
            return result

        try:
            return run_steps(request, cache, step)
        finally:
            cache.close()


# ---- availability, checked explicitly (never by catching an import's exception) ----------------


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda_missing() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False); engines run on a GPU"
    return None


def _rtx_refuses_gpu() -> str | None:
    capability = torch.cuda.get_device_capability()
    if capability in RTX_REFUSED_CAPABILITIES:
        return (f"TensorRT-RTX refuses to run engines on this GPU ({torch.cuda.get_device_name()}, "
                f"{RTX_REFUSED_CAPABILITIES[capability]}); install TensorRT (docker/) to run ditto's engines here")
    return None


def ditto_engine_unavailable(environ=os.environ) -> str | None:
    """Why engines from `ditto build` cannot run here, or None."""
    chosen = environ.get("DITTO_TRT_PROVIDER")
    providers = [chosen] if chosen in PROVIDERS else list(PROVIDERS)
    installed = [p for p in providers if _installed(p)]
    if not installed:
        return f"no TensorRT runtime module: {' or '.join(providers)} is not installed"
    missing = _cuda_missing()
    if missing:
        return missing
    if installed == ["tensorrt_rtx"]:
        return _rtx_refuses_gpu()
    return None


def trtllm_engine_unavailable() -> str | None:
    """Why `trtllm-build` engines cannot run here, or None."""
    absent = [m for m in ("tensorrt", "tensorrt_llm") if not _installed(m)]
    if absent:
        return f"{' and '.join(absent)} not installed (trtllm-build engines need TensorRT with TensorRT-LLM's plugins)"
    return _cuda_missing()


class _EngineBackend:
    """Shared by `ditto` and `trtllm`: run the engine directory the request names."""

    trt = None  # the TensorRT module; None: the one that built the engine (tests put a double here)
    device = "cuda"

    def run(self, request: StepwiseRequest) -> list[StepDump]:
        if request.engine_dir is None:
            raise DittoError(f"the {self.name} backend runs a built engine: set the request's engine_dir "
                             "(the harness builds and passes it)")
        return EngineRunner(request.engine_dir, self.trt, self.device).run(request)


@register_backend("ditto")
class DittoEngineBackend(_EngineBackend):
    def unavailable_reason(self) -> str | None:
        return ditto_engine_unavailable()


@register_backend("trtllm")
class TrtllmEngineBackend(_EngineBackend):
    def unavailable_reason(self) -> str | None:
        return trtllm_engine_unavailable()
