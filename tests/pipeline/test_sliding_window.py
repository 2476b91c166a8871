"""A sliding window shorter than the sequences, end to end: the window is recognised from the
exported mask (ditto/passes/replace_attention.py), kept by the reference op (fx) and by the native
TensorRT lowering (replay), and both match Hugging Face on prompts and generations longer
than the window. No built-in tiny model has such a window.

Tolerance: float32 on both sides, the fixed float32 bound of tests/parity.py (it says why).
"""

import pytest

from ditto.pipeline import load_program
from ditto.runtime.backend import get_backend
from tests.needs_tensorrt import REPLAY
from tests.parity import FLOAT32_BOUND, forced_request, worst_errors
from tests.tiny_models import COMMON, save_tiny

WINDOW = 4  # the parity prompts are 5, 2 and 9 tokens, then 4 more steps


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    path = tmp_path_factory.mktemp("mistral-window")
    return save_tiny(path, "mistral", weight_std=None, **COMMON, num_key_value_heads=2, sliding_window=WINDOW)


def test_window_is_recognised(windowed):
    assert {p.sliding_window for p in load_program(windowed).attention} == {WINDOW}


@pytest.mark.parametrize("backend", ["fx", REPLAY])
def test_windowed_attention_matches_hf(windowed, backend):
    request = forced_request(windowed, steps=4, probes=[])
    errors = worst_errors(get_backend("hf").run(request), get_backend(backend).run(request))
    assert errors["logits"] <= FLOAT32_BOUND, errors
