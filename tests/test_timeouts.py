"""No test can hang the suite: past its limit a test is stopped with the stack of every thread."""
import subprocess
import sys

import pytest

from conftest import REPO

HUNG_TEST = '''
import threading


def test_hangs():
    helper = threading.Thread(target=threading.Event().wait, name="helper", daemon=True)
    helper.start()
    threading.Event().wait()  # blocked in C, as a test inside a spinning oneDNN kernel would be
'''


@pytest.mark.slow
def test_a_hung_test_is_stopped_with_the_stack_of_every_thread(tmp_path):
    (tmp_path / "test_hung.py").write_text(HUNG_TEST)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--timeout", "2",
                           "-p", "no:cacheprovider", str(tmp_path / "test_hung.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "+ Timeout +" in out
    assert "Stack of MainThread" in out and "Stack of helper" in out
