"""The Python API (ditto.api): `ditto.build`, `ditto.export`, `ditto.run`, `ditto.compare`."""

import subprocess
import sys

import pytest
import torch

import ditto
from ditto.dumps import save_steps
from ditto.progress import Stages


def test_import_ditto_is_cheap_and_its_four_names_are_functions():
    # a subpackage named build/export/run/compare would replace the function once imported.
    # What the interpreter loaded before `import ditto` (its startup: site, .pth files, a container's
    # sitecustomize; some load typing) is not ditto's cost: only modules ditto's import added count.
    code = ("import sys; startup = set(sys.modules); import ditto; heavy = [m for m in ('torch', 'transformers', "
            "'tensorrt', 'tensorrt_rtx', 'typing') if m in sys.modules and m not in startup]; "
            "import ditto.builder, ditto.comparator, ditto.exporter.export, ditto.runtime.backend; "
            "print(heavy, [type(getattr(ditto, n)).__name__ for n in ditto.__all__])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] ['type', 'function', 'function', 'function', 'function']"


def test_library_modules_never_import_the_cli():
    code = "import sys, ditto.builder, ditto.api, harness.options; print(sorted(m for m in sys.modules if m.startswith('ditto.cli')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_stages_tell_progress_each_start_and_time():
    lines = []
    stages = Stages(lines.append)
    with stages("network"):
        pass
    assert lines[0] == "network ..." and lines[1].startswith("network done in ") and lines[1].endswith("s")
    assert set(stages.seconds) == {"network"}


def test_export_returns_the_program_and_writes_artifacts(tmp_path):
    lines = []
    program = ditto.export("tiny-llama", artifacts_dir=tmp_path / "art", progress=lines.append)
    log = dict(program.pass_log)
    assert log["replace_attention"] == 2 and len(program.attention) == 2  # tiny-llama: 2 layers
    assert sorted(p.name for p in (tmp_path / "art").iterdir()) == ["graph.txt", "graph_module.py", "passes.txt"]
    assert lines[0] == "load, export, passes ..." and len(lines) == 2


def test_export_refuses_an_artifacts_path_that_is_a_file_before_exporting(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ditto.DittoError, match="is a file"):
        ditto.export("no-such-model", artifacts_dir=tmp_path / "f")


@pytest.fixture(scope="module")
def runs():
    """tiny-llama on fx: two sequences given as text and as token ids, 2 generation steps."""
    text = ditto.run("tiny-llama", ["Hi", [1, 2, 3]], steps=2, probes=["layers.1.out"])
    ids = ditto.run("tiny-llama", [list(b"Hi"), [1, 2, 3]], steps=2, probes=["layers.1.out"])
    return text, ids


def test_run_returns_one_dump_per_step_text_as_bytes_for_tiny_models(runs):
    text, ids = runs
    assert len(text) == 3
    assert text[0]["input_ids"].tolist() == [*b"Hi", 1, 2, 3]
    assert text[0]["logits"].shape == (2, 512) and text[0]["logits"].dtype == torch.float32
    assert text[0]["layers.1.out"].shape == (5, 64) and text[1]["layers.1.out"].shape == (2, 64)
    assert all(torch.equal(x["logits"], y["logits"]) for x, y in zip(text, ids))


def test_run_feeds_forced_tokens():
    dumps = ditto.run("tiny-llama", [[5, 6]], steps=2, forced_tokens=[[7], [9]])
    assert [d["input_ids"].tolist() for d in dumps[1:]] == [[7], [9]]


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=-1), "steps must be >= 0"),
    (dict(dtype="float64"), "not one of float32"),
    (dict(device="tpu"), "device 'tpu' is not a torch device"),
    (dict(device="meta"), "device meta: ditto runs on cpu or cuda"),
    (dict(backend="nope"), "nope"),
])
def test_run_refuses_bad_requests(kwargs, match):
    with pytest.raises(ditto.DittoError, match=match):
        ditto.run("tiny-llama", [[1, 2]], **kwargs)


def test_compare_in_memory_files_and_folders(runs, tmp_path):
    text, ids = runs
    assert ditto.compare(text, ids).passed
    assert ditto.compare(text[0], ids[0]).passed
    planted = [dict(d) for d in ids]
    planted[2]["logits"] = planted[2]["logits"] + 1.0
    result = ditto.compare(text, planted)
    assert not result.passed and [s.passed for s in result.steps] == [True, True, False]
    shorter = ditto.compare(text, ids[:2])
    assert not shorter.passed and shorter.steps_only_in_a == ["step2"] and shorter.steps_only_in_b == []
    assert ditto.compare(ids[:1], text).steps_only_in_b == ["step1", "step2"]
    save_steps(tmp_path / "a", text)
    save_steps(tmp_path / "b", planted)
    from_files = ditto.compare(tmp_path / "a", tmp_path / "b")
    assert [s.passed for s in from_files.steps] == [True, True, False]
    assert ditto.compare(str(tmp_path / "a" / "step0.pt"), str(tmp_path / "b" / "step0.pt")).passed


def test_compare_refuses_mixed_kinds(runs, tmp_path):
    with pytest.raises(ditto.DittoError, match="two paths, two step dumps or two lists"):
        ditto.compare(tmp_path, runs[0])
