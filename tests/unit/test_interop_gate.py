"""The CI gate of tests/conftest.py: a skipped interop test fails the run when CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SAMPLE = '''
import pytest

@pytest.mark.interop
def test_needs_a_gateway():
    pytest.skip("gateway not installed")

def test_ordinary_skip():
    pytest.skip("not an interop test")
'''


def _pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_sample.py")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_interop_skip_fails_in_ci(tmp_path):
    """With CI=true the interop skip is reported as a failure naming the reason (exit 1),
    while an ordinary skip stays a skip."""
    done = _pytest(tmp_path, "true")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 skipped" in done.stdout and "gateway not installed" in done.stdout


def test_interop_skip_is_a_skip_elsewhere(tmp_path):
    """Outside CI both skips are plain skips and the run passes."""
    done = _pytest(tmp_path, None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 skipped" in done.stdout
