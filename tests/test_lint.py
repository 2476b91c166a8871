"""The checkout passes ruff with the project's configuration ([tool.ruff] in pyproject.toml).

ruff is in the `test` extra, so CI (README command 2, `pytest`) runs this; a checkout without it
skips. `ruff check --fix .` repairs import order and unused imports by itself.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_check_passes():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, f"ruff check found problems (fix them, or `ruff check --fix .`):\n{done.stdout}{done.stderr}"
