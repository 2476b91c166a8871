"""The harness's small parts: model keys and hashes, probe order, goldens, comparisons, GPUs, TRT-LLM names."""

import json
import shutil

import pytest
import torch

from ditto.comparator.tolerances import FIXED_TOLERANCES, CalibratedRule, FixedTolerance, fixed_tolerance, noise_band
from ditto.errors import DittoError
from harness import goldens, gpu, models, trtllm
from harness.comparison import compare_runs, first_divergence
from harness.models import ModelUnderTest, content_hash, sort_probes
from harness.options import Settings
from harness.session import tolerance_rule


def test_model_keys():
    assert ModelUnderTest("tiny-llama").key == "tiny-llama"
    assert ModelUnderTest("meta-llama/Llama-2-7b-hf").key == "meta-llama--Llama-2-7b-hf"


def test_model_key_of_a_directory_is_its_name(tmp_path):
    folder = tmp_path / "My Model v2"
    folder.mkdir()
    assert ModelUnderTest(str(folder)).key == "My_Model_v2"


def test_probe_order_is_by_depth():
    names = ["logits", "layers.10.out", "final_norm", "layers.2.mlp", "layers.2.attn", "layers.2.out", "layers.0.out"]
    assert sort_probes(names) == [
        "layers.0.out", "layers.2.attn", "layers.2.mlp", "layers.2.out", "layers.10.out", "final_norm", "logits",
    ]


def test_tiny_model_probes_and_prompts():
    model = ModelUnderTest("tiny-gpt2")
    assert model.probes == [f"layers.{i}.{k}" for i in range(2) for k in ("attn", "mlp", "out")] + [
        "final_norm", "logits"]
    assert [len(p) for p in model.prompts] == list(models.PROMPT_LENGTHS)
    assert all(3 <= t < 512 for p in model.prompts for t in p)
    assert ModelUnderTest("tiny-gpt2").prompts == model.prompts  # seeded


def test_content_hash_follows_weights_and_config(tmp_path, monkeypatch):
    source = ModelUnderTest("tiny-llama").directory
    copy = tmp_path / "m"
    shutil.copytree(source, copy)
    base = content_hash(copy)
    assert base == content_hash(source)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    flipped = content_hash(copy)
    assert flipped != base
    # a built-in tiny model is its recipe: config.json laid out by another transformers is the same model
    config = json.loads((copy / "config.json").read_text())
    config["rope_theta"] = config.get("rope_parameters", {}).pop("rope_theta", 10000.0)
    (copy / "config.json").write_text(json.dumps(config))
    assert content_hash(copy) == flipped
    # any other directory is its config.json (without transformers_version) and weights
    (copy / "DITTO_TINY_MODEL").unlink()
    plain = content_hash(copy)
    config["transformers_version"] = "0.0.1"
    (copy / "config.json").write_text(json.dumps(config))
    assert content_hash(copy) == plain
    config["rms_norm_eps"] = 1e-3
    (copy / "config.json").write_text(json.dumps(config))
    changed = content_hash(copy)
    assert changed != plain
    # large checkpoints are sampled: still sensitive to the header and to sampled blocks
    monkeypatch.setattr(models, "FULL_HASH_LIMIT", 0)
    sampled = content_hash(copy)
    assert sampled != changed
    data[10] ^= 1  # inside the safetensors header's first bytes: changes the header
    weights.write_bytes(bytes(data))
    assert content_hash(copy) != sampled


def _settings(dtype="float32", atol=None, rtol=None, oracle_device="cpu"):
    return Settings(models=[], backends=None, dtype=dtype, device="cpu", steps=8, engine_cache=None, golden_dir=None,
                    update_golden=False, golden_format="auto", atol=atol, rtol=rtol, oracle_device=oracle_device,
                    oracle_dtype="float32", report_dir=None)


def test_tolerance_rule_per_dtype_and_overrides():
    assert tolerance_rule(_settings()) == FixedTolerance(1e-4, 1e-4)
    assert tolerance_rule(_settings("bfloat16")) == CalibratedRule(torch.bfloat16)
    assert tolerance_rule(_settings("float16", oracle_device="none")) == FixedTolerance(1e-2, 1e-2)
    # explicit values are taken as given (unscaled), the other side keeps its default
    assert tolerance_rule(_settings("bfloat16", atol=0.5)) == FixedTolerance(0.5, FIXED_TOLERANCES[torch.bfloat16][1],
                                                                          scaled=False)
    assert FIXED_TOLERANCES[torch.float32] < FIXED_TOLERANCES[torch.float16] < FIXED_TOLERANCES[torch.bfloat16]
    with pytest.raises(DittoError, match="non-negative"):
        fixed_tolerance(torch.float32, atol=-1.0, rtol=0.0)


def test_calibrated_rule_factor_floor_and_ceiling():
    rule = CalibratedRule(torch.bfloat16)
    eps = torch.finfo(torch.bfloat16).eps
    assert rule.allowed(0.01, 2.0) == pytest.approx(4 * 0.01 + 2 * eps * 2.0)  # factor x noise + 2 ulp of the scale
    assert rule.allowed(0.0, 2.0) == pytest.approx(2 * eps * 2.0)  # the floor
    assert rule.allowed(5.0, 2.0) == 1.0  # the ceiling: half the scale
    assert rule.allowed(float("nan"), 2.0) == rule.allowed(float("inf"), 2.0) == 1.0


def test_noise_band_is_per_step_and_name():
    oracle = [{"input_ids": torch.tensor([1, 2]), "layers.0.out": torch.tensor([1.0, -2.0])},
              {"input_ids": torch.tensor([3]), "layers.0.out": torch.tensor([4.0])}]
    hf = [{"input_ids": torch.tensor([1, 2]), "layers.0.out": torch.tensor([1.01, -2.0])},
          {"input_ids": torch.tensor([3]), "layers.0.out": torch.tensor([4.5])}]
    rule = CalibratedRule(torch.bfloat16)
    band = noise_band(hf, oracle, rule)
    assert band.noise[0]["layers.0.out"] == pytest.approx(0.01) and band.noise[1]["layers.0.out"] == pytest.approx(0.5)
    assert band.allowed[0]["layers.0.out"] == pytest.approx(rule.allowed(0.01, 2.0))
    assert "input_ids" not in band.noise[0]  # ids are exact, no band
    # a run within the band at step 1 but outside it at step 0 fails at step 0
    got = [{"input_ids": torch.tensor([1, 2]), "layers.0.out": torch.tensor([1.2, -2.0])},
           {"input_ids": torch.tensor([3]), "layers.0.out": torch.tensor([5.5])}]
    run = compare_runs(got, oracle, band, "fx", "oracle")
    assert [t.passed for s in run.steps for t in s.tensors] == [True, False, True, True]
    with pytest.raises(DittoError, match="NaN/Inf"):
        noise_band(hf, [{**oracle[0], "layers.0.out": torch.tensor([float("nan"), 1.0])}, oracle[1]], rule)


def _steps(values):
    return [{"input_ids": torch.tensor([1, 2]), "layers.0.attn": torch.tensor([[v, 1.0]]),
             "layers.1.out": torch.tensor([[v, 10.0]]), "logits": torch.tensor([[v, 2.0]])} for v in values]


def test_tolerance_scales_atol_with_the_tensor():
    ref = _steps([0.0])
    # 5e-4 off on an element of 0 passes next to a 10 (atol 1e-4 x scale 10), fails next to a 1
    run = compare_runs(_steps([5e-4]), ref, FixedTolerance(1e-4, 0.0), "a", "b")
    by_name = {t.name: t.passed for t in run.steps[0].tensors}
    assert by_name == {"input_ids": True, "layers.0.attn": False, "layers.1.out": True, "logits": False}
    div = first_divergence(run)
    assert (div.name, div.step, div.layer) == ("layers.0.attn", 0, "layer 0")


def test_first_divergence_prefers_the_earliest_step_then_the_shallowest_probe():
    ref = _steps([0.0, 0.0, 0.0])
    got = _steps([0.0, 0.0, 0.0])
    got[2]["layers.0.attn"] = got[2]["layers.0.attn"] + 1
    got[1]["logits"] = got[1]["logits"] + 1
    div = first_divergence(compare_runs(got, ref, FixedTolerance(1e-4, 1e-4), "a", "b"))
    assert (div.name, div.step) == ("logits", 1)


def test_token_ids_must_be_equal():
    got = _steps([0.0])
    got[0]["input_ids"] = torch.tensor([1, 3])
    div = first_divergence(compare_runs(got, _steps([0.0]), FixedTolerance(1.0, 1.0), "a", "b"))
    assert div.name == "input_ids"


def test_missing_probe_and_missing_step_are_divergences():
    got = _steps([0.0, 0.0])
    del got[0]["layers.1.out"]
    div = first_divergence(compare_runs(got, _steps([0.0, 0.0]), FixedTolerance(1e-4, 1e-4), "a", "b"))
    assert (div.name, div.step, div.detail) == ("layers.1.out", 0, "missing from a")
    div = first_divergence(compare_runs(_steps([0.0]), _steps([0.0, 0.0]), FixedTolerance(1e-4, 1e-4), "a", "b"))
    assert div.detail == "a has 1 steps, b has 2"


def test_stale_reasons_name_what_differs():
    expected = {"model_hash": "abc", "dtype": "float32", "prompts": [[1]], "steps": 8,
                "format": "full", "format_version": 1}
    assert goldens.stale_reasons(dict(expected), expected) == []
    manifest = {**expected, "model_hash": "abd", "steps": 4}
    assert goldens.stale_reasons(manifest, expected) == [
        "model content hash: golden 'abd', this run 'abc'",
        "steps: golden 4, this run 8",
    ]


def test_golden_format_choice():
    assert goldens.choose_format("auto", 10 << 20) == "full"
    assert goldens.choose_format("auto", 140 << 30) == "fingerprint"
    assert goldens.choose_format("full", 140 << 30) == "full"


def test_fingerprint_of_a_70b_sized_step_is_small():
    hidden, tokens, vocab = 8192, 16, 128256
    dump = {f"layers.{i}.out": torch.randn(tokens, hidden) for i in range(3)}
    dump["logits"] = torch.randn(3, vocab)
    dump["input_ids"] = torch.arange(tokens, dtype=torch.int32)
    fp = goldens.fingerprint(dump)
    # per float tensor 5 stats + 3 x 32 sampled values; logits add 2 x 3 x 16 top-k: 516 numbers of 778k
    assert sum(t.numel() for t in fp.values()) == 4 * (5 + 3 * 32) + 2 * 3 * 16 + tokens
    assert torch.equal(fp["input_ids"], dump["input_ids"])
    assert torch.equal(fp["logits::topk_index"], dump["logits"].topk(16).indices)
    # a new run is read at the golden's top-k ids, whatever its own ranking
    other = {"logits": -dump["logits"]}
    again = goldens.fingerprint(other, like=fp)
    assert torch.equal(again["logits::topk_index"], fp["logits::topk_index"])
    assert torch.equal(again["logits::topk_value"], -fp["logits::topk_value"])


def test_fingerprint_rejects_top_k_ids_for_another_batch():
    fp = goldens.fingerprint({"logits": torch.randn(3, 100)})
    with pytest.raises(DittoError, match="recorded for another batch or vocab"):
        goldens.fingerprint({"logits": torch.randn(2, 100)}, like=fp)


@pytest.mark.parametrize(
    "worker, env, count, chosen",
    [
        ("gw0", {}, 4, "0"),
        ("gw5", {}, 4, "1"),
        ("gw1", {"CUDA_VISIBLE_DEVICES": "4,6"}, 8, "6"),
        ("gw2", {"CUDA_VISIBLE_DEVICES": "4,6"}, 8, "4"),
        ("gw1", {}, 0, None),  # no GPU: nothing set
        (None, {}, 4, None),  # not an xdist worker
        (None, {"PYTEST_XDIST_WORKER": "gw3"}, 4, None),  # a run inside a worker inherits its variable: not a worker
    ],
)
def test_one_gpu_per_xdist_worker(worker, env, count, chosen):
    environ = dict(env)
    assert gpu.assign_gpu(worker, environ, gpu_count=count) == chosen
    assert environ.get("CUDA_VISIBLE_DEVICES") == (chosen or env.get("CUDA_VISIBLE_DEVICES"))


def test_worker_id_comes_from_the_config():
    class Config:
        workerinput = {"workerid": "gw2"}

    assert gpu.worker_id(Config()) == "gw2" and gpu.worker_id(object()) is None


def test_gpus_are_counted_from_the_driver_folder(tmp_path):
    assert gpu.count_gpus(tmp_path / "absent") == 0
    for bus in ("0000:17:00.0", "0000:65:00.0"):
        (tmp_path / bus).mkdir()
    assert gpu.count_gpus(tmp_path) == 2


NETWORK_DEF = """# TensorRT network 'unnamed': 3 inputs, 9 layers, 1 outputs.
# Written by ditto for reading and diffing, not for running. Each statement is one layer; the
# comment right above it is the name of the layer producing the tensors it assigns.

t["input_ids"] = network.add_input(dtype='int32', shape=(-1,))

# LLaMAForCausalLM/transformer/vocab_embedding/GATHER_0
t["a"] = GATHER(t["w"], t["input_ids"])

# LLaMAForCausalLM/transformer/layers/0/input_layernorm/RMSNORM_0
t["b"] = NORMALIZATION(t["a"])

# LLaMAForCausalLM/transformer/layers/0/attention/qkv/MATRIX_MULTIPLY_0
t["c"] = MATRIX_MULTIPLY(t["b"], t["wqkv"])

# LLaMAForCausalLM/transformer/layers/0/attention/dense/MATRIX_MULTIPLY_0
t["d"] = MATRIX_MULTIPLY(t["c"], t["wo"])

# LLaMAForCausalLM/transformer/layers/0/ELEMENTWISE_SUM_0
t["e"] = ELEMENTWISE(t["a"], t["d"], op=ElementWiseOperation.SUM)

# LLaMAForCausalLM/transformer/layers/0/mlp/proj/MATRIX_MULTIPLY_0
t["f"] = MATRIX_MULTIPLY(t["e"], t["w2"])

# LLaMAForCausalLM/transformer/layers/0/ELEMENTWISE_SUM_1
t["g"] = ELEMENTWISE(t["e"], t["f"], op=ElementWiseOperation.SUM)

# LLaMAForCausalLM/transformer/layers/10/ELEMENTWISE_SUM_1
t["h"] = ELEMENTWISE(t["g"], t["g"], op=ElementWiseOperation.SUM)

# LLaMAForCausalLM/transformer/ln_f/RMSNORM_0
t["i"] = NORMALIZATION(t["h"])
"""


def test_trtllm_probe_layers_are_the_last_layer_under_each_module():
    names = trtllm.layer_names_from_network_def(NETWORK_DEF)
    assert len(names) == 9 and names[0] == "LLaMAForCausalLM/transformer/vocab_embedding/GATHER_0"
    assert trtllm.probe_layers(names, ["layers.0.attn", "layers.0.mlp", "layers.0.out", "final_norm"]) == {
        "LLaMAForCausalLM/transformer/layers/0/attention/dense/MATRIX_MULTIPLY_0": "layers.0.attn",
        "LLaMAForCausalLM/transformer/layers/0/mlp/proj/MATRIX_MULTIPLY_0": "layers.0.mlp",
        "LLaMAForCausalLM/transformer/layers/0/ELEMENTWISE_SUM_1": "layers.0.out",  # not layers/10
        "LLaMAForCausalLM/transformer/ln_f/RMSNORM_0": "final_norm",
    }
    with pytest.raises(DittoError, match="no TensorRT-LLM layer lies under transformer/layers/1/mlp"):
        trtllm.probe_layers(names, ["layers.1.mlp"])
    with pytest.raises(DittoError, match="has no TensorRT-LLM module"):
        trtllm.trtllm_module("embedding")


def test_trtllm_commands(tmp_path):
    from ditto.models.tiny import TINY_MODELS

    for _, kwargs in TINY_MODELS.values():  # every built-in model has a convert script
        if kwargs["model_type"] == "glm":  # not mapped yet: unchecked whether a TensorRT-LLM script converts HF Glm
            continue
        command = trtllm.convert_command(kwargs["model_type"], tmp_path / "hf", tmp_path / "ckpt", "float16",
                                         tmp_path / "examples")
        assert command[1].startswith(str(tmp_path / "examples" / "models" / "core"))
        assert command[1].endswith("convert_checkpoint.py") and command[-2:] != ["--dtype", "float32"]
    assert trtllm.convert_command("gemma", tmp_path, tmp_path, "float16", tmp_path)[-2:] == ["--ckpt-type", "hf"]
    with pytest.raises(DittoError, match="no TensorRT-LLM convert_checkpoint.py known for model_type 'mamba'"):
        trtllm.convert_command("mamba", tmp_path, tmp_path, "float16", tmp_path)
    options = {"max_batch_size": 3, "max_input_len": 9, "max_seq_len": 18, "max_num_tokens": 54, "tokens_per_block": 32}
    build = trtllm.build_command(tmp_path / "ckpt", tmp_path / "out", options)
    assert build[1].endswith("scripts/trtllm-build")
    assert build[build.index("--max_seq_len") + 1] == "18" and "--workers" in build


def test_trtllm_examples_dir(tmp_path):
    assert trtllm.examples_dir({"TRTLLM_EXAMPLES_DIR": str(tmp_path)}) == tmp_path
    if not any(p.is_dir() for p in trtllm.DEFAULT_EXAMPLES):
        with pytest.raises(DittoError, match="set TRTLLM_EXAMPLES_DIR"):
            trtllm.examples_dir({})
