"""Sparse attention (a DeepSeek-V3.2-style lightning indexer: its top-k over the keys builds the
attention mask) converted as ordinary causal attention, exact for sequences of at most K tokens
(K = index_topk: a top-k of K keys keeps every key a query sees), and refused past K.

On the architecture sweep's tiny models with index_topk 12: hf vs fx vs replay logits in float32
within 1e-4 of the largest logit (the project's bound) on 12-token sequences (9-token prompt + 3
steps: exactly K); the program records the limit; a 13-token request is refused by fx and replay
with a DittoError naming the sparse attention, where HF's own logits show that the indexer does
change the numbers; `ditto build` refuses a max_seq_len above K and defaults to K. Planted bugs these
kill (tests/mutation/mutants.py): sparse_limit_not_enforced, sparse_limit_off_by_one,
sparse_build_limit_ignored, sparse_wrong_term_dropped, sparse_keep_all_unchecked."""

import dataclasses

import pytest
import torch

import ditto
from ditto.errors import DittoError
from ditto.pipeline import load_program
from ditto.runtime.backend import get_backend
from ditto.trtllm.config import resolve_limits
from tests.parity import FLOAT32_BOUND, forced_request, worst_errors
from tests.tiny_models import assert_backends_match_hf, save_sweep_model

pytestmark = pytest.mark.needs_tensorrt  # every test runs replay or builds (besides fx)

K = 12  # the longest prompt of tests/parity.py is 9 tokens: 9 + 3 steps = K


@pytest.fixture(scope="module")
def deepseek_v32(tmp_path_factory):
    return save_sweep_model(tmp_path_factory.mktemp("deepseek_v32"), "deepseek_v32", index_topk=K)


@pytest.mark.parametrize("model_type, overrides", [
    ("deepseek_v32", {}),
    ("axk2", {}),
    # the second layer reuses the first layer's top-k (indexer_types "shared"): one top-k, two masks
    ("glm_moe_dsa", {"indexer_types": ["full", "shared"]}),
])
def test_sparse_attention_up_to_k_tokens_matches_hf(tmp_path, model_type, overrides):
    path = save_sweep_model(tmp_path, model_type, index_topk=K, **overrides)
    program = load_program(path)
    assert program.sequence_limit is not None and program.sequence_limit.tokens == K
    assert "sparse attention" in program.sequence_limit.construct
    nodes = program.graph_module.graph.nodes
    assert not any(n.target == torch.ops.aten.topk.default for n in nodes)  # the indexer is gone
    assert sum(n.target == torch.ops.ditto.gpt_attention.default for n in nodes) == 2
    assert_backends_match_hf(path, steps=3)  # 12 tokens: every key kept


def test_longer_request_is_refused_where_the_indexer_changes_the_numbers(deepseek_v32, tmp_path):
    request = forced_request(deepseek_v32, steps=4, probes=[])  # 9 + 4 = 13 tokens > K
    for backend in ("fx", "replay"):
        with pytest.raises(DittoError, match=r"13 tokens, longer than 12.*sparse attention.*top-k.*shorter prompts"):
            get_backend(backend).run(request)
    # why: past K tokens HF's indexer drops keys (the same weights with a top-k of 2048 keep them all)
    unlimited = save_sweep_model(tmp_path, "deepseek_v32", index_topk=2048)
    sparse = get_backend("hf").run(request)
    dense = get_backend("hf").run(dataclasses.replace(request, model=unlimited))
    assert max(worst_errors(dense, sparse).values()) > 100 * FLOAT32_BOUND
    assert max(worst_errors(dense[:-1], sparse[:-1]).values()) <= FLOAT32_BOUND  # the first 12 tokens agree


def test_build_refuses_max_seq_len_above_k_and_defaults_to_k(deepseek_v32, tmp_path):
    program = load_program(deepseek_v32)
    assert resolve_limits(program.hf_config, sequence_limit=program.sequence_limit).max_seq_len == K
    assert resolve_limits(program.hf_config, max_seq_len=K, sequence_limit=program.sequence_limit).max_seq_len == K
    with pytest.raises(DittoError, match=r"--max-seq-len is 13 tokens, longer than 12.*sparse attention.*"
                                         r"--max-seq-len 12 or less"):
        ditto.build(deepseek_v32, tmp_path / "engine", max_seq_len=K + 1)
    assert not (tmp_path / "engine").exists()
