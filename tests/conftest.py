import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """An empty run store for the test (SSL_RESULTS is read at call time)."""
    path = tmp_path / "results"
    monkeypatch.setenv("SSL_RESULTS", str(path))
    return path


def run_cli(*args, env=None, timeout=600):
    """`python -m ssl_src ARGS` in a subprocess: (returncode, stdout, stderr)."""
    import subprocess

    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "ssl_src", *args], cwd=REPO, capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr
