"""Pick the TensorRT Python module: `tensorrt` when importable, else `tensorrt_rtx`.

Override with `provider=` or DITTO_TRT_PROVIDER (tensorrt | tensorrt_rtx). Converters get the
module as a value and never import it themselves.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from ditto.errors import DittoError

PROVIDERS = ("tensorrt", "tensorrt_rtx")


def _choices(provider: str | None) -> list[str]:
    choice = provider or os.environ.get("DITTO_TRT_PROVIDER")
    if choice and choice not in PROVIDERS:
        raise DittoError(f"unknown TensorRT provider {choice!r}; use one of {', '.join(PROVIDERS)}")
    return [choice] if choice else list(PROVIDERS)


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def missing_provider(provider: str | None = None) -> str | None:
    """Why no TensorRT module can be used here (none of the chosen packages is installed), else None.

    Looks for the packages without importing them: a package that is installed but fails to
    import is a failure to report, not a reason to skip.
    """
    choices = _choices(provider)
    if any(_installed(name) for name in choices):
        return None
    return f"no TensorRT Python package ({' or '.join(choices)}) is installed on this machine"


def trt_module(provider: str | None = None):
    choices = _choices(provider)
    for name in choices:
        if not _installed(name):
            continue
        return importlib.import_module(name)  # installed: an import error here is a real failure
    raise DittoError(
        f"no TensorRT Python module ({' or '.join(choices)}) is importable; on a CPU machine "
        "`pip install tensorrt-rtx-cu12`, on a GPU node use the image in docker/"
    )
