"""Importing this module patches TensorRT-LLM in place for ditto's debugging workflow.

    import ditto.patches  # then run trtllm-build or examples/run.py as usual (scripts/ do this)

- `TRTLLM_ADD_OUTPUT='{"<TensorRT layer name>": "<alias>"}'`: `trtllm-build` marks those layers'
  outputs as engine outputs named by the aliases.
- `DEBUG_ARTIFACTS_DIR` set: `trtllm-build` writes `trt_network_def.py` (the network as readable
  code; the comment above each tensor names the layer producing it) and `plugin.txt` (the GPT
  attention plugin's fields per layer) there; `run.py --use_py_session --debug_mode` writes
  `step{i}.pt` per step (inputs, outputs and extra outputs).

Needs TensorRT-LLM (raises DittoError without it, or on a release it was not written for); what
it patches is listed in `ditto.patches.trtllm`.
"""

from ditto.patches.trtllm import apply

TRTLLM_LINE = apply()
