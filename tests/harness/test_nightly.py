"""scripts/nightly: the command a scheduler runs (model list, one GPU per xdist worker, junit XML,
report folder, pytest's exit status)."""

import importlib.machinery
import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "nightly"


def _nightly():
    loader = importlib.machinery.SourceFileLoader("ditto_nightly", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("ditto_nightly", loader))
    loader.exec_module(module)
    return module


def test_model_list_skips_comments_and_blank_lines(tmp_path):
    nightly = _nightly()
    (tmp_path / "models.txt").write_text("# nightly models\n/data/Llama-3.1-8B  # the big one\n\ntiny-llama\n")
    assert nightly.read_models(tmp_path / "models.txt") == ["/data/Llama-3.1-8B", "tiny-llama"]
    (tmp_path / "empty.txt").write_text("# nothing yet\n")
    with pytest.raises(SystemExit, match="names no model"):
        nightly.read_models(tmp_path / "empty.txt")


def test_one_worker_per_gpu_on_cuda_and_one_process_on_a_cpu_node(tmp_path):
    nightly = _nightly()
    args = nightly.parse_args(["models.txt", "out", "--", "--ditto-oracle-device=cpu"])
    cmd, env = nightly.pytest_command(["m1", "m2"], tmp_path, 8, args)
    assert cmd[cmd.index("-n") + 1] == "8" and cmd[cmd.index("--dist") + 1] == "loadgroup"
    assert {"--ditto-model=m1", "--ditto-model=m2", "--ditto-device=cuda", "--ditto-dtype=bfloat16",
            f"--junitxml={tmp_path / 'junit.xml'}", f"--ditto-report-dir={tmp_path / 'report'}"} <= set(cmd)
    assert cmd[-1] == "--ditto-oracle-device=cpu" and env == {"DITTO_TEST_DEVICE": "cuda"}
    cmd, env = nightly.pytest_command(["m1"], tmp_path, 0, nightly.parse_args(["models.txt", "out"]))
    assert "-n" not in cmd and "--ditto-device=cpu" in cmd and env == {"DITTO_TEST_DEVICE": "cpu"}


def _run(tmp_path, models: str, *extra):
    (tmp_path / "models.txt").write_text(models)
    return subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "models.txt"), str(tmp_path / "out"), *extra],
                          capture_output=True, text=True, timeout=900)


def test_a_green_run_exits_0_with_junit_and_reports(tmp_path):
    result = _run(tmp_path, "tiny-llama\n", "--dtype=float32", "--steps=1", "--backends=hf,fx", "--no-goldens")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "out" / "junit.xml").iter("testcase")}
    assert list(cases) == ["test_backends_agree[tiny-llama-fx-vs-hf]"]
    assert not [e.tag for e in cases["test_backends_agree[tiny-llama-fx-vs-hf]"] if e.tag != "properties"]
    assert (tmp_path / "out" / "report" / "tiny-llama" / "fx-vs-hf.json").is_file()
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the node's own device, as the command picks it
    assert (tmp_path / "out" / "command.txt").read_text().startswith(f"DITTO_TEST_DEVICE={device} ")
    assert "nightly: exit 0 (every verdict passed)" in result.stdout


def test_a_bad_model_is_a_usage_error(tmp_path):
    result = _run(tmp_path, "./no-such-model\n", "--no-goldens")
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr[-3000:]
    assert "nightly: exit 4 (usage error (model list or options))" in result.stdout
