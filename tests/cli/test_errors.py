"""Bad input gets a one-line error naming the fix, a non-zero exit and no traceback."""

import json
import subprocess
import sys

import pytest

from ditto.cli.main import main


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ditto.cli.main", *args], capture_output=True, text=True)


@pytest.fixture
def bad_models(tmp_path):
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text('{"model_type": "llama", ')
    unknown_type = tmp_path / "unknown_type"
    unknown_type.mkdir()
    (unknown_type / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    encoder = tmp_path / "encoder"  # an architecture with no causal-LM class
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 32}))
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    return {
        "missing directory": (tmp_path / "nope", "not found"),
        "no config.json": (no_config, "has no config.json"),
        "unknown tiny name": ("tiny-nope", "unknown built-in model 'tiny-nope'; built-in models: tiny-llama"),
        "corrupt config": (corrupt, "is not valid JSON"),
        "unknown model_type": (unknown_type, "transformers cannot read"),
        "unsupported architecture": (encoder, "cannot build a causal-LM"),
        "no safetensors": (no_weights, "has no \\*.safetensors weights"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing directory", "no config.json", "unknown tiny name", "corrupt config", "unknown model_type",
     "unsupported architecture", "no safetensors"],
)
def test_bad_model_is_one_clear_line(bad_models, case):
    path, message = bad_models[case]
    result = _cli("export", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ditto export: error:")]
    assert len(errors) == 1, result.stderr
    import re

    assert re.search(message, errors[0]), errors[0]


def test_in_process_returns_nonzero(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err
