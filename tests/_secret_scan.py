"""The secret scan: no registered test secret may show up where people read (a pytest plugin).

For the whole run, every ``asyncauth`` logger logs at DEBUG into :class:`LeakWatch`, which
scans each record (message, arguments, traceback) as it is emitted. After each phase of each
test, :func:`pytest_runtest_makereport` scans what that phase left: its log records, its
captured stdout/stderr and log sections, and the text and ``repr`` of the exception it raised.
A find fails the test with a message that names *which* registered secret (``secret #n``) and
where, never its value, and every section of the report is scrubbed before pytest shows it. A
session fixture checks once more at the end (records emitted outside any test included).

What counts as a secret is what tests register with :func:`tests._secrets.secret`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator

import pytest

from ._secrets import leaks, registered, scan

MASK = "****"
_OUTSIDE = "(outside any test)"


class LeakWatch(logging.Handler):
    """Scans every record it sees for registered secrets; keeps only where it found one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.current = _OUTSIDE
        self._found: list[tuple[str, str]] = []
        self._guard = threading.Lock()
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not fit its message: scan both
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info:
            text += "\n" + self._formatter.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + record.stack_info
        found = leaks(text)
        if found:
            with self._guard:
                self._found += [(self.current, f"log record of {record.name}: {f}") for f in found]

    def take(self, nodeid: str) -> list[str]:
        """The finds made while ``nodeid`` ran (forgotten once taken)."""
        with self._guard:
            mine = [where for who, where in self._found if who == nodeid]
            self._found = [(who, where) for who, where in self._found if who != nodeid]
        return mine

    def everything(self) -> list[str]:
        with self._guard:
            return [f"{who}: {where}" for who, where in self._found]


_watch = LeakWatch()


def pytest_configure(config: pytest.Config) -> None:
    logger = logging.getLogger("asyncauth")
    logger.addHandler(_watch)
    logger.setLevel(logging.DEBUG)


def pytest_unconfigure(config: pytest.Config) -> None:
    logging.getLogger("asyncauth").removeHandler(_watch)


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    _watch.current = nodeid


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    _watch.current = _OUTSIDE


def _texts(report: pytest.TestReport, call: pytest.CallInfo[None]) -> Iterator[tuple[str, str]]:
    for title, content in report.sections:
        if title.startswith("Captured ") and not title.endswith(f" {report.when}"):
            continue  # an earlier phase's output, scanned with that phase
        yield title, content
    if call.excinfo is not None:
        yield "the exception", f"{call.excinfo.value}\n{call.excinfo.value!r}"
    if report.failed:
        yield "the failure report", report.longreprtext


def _scrub(text: str, forms: list[str]) -> str:
    for form in forms:
        text = text.replace(form, MASK)
    return text


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Fail a test phase that leaked a registered secret; show where, never what."""
    report = yield
    found = scan(_texts(report, call)) + _watch.take(item.nodeid)
    if not found:
        return report
    forms = sorted(registered(), key=len, reverse=True)
    original = _scrub(report.longreprtext, forms) if report.failed else ""
    report.sections = [(title, _scrub(content, forms)) for title, content in report.sections]
    report.outcome = "failed"
    report.longrepr = (
        f"a registered test secret leaked during {report.when} (values not shown):\n  "
        + "\n  ".join(sorted(set(found)))
        + (f"\n\nthe test's own failure, scrubbed:\n{original}" if original else "")
    )
    return report


@pytest.fixture(scope="session", autouse=True)
def _no_secret_in_any_log() -> Iterator[None]:
    """The session's last word: no log record of the whole run held a registered secret."""
    yield
    leaked = _watch.everything()
    assert not leaked, "registered secrets in log records (values not shown):\n" + "\n".join(leaked)
