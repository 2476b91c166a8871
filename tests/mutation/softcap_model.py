"""A tiny Gemma-2 that reaches what no built-in tiny model does (bench/RESULTS.md, issue 12):
logit soft-capping (so fx runs the reference `gpt_attention` kernel), q_scaling != 1
(query_pre_attn_scalar 24 with head_dim 16) and a sliding window of 8.

`python -m tests.mutation.softcap_model FOLDER` writes it with the tiny models' weight
generator; then e.g. `python -m tests.mutation --no-baseline --select "harness/regression.py
--ditto-model=FOLDER --ditto-backends=hf,fx,replay -k backends_agree" op_ pass_q_scaling native_`.
Not a built-in model: it has no goldens (hence `-k backends_agree`)."""

from __future__ import annotations

import sys
from pathlib import Path

from ditto.models import tiny

NAME = "tiny-gemma2x"
CONFIG = dict(model_type="gemma2", **tiny._COMMON, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24,
              attn_logit_softcapping=2.0, final_logit_softcapping=None, sliding_window=8)


def write(folder: Path) -> Path:
    tiny.TINY_MODELS.setdefault(NAME, ("Gemma-2: soft-capped attention logits, q_scaling != 1, sliding window 8", CONFIG))
    folder.mkdir(parents=True, exist_ok=True)
    tiny._create(NAME, folder)
    return folder


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))
