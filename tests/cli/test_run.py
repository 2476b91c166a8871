"""The seed's debugging flow on this machine: `ditto run` twice, then `ditto compare` the dumps."""

import torch

from ditto.cli.main import main
from ditto.dumps import load_steps


def test_run_twice_then_compare(tmp_path, capsys):
    a, b, c = tmp_path / "fp32", tmp_path / "fp32-again", tmp_path / "fp16"
    common = ["tiny-llama", "--max-output-len", "4", "--prompt", "Hey, are you conscious?", "--prompt", "Hi"]
    assert main(["run", *common, "--output-dir", str(a), "--probe", "layers.1.out"]) == 0
    dumps = load_steps(a)
    assert len(dumps) == 5
    assert dumps[0]["logits"].shape == (2, 512) and dumps[0]["logits"].dtype == torch.float32
    assert dumps[0]["input_ids"].shape == (len(b"Hey, are you conscious?") + 2,)
    assert dumps[0]["layers.1.out"].shape == (25, 64) and dumps[1]["layers.1.out"].shape == (2, 64)

    assert main(["run", *common, "--output-dir", str(b), "--probe", "layers.1.out"]) == 0
    assert main(["compare", str(a), str(b)]) == 0  # deterministic on the CPU

    assert main(["run", *common, "--dtype", "float16", "--force-tokens-from", str(a), "--output-dir", str(c),
                 "--probe", "layers.1.out"]) == 0
    capsys.readouterr()
    assert main(["compare", str(c), str(a)]) == 1  # float16 is outside float32's tolerance
    assert "logits" in capsys.readouterr().out
    assert main(["compare", str(c), str(a), "--atol", "0.05", "--rtol", "0"]) == 0
    forced = load_steps(c)
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(forced, dumps))


def test_run_rejects_bad_token_ids(capsys):
    assert main(["run", "tiny-llama", "--token-ids", "1,x"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
