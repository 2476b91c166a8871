"""Every registered pass has its test module here, and each module's check can fail.

Each `test_<pass>.py` defines `case()`: the arguments of `check_pass` for one small graph. Here,
for every one of them: the pass skipped must fail the match count, and the pass followed by a
planted numeric bug (its first output scaled by 1 + 1e-3) must fail the numbers check, so no
test passes by comparing a graph with itself or counting nothing.
"""

import importlib
import pkgutil

import pytest
import torch

import tests.passes
from ditto.passes import manager
from tests.passes._helpers import check_pass

CASES = sorted(m.name[len("test_"):] for m in pkgutil.iter_modules(tests.passes.__path__) if m.name.startswith("test_"))
CASES = [name for name in CASES if name in manager.PASSES]


def _case(pass_name: str) -> dict:
    return importlib.import_module(f"tests.passes.test_{pass_name}").case()


def test_every_registered_pass_has_a_test_module_named_after_it():
    assert sorted(CASES) == sorted(manager.PASSES)


@pytest.mark.parametrize("pass_name", CASES)
def test_a_skipped_pass_fails_its_match_count(pass_name, monkeypatch):
    case = _case(pass_name)
    monkeypatch.setitem(manager.PASSES, pass_name, lambda ctx: 0)
    with pytest.raises(AssertionError, match=f"{pass_name} matched 0 places, expected {case['matches']}"):
        check_pass(**case)


@pytest.mark.parametrize("pass_name", CASES)
def test_a_pass_that_changes_the_numbers_fails_them(pass_name, monkeypatch):
    case = _case(pass_name)
    original, planted = manager.PASSES[pass_name], []

    def off_by_a_little(ctx):
        if planted:  # one round: the pass must not meet the scaled output it never made
            return 0
        matches = original(ctx)
        if matches:
            _scale_first_output(ctx.graph, 1 + 1e-3)
            planted.append(True)
        return matches

    monkeypatch.setitem(manager.PASSES, pass_name, off_by_a_little)
    with pytest.raises(AssertionError, match="Tensor-likes are not (close|equal)"):
        check_pass(**case)


def _scale_first_output(graph: torch.fx.Graph, factor: float) -> None:
    output = graph.output_node()
    values = output.args[0]
    first = values[0] if isinstance(values, (tuple, list)) else values
    with graph.inserting_before(output):
        scaled = graph.call_function(torch.ops.aten.mul.Tensor, (first, factor))
    scaled.meta["val"] = first.meta.get("val")
    output.args = ((scaled, *values[1:]),) if isinstance(values, (tuple, list)) else (scaled,)
