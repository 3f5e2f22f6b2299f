"""The secret scan (tests/_secret_scan.py) fails a test that leaks, and never shows the secret.

Run in a separate pytest process (pytester): the scan's log handler and secret registry are
process-wide, and this suite's own scan must not see the leaks staged here.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGED = """
import base64, logging
import pytest
from tests._secrets import secret

PASSWORD = secret("pw-STAGED-leak-1234", user="alice")

def test_logs_it():
    logging.getLogger("asyncauth.staged").debug("sending %s", PASSWORD)

def test_prints_basic_form():
    print("Authorization: Basic", base64.b64encode(b"alice:pw-STAGED-leak-1234").decode())

def test_raises_with_it():
    raise RuntimeError(f"refused {PASSWORD!r}")

def test_fails_and_logs_it_elsewhere():
    logging.getLogger("other").warning("token %s", PASSWORD)
    assert False, "an ordinary failure"

def test_clean():
    logging.getLogger("asyncauth.staged").debug("nothing secret")
    print("nothing secret")
"""


def test_the_scan_fails_each_leak_and_shows_no_value(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest('pytest_plugins = ["tests._secret_scan"]\n')
    pytester.makepyfile(test_staged=STAGED)
    env_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", env_path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "addopts=")
    result.assert_outcomes(passed=1, failed=4)
    output = result.stdout.str() + result.stderr.str()
    for form in (
        "pw-STAGED-leak-1234",
        base64.b64encode(b"alice:pw-STAGED-leak-1234").decode(),
        base64.b64encode(b"pw-STAGED-leak-1234").decode(),
    ):
        assert form not in output
    assert "log record of asyncauth.staged: secret #1" in output
    assert "Captured stdout call: secret #1" in output
    assert "the exception: secret #1" in output
    assert "an ordinary failure" in output  # the test's own failure is kept, scrubbed
