"""Adding a pass, a converter or a backend is one new file and no other edit.

The test copies the `ditto` package, writes one new module into each of ditto/passes/,
ditto/trt/converters/ and ditto/runtime/ (nothing else changes), and imports the copy in a fresh
interpreter: the pass is in the pipeline where its constraints put it and rewrites a graph, the
converter is the one for its target, the backend is listed and runs.
"""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ditto
from ditto.registry import import_all

ROOT = Path(__file__).resolve().parents[1]

NEW_FILES = {
    "passes/fold_double_negation.py": '''
        """Fold a double negation.

        before: y = neg(neg(x))
        after:  y = x
        """

        import torch

        from ditto.graph.nodes import is_call
        from ditto.passes.manager import PassContext, register_pass

        NEG = torch.ops.aten.neg.default


        # after simplify_shuffles, before eliminate_dead_code (which removes the inner neg)
        @register_pass("fold_double_negation", after=("simplify_shuffles",), before=("eliminate_dead_code",))
        def fold_double_negation(ctx: PassContext) -> int:
            count = 0
            for node in list(ctx.graph.nodes):
                if is_call(node, NEG) and is_call(node.args[0], NEG):
                    node.replace_all_uses_with(node.args[0].args[0])
                    ctx.graph.erase_node(node)
                    count += 1
            return count
    ''',
    "trt/converters/exp2.py": '''
        """exp2(x) = exp(x ln 2) as two TensorRT layers."""

        import math

        import torch

        from ditto.trt.converters import converter
        from ditto.trt.converters.elementwise import binary, in_result_dtype, unary


        @converter(torch.ops.aten.exp2.default)
        def exp2(ctx, x):
            return unary(ctx, binary(ctx, in_result_dtype(ctx, x), math.log(2.0), "PROD"), "EXP")
    ''',
    "runtime/echo.py": '''
        """The `echo` backend: logits that put all weight on the token fed (a stand-in runtime)."""

        import torch

        from ditto.runtime.backend import StepDump, StepwiseRequest, register_backend


        @register_backend("echo")
        class EchoBackend:
            def unavailable_reason(self) -> str | None:
                return None

            def run(self, request: StepwiseRequest) -> list[StepDump]:
                last = [p[-1] for p in request.prompts]
                return [{"logits": torch.nn.functional.one_hot(torch.tensor(last), 64).float()}]
    ''',
}

CHECK = """
import torch
import ditto
from ditto.passes import PIPELINE
from ditto.runtime.backend import available_backends, get_backend, StepwiseRequest
from ditto.trt.converters import CONVERTERS
from tests.passes._helpers import EXACT, check_pass, module_context

assert ditto.__file__.startswith({copy!r}), ditto.__file__
i = PIPELINE.index("fold_double_negation")
assert PIPELINE[i - 1 : i + 2] == ["simplify_shuffles", "fold_double_negation", "eliminate_dead_code"], PIPELINE

class DoubleNegation(torch.nn.Module):
    def forward(self, x):
        return -(-x) * 2

ctx, feeds = module_context(DoubleNegation(), torch.randn(3, 4))
check_pass(ctx, feeds, "fold_double_negation", 1, EXACT)

assert CONVERTERS[torch.ops.aten.exp2.default].__module__ == "ditto.trt.converters.exp2"
assert available_backends()["echo"] is None
dumps = get_backend("echo").run(StepwiseRequest(model="tiny-llama", prompts=[[1, 5]]))
assert dumps[0]["logits"].argmax(-1).tolist() == [5]
print("ok")
"""


def test_a_pass_a_converter_and_a_backend_are_each_one_new_file(tmp_path):
    copy = tmp_path / "ditto"
    shutil.copytree(Path(ditto.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path, text in NEW_FILES.items():
        assert not (copy / path).exists()
        (copy / path).write_text(textwrap.dedent(text).lstrip())
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", CHECK.format(copy=str(copy))], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_without_the_new_files_none_of_them_exists():
    """The control: the three names are new (the copy test is not passing on something built in)."""
    from ditto.passes import PIPELINE
    from ditto.runtime.backend import available_backends
    from ditto.trt.converters import CONVERTERS

    assert "fold_double_negation" not in PIPELINE
    assert torch.ops.aten.exp2.default not in CONVERTERS
    assert "echo" not in available_backends()


def test_import_all_imports_every_module_of_the_folder_in_name_order():
    assert import_all("ditto.passes")[:3] == ["ditto.passes.check_supported", "ditto.passes.complex_to_real", "ditto.passes.eager_attention_to_sdpa"]
    with pytest.raises(ModuleNotFoundError, match="ditto.no_such_folder"):
        import_all("ditto.no_such_folder")
