"""`ditto compare`: exit 0 within tolerance, 1 otherwise, 2 with a one-line error on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ditto.cli.main import COMMANDS, main
from ditto.dumps import save_step, save_steps

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dumps(tmp_path):
    """Folders a (pt) and b (safetensors): step0 identical, step1 with logits[1, 2] off by 0.5."""
    steps = [{"input_ids": torch.tensor([3, 4], dtype=torch.int32), "logits": torch.arange(8.0).reshape(2, 4)}] * 2
    changed = dict(steps[1], logits=steps[1]["logits"].clone())
    changed["logits"][1, 2] += 0.5
    save_steps(tmp_path / "a", steps, fmt="pt")
    save_steps(tmp_path / "b", [steps[0], changed], fmt="safetensors")
    return tmp_path


def test_compare_is_a_registered_subcommand():
    assert "compare" in COMMANDS


def test_identical_steps_exit_0(dumps, capsys):
    assert main(["compare", str(dumps / "a" / "step0.pt"), str(dumps / "b" / "step0.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "logits" in out and out.strip().splitlines()[-1].startswith("PASSED")


def test_a_difference_exits_1_and_is_shown(dumps, capsys):
    assert main(["compare", str(dumps / "a"), str(dumps / "b")]) == 1
    out = capsys.readouterr().out
    assert "step1: FAIL" in out and "[1, 2]" in out and "5.000e-01" in out
    assert out.strip().splitlines()[-1].startswith("FAILED: 1 of 4 tensors failed (step1:logits)")


def test_tolerance_options(dumps):
    assert main(["compare", str(dumps / "a"), str(dumps / "b"), "--atol", "0.6"]) == 0
    # B (6.5 at [1, 2]) is the reference: 0.5 <= 0.08 * 6.5, 0.5 > 0.07 * 6.5
    assert main(["compare", str(dumps / "a"), str(dumps / "b"), "--atol", "0", "--rtol", "0.08"]) == 0
    assert main(["compare", str(dumps / "a"), str(dumps / "b"), "--atol", "0", "--rtol", "0.07"]) == 1


def test_json_output(dumps, capsys):
    assert main(["compare", str(dumps / "a"), str(dumps / "b"), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] is False
    logits = result["steps"][1]["tensors"][1]
    assert logits["name"] == "logits" and logits["worst_index"] == [1, 2]
    assert logits["max_abs"] == pytest.approx(0.5) and logits["frac_out_of_tol"] == pytest.approx(1 / 8)


def test_names_on_one_side_exit_1_until_aliased(tmp_path, capsys):
    save_step(tmp_path / "a.pt", {"logits": torch.ones(3), "mm_default": torch.ones(2)})
    save_step(tmp_path / "b.pt", {"logits": torch.ones(3), "layers.0.attn.qkv": torch.ones(2)})
    assert main(["compare", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]) == 1
    assert "only in A: mm_default" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--alias", "mm_default=layers.0.attn.qkv"]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--alias", "no_equals_sign"], "write NAME_A=NAME_B"),
        (["--alias", "x=y", "--alias", "x=z"], "given twice"),
        (["--atol", "-1"], "non-negative"),
    ],
)
def test_bad_options_exit_2(dumps, capsys, extra, message):
    assert main(["compare", str(dumps / "a"), str(dumps / "b"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_bad_files_exit_2_with_the_file_named(tmp_path, capsys):
    save_step(tmp_path / "good.pt", {"x": torch.ones(1)})
    torch.save([torch.ones(1)], tmp_path / "list.pt")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 16)
    for bad, message in [
        ("missing.pt", "does not exist"),
        ("list.pt", "is not a step dump"),
        ("garbage.safetensors", "cannot read step dump"),
    ]:
        assert main(["compare", str(tmp_path / bad), str(tmp_path / "good.pt")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ditto compare: error:") and bad in err and message in err


def test_no_traceback_from_the_command_line(tmp_path):
    save_step(tmp_path / "good.pt", {"x": torch.ones(1)})
    (tmp_path / "bad.pt").write_bytes(b"not a pickle at all")
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run(
        [sys.executable, "-m", "ditto.cli.main", "compare", str(tmp_path / "bad.pt"), str(tmp_path / "good.pt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "bad.pt" in proc.stderr and proc.stderr.count("\n") == 1  # one line
