#!/usr/bin/env python3
"""TensorRT-LLM's examples/run.py with ditto's patches (`import ditto.patches` first).

Same arguments as examples/run.py. With DEBUG_ARTIFACTS_DIR set, `--use_py_session --debug_mode`
writes `step{i}.pt` per step there (the step's inputs, outputs and extra outputs). examples/run.py
is not part of the installed package: it is taken from $TRTLLM_EXAMPLES_DIR, else the release
container's /app/tensorrt_llm/examples, else /workspace/tensorrt_llm/examples.
"""

import os
import runpy
import sys
from pathlib import Path

try:
    import ditto  # noqa: F401
except ImportError:  # a checkout that was not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ditto.errors import DittoError  # noqa: E402


def main() -> int:
    try:
        import ditto.patches  # noqa: F401  (patches TensorRT-LLM in place)
        from ditto.debug.trtllm import find_run_py

        run_py = find_run_py(os.environ)
        if os.environ.get("DEBUG_ARTIFACTS_DIR") and "--debug_mode" not in sys.argv:
            print("run.py (ditto): DEBUG_ARTIFACTS_DIR is set but --debug_mode is not: no step dumps will be "
                  "written", file=sys.stderr)
        _add_window_args(sys.argv)
        sys.argv[0] = str(run_py)
        sys.path.insert(0, str(run_py.parent))  # run.py imports its sibling utils.py
        runpy.run_path(str(run_py), run_name="__main__")
    except DittoError as e:
        print(f"run.py (ditto): error: {e}", file=sys.stderr)
        return 2
    return 0


def _add_window_args(argv: list[str]) -> None:
    """The Python session ignores config.json's sliding windows (runtime_defaults); pass them."""
    import json

    from ditto.trtllm.config import CONFIG_FILE, py_session_window_args

    if "--engine_dir" not in argv:
        return
    config_path = Path(argv[argv.index("--engine_dir") + 1]) / CONFIG_FILE
    if config_path.is_file():
        extra = py_session_window_args(json.loads(config_path.read_text()), argv)
        if extra:
            print(f"run.py (ditto): the engine has sliding windows; adding {' '.join(extra)}", file=sys.stderr)
            argv.extend(extra)


if __name__ == "__main__":
    sys.exit(main())
