"""The pass manager: the pipeline order from the passes' declared constraints (checked at import),
pass lists checked before a run, and errors that name the pass and the passes run before it."""

import pytest
import torch

from ditto.errors import DittoError
from ditto.passes import PIPELINE, manager
from ditto.passes.manager import Constraints, check_pass_list, pipeline, register_pass, required, run_passes
from ditto.registry import add_unique

# the built-in passes in the order the pipeline ran them before the order became data; a pass
# added later may go anywhere, but must not reorder these
BUILT_IN = [
    "functionalize_inplace",
    "complex_to_real",
    "remove_export_artifacts",
    "eager_attention_to_sdpa",
    "engine_inputs",
    "replace_attention",
    "replace_moe",
    "gather_last_token",
    "fuse_parallel_linears",
    "simplify_shuffles",
    "eliminate_dead_code",
]


@pytest.fixture
def registry(monkeypatch):
    """Empty pass tables for the test (the real ones come back after it)."""
    monkeypatch.setattr(manager, "PASSES", {})
    monkeypatch.setattr(manager, "ORDER", {})
    return manager


def _register(name, **constraints):
    register_pass(name, **constraints)(lambda ctx: 0)


def test_the_pipeline_keeps_the_built_in_order_and_holds_every_registered_pass():
    assert [name for name in PIPELINE if name in BUILT_IN] == BUILT_IN
    assert sorted(PIPELINE) == sorted(manager.PASSES) == sorted(pipeline())


def test_required_passes_run_first_in_pipeline_order():
    assert required("replace_attention") == ["engine_inputs", "replace_attention"]
    assert required("simplify_shuffles") == ["simplify_shuffles"]


def test_two_passes_without_a_declared_order_are_refused(registry):
    _register("a")
    _register("b", after=("a",))
    _register("c", after=("a",))
    with pytest.raises(DittoError, match="passes b and c have no declared order between them; add after= or before="):
        pipeline()


def test_before_and_after_order_a_new_pass_between_two(registry):
    _register("a")
    _register("c", after=("a",))
    _register("b", after=("a",), before=("c",))
    assert pipeline() == ["a", "b", "c"]


def test_a_constraint_naming_an_unknown_pass_is_refused(registry):
    _register("a", after=("functionalize",))
    with pytest.raises(DittoError, match="the constraints of pass a names pass 'functionalize', which is not registered"):
        pipeline()


def test_a_cycle_is_refused(registry):
    _register("a", after=("b",))
    _register("b", after=("a",))
    with pytest.raises(DittoError, match="cycle among a, b"):
        pipeline()


def test_a_pass_registered_twice_by_two_functions_is_refused(registry):
    _register("a")
    with pytest.raises(DittoError, match="pass 'a' is registered twice"):
        register_pass("a")(lambda ctx: 1)


def test_re_registering_the_same_function_replaces_it():
    table = {}

    def fn():
        pass

    add_unique(table, "x", fn, "x")
    add_unique(table, "x", fn, "x")
    assert table == {"x": fn}


def test_a_pass_list_with_an_unknown_pass_or_a_missing_requirement_is_refused():
    with pytest.raises(DittoError, match="the pass list names pass 'replace_attn', which is not registered"):
        check_pass_list(["engine_inputs", "replace_attn"])
    with pytest.raises(DittoError, match="pass replace_attention requires engine_inputs to run before it"):
        check_pass_list(["replace_attention"])
    with pytest.raises(DittoError, match="pass fuse_parallel_linears must run before simplify_shuffles"):
        check_pass_list(["simplify_shuffles", "fuse_parallel_linears"])


class _Ctx:
    def __init__(self):
        self.gm = torch.fx.symbolic_trace(torch.nn.Identity())
        self.graph = self.gm.graph


def test_an_unexpected_error_names_the_pass_and_the_passes_before_it(registry):
    _register("first")
    _register("second", after=("first",))
    register_pass("broken", after=("second",))(lambda ctx: [][0])
    with pytest.raises(DittoError) as info:
        run_passes(_Ctx())
    message = str(info.value)
    assert message.startswith("pass broken failed on this model with IndexError: list index out of range "
                              "(round 1, after first, second)")
    assert isinstance(info.value.__cause__, IndexError)


class _PassError(DittoError):
    pass


def test_a_ditto_error_keeps_its_type_and_message_and_gains_the_pass_name(registry):
    _register("first")

    @register_pass("refusing", after=("first",))
    def refusing(ctx):
        raise _PassError("the model has no input_ids input")

    with pytest.raises(_PassError) as info:
        run_passes(_Ctx())
    assert str(info.value) == "pass refusing (round 1, after first): the model has no input_ids input"


def test_a_ditto_error_that_names_its_pass_is_left_as_it_is(registry):
    @register_pass("named")
    def named(ctx):
        raise DittoError("pass named cannot handle this graph")

    with pytest.raises(DittoError) as info:
        run_passes(_Ctx())
    assert str(info.value) == "pass named cannot handle this graph"


def test_an_error_in_a_later_round_says_which_round(registry):
    calls = []

    @register_pass("flaky")
    def flaky(ctx):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("second time")
        return 1

    with pytest.raises(DittoError, match=r"pass flaky failed on this model with ValueError: second time \(round 2, first pass\)"):
        run_passes(_Ctx())


def test_constraints_say_what_must_come_earlier():
    assert Constraints(requires=("a",), after=("b",)).earlier() == ("a", "b")
