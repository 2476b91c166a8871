"""Ditto: Hugging Face decoder-only LMs to TensorRT-LLM engines, with layer-by-layer proof.

From Python: `ditto.build` (engine directory), `ditto.export` (the TensorRT-LLM-form FX
graph), `ditto.run` (stepwise dumps from a backend), `ditto.compare` (two runs, tensor by
tensor); see ditto.api. Importing ditto imports none of torch, transformers or TensorRT.
"""

from ditto.api import build, compare, export, run
from ditto.errors import DittoError

__all__ = ["DittoError", "build", "compare", "export", "run"]
__version__ = "0.1.0"
