"""What keeps `ditto build` near one copy of the weights, and the TensorRT module choice.

- WeightStore: checkpoint tensors are views of a file map (no copy), computed weights are
  staged to a file that leaves nothing behind, and release_pages() really drops the
  process's resident pages of those maps (read from /proc/self/smaps), while the values stay
  readable.
- build_engine streams the plan to its file.
- trt_module: tensorrt first, tensorrt_rtx next, DITTO_TRT_PROVIDER / argument override.
"""

import os
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ditto.errors import DittoError
from ditto.models.weights import CheckpointTensor, Concat, InMemoryTensor, WeightSpec, WeightTable
from ditto.trt import provider
from ditto.trt.weights import WeightStore


@pytest.fixture
def table(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tensors = {"a": torch.randn(256, 1024, generator=gen).half(), "b": torch.randn(64, 1024, generator=gen).half()}
    save_file(tensors, tmp_path / "model.safetensors")
    table = WeightTable()
    for key, value in tensors.items():
        table.add(key, WeightSpec(tuple(value.shape), torch.float16, CheckpointTensor(tmp_path / "model.safetensors", key)))
    parts = (CheckpointTensor(tmp_path / "model.safetensors", "a"), CheckpointTensor(tmp_path / "model.safetensors", "b"))
    table.add("fused", WeightSpec((320, 1024), torch.float16, Concat(parts)))
    table.add("table", WeightSpec((4, 2), torch.float32, InMemoryTensor(torch.arange(8.0).reshape(4, 2))))
    return table, tensors


def _resident_kib(address: int) -> int:
    """Rss of the mapping of this process that contains `address`."""
    lines = Path("/proc/self/smaps").read_text().splitlines()
    for i, line in enumerate(lines):
        head = line.split()[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            start, end = (int(x, 16) for x in head.split("-"))
            if start <= address < end:
                rss = next(line for line in lines[i + 1 :] if line.startswith("Rss:"))
                return int(rss.split()[1])
    raise AssertionError(f"no mapping holds {address:#x}")


def test_checkpoint_weights_are_views_of_the_file(table, tmp_path):
    table, tensors = table
    store = WeightStore(table, tmp_path / "staging")
    a = store.tensor("a", torch.float16)
    assert torch.equal(a, tensors["a"])
    assert store.mapped_bytes == a.nbytes and store.staged_bytes == 0
    # another dtype is computed, not mapped
    assert torch.equal(store.tensor("a", torch.float32), tensors["a"].float())
    assert store.staged_bytes == a.numel() * 4


def test_computed_weights_are_staged_to_a_file_that_leaves_nothing(table, tmp_path):
    table, tensors = table
    store = WeightStore(table, tmp_path / "staging")
    store.stage({"fused": torch.float16, "table": torch.float32, "a": torch.float16})
    assert os.listdir(tmp_path / "staging") == []  # unlinked once mapped
    fused = store.tensor("fused", torch.float16)
    assert torch.equal(fused, torch.cat([tensors["a"], tensors["b"]]))
    assert torch.equal(store.tensor("table", torch.float32), torch.arange(8.0).reshape(4, 2))
    assert fused.data_ptr() % 256 == 0
    assert store.staged_bytes == fused.nbytes + 32 and store.mapped_bytes == 0


def test_without_a_staging_folder_computed_weights_stay_in_memory(table):
    table, tensors = table
    store = WeightStore(table)
    assert torch.equal(store.tensor("fused", torch.float16), torch.cat([tensors["a"], tensors["b"]]))


def test_release_pages_drops_resident_pages_and_keeps_values(table, tmp_path):
    table, tensors = table
    store = WeightStore(table, tmp_path / "staging")
    a, fused = store.tensor("a", torch.float16), store.tensor("fused", torch.float16)
    assert float(a.float().sum()) == pytest.approx(float(tensors["a"].float().sum()), rel=1e-6)
    fused.float().sum()
    assert _resident_kib(a.data_ptr()) >= a.nbytes // 1024 - 4 and _resident_kib(fused.data_ptr()) >= fused.nbytes // 1024 - 4
    store.release_pages()
    assert _resident_kib(a.data_ptr()) == 0 and _resident_kib(fused.data_ptr()) == 0
    assert torch.equal(a, tensors["a"]) and torch.equal(fused[256:], tensors["b"])  # read back from the file


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_build_engine_streams_the_plan_to_its_file(tmp_path):
    from ditto.pipeline import load_program
    from ditto.trt.engine import build_engine
    from ditto.trt.network import NetworkLimits, build_network

    trt = provider.trt_module("tensorrt_rtx")
    built = build_network(load_program("tiny-llama"), trt, NetworkLimits(), staging_dir=tmp_path)
    size = build_engine(built, trt, tmp_path / "plan")
    assert size == (tmp_path / "plan").stat().st_size > 100_000
    assert sorted(os.listdir(tmp_path)) == ["plan"]


# ---- provider --------------------------------------------------------------------------------------
def _pretend_importable(monkeypatch):
    """Importing a provider gives a stand-in named after it: the choice logic, checked on any machine."""
    monkeypatch.setattr(provider.importlib, "import_module", lambda name, *args: types.SimpleNamespace(__name__=name))


def test_provider_prefers_tensorrt_then_tensorrt_rtx(monkeypatch):
    monkeypatch.delenv("DITTO_TRT_PROVIDER", raising=False)
    _pretend_importable(monkeypatch)
    asked = []
    monkeypatch.setattr(provider, "_installed", lambda name: asked.append(name) or name == "tensorrt_rtx")
    assert provider.trt_module().__name__ == "tensorrt_rtx"
    assert asked == ["tensorrt", "tensorrt_rtx"]
    assert provider.missing_provider() is None
    monkeypatch.setattr(provider, "_installed", lambda name: True)
    assert provider.trt_module().__name__ == "tensorrt"


def test_installed_provider_that_fails_to_import_is_an_error_not_a_fallback(monkeypatch):
    """A broken install (or a slip in ditto's import code) must surface, never turn into "not installed"."""
    monkeypatch.delenv("DITTO_TRT_PROVIDER", raising=False)
    monkeypatch.setattr(provider, "_installed", lambda name: True)

    def broken(name, *args):
        raise ImportError(f"libnvinfer.so.10: cannot open shared object file ({name})")

    monkeypatch.setattr(provider.importlib, "import_module", broken)
    with pytest.raises(ImportError, match="libnvinfer"):
        provider.trt_module()
    assert provider.missing_provider() is None  # installed: the backend must run, and fail, not skip


def test_provider_override_by_argument_and_environment(monkeypatch):
    _pretend_importable(monkeypatch)
    monkeypatch.setattr(provider, "_installed", lambda name: True)
    monkeypatch.setenv("DITTO_TRT_PROVIDER", "tensorrt_rtx")
    assert provider.trt_module().__name__ == "tensorrt_rtx"
    monkeypatch.setenv("DITTO_TRT_PROVIDER", "onnxruntime")
    with pytest.raises(DittoError, match="unknown TensorRT provider 'onnxruntime'; use one of tensorrt, tensorrt_rtx"):
        provider.trt_module()
    assert provider.trt_module("tensorrt_rtx").__name__ == "tensorrt_rtx"  # the argument wins


def test_provider_missing_says_what_to_install(monkeypatch):
    monkeypatch.delenv("DITTO_TRT_PROVIDER", raising=False)
    monkeypatch.setattr(provider, "_installed", lambda name: False)
    with pytest.raises(DittoError, match="no TensorRT Python module .* is importable; on a CPU machine `pip install tensorrt-rtx-cu12`"):
        provider.trt_module()
    assert provider.missing_provider() == "no TensorRT Python package (tensorrt or tensorrt_rtx) is installed on this machine"
    monkeypatch.setenv("DITTO_TRT_PROVIDER", "tensorrt")
    assert provider.missing_provider() == "no TensorRT Python package (tensorrt) is installed on this machine"
