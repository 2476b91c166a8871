"""SDPA first, eager where transformers' SDPA path would compute another model.

transformers looks the attention function up by name at every forward, and its `sdpa`
function takes what it does not use in `**kwargs`. Some of those change the numbers and no
mask carries them: `softcap` (Gemma 2's logit soft-capping) is dropped silently by
transformers 5.17's SDPA path, while 5.24 raises and marks Gemma 2 as without SDPA. A model
run on such a path is not the model its config describes: ditto's export would lose the
soft-capping and the `hf` reference would lose it too, so both would agree on the wrong
model. `guarded_sdpa` makes the SDPA function raise `SdpaCannotCompute` for such a kwarg,
whatever the transformers version, and the caller loads the model again with eager attention.
"""

from __future__ import annotations

import contextlib

# attention kwargs that change the result and that transformers' SDPA function may ignore
MATH_KWARGS = ("softcap",)


class SdpaCannotCompute(Exception):
    """The model passed the SDPA attention function a kwarg it cannot compute (see module doc)."""


@contextlib.contextmanager
def guarded_sdpa():
    """Within the block, transformers' `sdpa` attention raises SdpaCannotCompute for MATH_KWARGS."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    had, before = "sdpa" in local, local.get("sdpa")
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def guarded(module, *args, **kwargs):
        for name in MATH_KWARGS:
            if kwargs.get(name) is not None:
                raise SdpaCannotCompute(
                    f"{type(module).__name__} passes {name}={kwargs[name]!r} to transformers' sdpa attention, "
                    "which does not compute it"
                )
        return sdpa(module, *args, **kwargs)

    ALL_ATTENTION_FUNCTIONS["sdpa"] = guarded
    try:
        yield
    finally:
        if had:
            local["sdpa"] = before
        else:
            local.pop("sdpa", None)


def cannot_compute(e: BaseException) -> SdpaCannotCompute | None:
    """The SdpaCannotCompute behind `e` (itself, or a cause or context of it), else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, SdpaCannotCompute):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None
