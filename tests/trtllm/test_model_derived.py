"""Values ditto takes from a model, checked against the model they came from.

For every built-in tiny model and every half-precision engine dtype: a real `ditto build`
(TensorRT-RTX, native attention), then every model-derived field of its config.json and of the
attention parameters (`program.attention`) is asserted against the Hugging Face config by
tests/build_checks.py (the expectation computed from the HF config, never through ditto's
helpers; the RoPE table against HF's own rotary embedding). The float32 build is the one of
tests/trt/test_build.py (`test_config_and_attention_carry_the_hf_config` there runs the same checks).

Planted bugs these kill: a rotary base falling back to 10000 instead of the model's 500000; a
dropped llama3 scaling (type, factor, original max positions); a sliding window lost or off by
one; heads / KV heads / head size / rotary dim read from the wrong field; half-precision
engines with float16 logits; the KV-cache pool or config dtype not the build dtype; a RoPE
table shifted, of the wrong base or with its sin negated.
"""

from __future__ import annotations

import json

import pytest
import torch

from ditto.models.tiny import TINY_MODELS
from ditto.pipeline import load_program
from tests.build_checks import LIMITS, build_keeping_program, check_attention, check_build


@pytest.mark.needs_tensorrt
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_half_precision_build_carries_the_hf_config(name, dtype, tmp_path):
    program, path, report = build_keeping_program(name, tmp_path, dtype, **LIMITS)
    config = json.loads((path / "config.json").read_text())
    assert program.dtype == dtype
    check_build(name, program, config, report, dtype, LIMITS)


def test_checks_fail_on_a_rotary_base_fallback():
    """The checks above are sharp: the fallback base 10000 instead of tiny-llama's 500000 is caught."""
    program = load_program("tiny-llama", tokens_per_block=4)
    check_attention("tiny-llama", program, 4)
    import dataclasses

    program.attention[0] = dataclasses.replace(program.attention[0], rotary_embedding_base=10000.0)
    with pytest.raises(AssertionError, match="rotary_embedding_base"):
        check_attention("tiny-llama", program, 4)
