"""Pick the TensorRT Python module: `tensorrt` when importable, else `tensorrt_rtx`.

Override with `provider=` or DITTO_TRT_PROVIDER (tensorrt | tensorrt_rtx). Converters get the
module as a value and never import it themselves.
"""

from __future__ import annotations

import importlib
import os

from ditto.errors import DittoError

PROVIDERS = ("tensorrt", "tensorrt_rtx")


def trt_module(provider: str | None = None):
    choice = provider or os.environ.get("DITTO_TRT_PROVIDER")
    if choice and choice not in PROVIDERS:
        raise DittoError(f"unknown TensorRT provider {choice!r}; use one of {', '.join(PROVIDERS)}")
    for name in [choice] if choice else PROVIDERS:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise DittoError(
        f"no TensorRT Python module ({choice or ' or '.join(PROVIDERS)}) is importable; on a CPU machine "
        "`pip install tensorrt-rtx-cu12`, on a GPU node use the image in docker/"
    )
