"""The contract every stepwise backend follows, and the registry of backends.

A backend runs one model on a batch of prompts: one context step (all prompt tokens,
packed without padding) and then `steps` generation steps (one token per sequence). At
every step it is fed the same token ids as every other backend (token forcing), so one
early difference cannot cascade. It returns one flat `{name: tensor}` dump per step:

- the step's inputs (`input_ids` int32 [num_tokens], `position_ids` int32 [num_tokens],
  `context_lengths` / `sequence_length` int32 [batch], ...),
- `logits` float32 [batch, vocab] (the last token of each sequence),
- every probe asked for, named by meaning (`layers.3.attn`, `layers.3.mlp`, `layers.3.out`,
  `final_norm`, ...), packed like the inputs: [num_tokens, features], sequences in batch
  order.

Adding a backend is one module in ditto/runtime/ with `@register_backend("name")` on a class
with this interface (every module there is imported on the first backend lookup).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from ditto.errors import DittoError
from ditto.registry import add_unique, import_all

StepDump = dict[str, torch.Tensor]


@dataclass
class StepwiseRequest:
    """What to run: the same request goes to every backend being compared."""

    model: str  # a local HF directory, a hub id in the local cache, or a built-in tiny name
    prompts: list[list[int]]  # token ids per sequence, ragged lengths allowed
    steps: int = 8  # generation steps after the context step
    dtype: torch.dtype = torch.float32
    # forced_tokens[s][b]: the token fed to sequence b at generation step s (s = 0 .. steps-1).
    # None: each backend feeds its own greedy choice.
    forced_tokens: list[list[int]] | None = None
    probes: list[str] = field(default_factory=list)
    device: str = "cpu"
    # the engine directory, for backends that run a built engine (ditto, trtllm)
    engine_dir: str | None = None


def env_choice(variable: str, choices: tuple[str, ...], what: str) -> str:
    """The value of `variable` (default: the first choice), refused with the choices when it is not one."""
    value = os.environ.get(variable, choices[0])
    if value not in choices:
        raise DittoError(f"{variable}={value!r} is not {what}; use one of {', '.join(choices)}")
    return value


class StepwiseBackend(Protocol):
    name: str

    def unavailable_reason(self) -> str | None:
        """None when this machine can run the backend, else why not (used as a skip reason).

        A reason is a named fact about the machine, checked explicitly without loading the
        backend (a package not installed: `importlib.util.find_spec`; no CUDA device; a GPU the
        engine cannot run on). It never catches exceptions: a backend that is installed but fails
        to load must fail the run with its error, not be skipped.
        """

    def run(self, request: StepwiseRequest) -> list[StepDump]:
        """Run the request; one dump per step (context step first)."""


BACKENDS: dict[str, Callable[[], StepwiseBackend]] = {}


def register_backend(name: str):
    """Class decorator: make a backend available under `name`."""

    def wrap(cls):
        add_unique(BACKENDS, name, cls, f"backend {name!r}")
        cls.name = name
        return cls

    return wrap


def get_backend(name: str) -> StepwiseBackend:
    _load_builtin_backends()
    if name not in BACKENDS:
        raise DittoError(f"unknown backend {name!r}; known backends: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name]()


def available_backends() -> dict[str, str | None]:
    """Every registered backend with None (runs here) or the reason it cannot run here."""
    _load_builtin_backends()
    return {name: cls().unavailable_reason() for name, cls in sorted(BACKENDS.items())}


# The packages whose modules register the backends: every module of ditto/runtime/ (and the
# replay package, whose `backend.py` runs ditto's network in torch) is imported on the first
# lookup, not at import: the backend modules import this one. Each imports its optional packages
# (TensorRT, TensorRT-LLM, CUDA) lazily and reports them through `unavailable_reason`, so
# importing every one of them always succeeds; an import error here is a bug and is raised.
BACKEND_PACKAGES = ("ditto.runtime", "ditto.replay")


def _load_builtin_backends() -> None:
    for package in BACKEND_PACKAGES:
        import_all(package)
