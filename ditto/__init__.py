"""Ditto: Hugging Face decoder-only LMs to TensorRT-LLM engines, with layer-by-layer proof."""

from ditto.errors import DittoError

__all__ = ["DittoError"]
__version__ = "0.1.0"
