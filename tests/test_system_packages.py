"""The one list of Debian packages, and the tool lookup that holds the suite to it.

A test that runs a program nobody installs passes on the machine where someone installed it by
hand and fails on the first fresh one (issue 9: ``htpasswd`` passed only where the benchmarks had
installed ``apache2-utils``). These tests make that gap fail everywhere, at once.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .peers._tools import (
    SYSTEM_PACKAGES,
    PeerError,
    PeerUnavailableError,
    ToolNotListedError,
    read_system_packages,
    require_tool,
)

ROOT = Path(__file__).resolve().parent.parent

# Programs the suite runs today, and the ones tests being written need (issue 9 and 12).
EXPECTED = {
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "htpasswd": "apache2-utils",
    "docker-credential-pass": "golang-docker-credential-helpers",
    "docker-credential-ecr-login": "amazon-ecr-credential-helper",
    "openssl": "openssl",
    "tinyproxy": "tinyproxy-bin",
    "redis-server": "redis-server",
}


def test_the_list_names_every_package_the_tests_need() -> None:
    listed = read_system_packages()
    assert {name: listed[name].package for name in EXPECTED} == EXPECTED
    assert all(listed[name].use == "tests" for name in EXPECTED)
    assert listed["ab"].use == "bench"


UNLISTED = "sh"  # installed on every machine, listed nowhere


def test_a_program_not_on_the_list_is_refused_even_when_installed() -> None:
    assert shutil.which(UNLISTED) is not None
    with pytest.raises(ToolNotListedError, match="is not listed") as info:
        require_tool(UNLISTED)
    assert str(SYSTEM_PACKAGES) in str(info.value)
    assert not isinstance(info.value, PeerUnavailableError)  # no caller may treat it as "skip"


def test_a_benchmark_program_is_refused_to_the_tests() -> None:
    with pytest.raises(ToolNotListedError, match="benchmarks only") as info:
        require_tool("ab")
    assert str(SYSTEM_PACKAGES) in str(info.value)


def test_a_listed_program_that_is_missing_names_the_package_from_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PeerUnavailableError, match=r"Debian package 'apache2-utils'"):
        require_tool("htpasswd")
    with pytest.raises(PeerUnavailableError, match=r"Debian package 'apache2-utils'"):
        require_tool("ab", bench=True)
    with pytest.raises(PeerUnavailableError, match=r"Debian package 'tinyproxy-bin'"):
        require_tool("tinyproxy")


_LOOKUP = re.compile(
    r"""(?:require_tool|shutil\.which)\(\s*["']([^"']+)["']\s*(,\s*bench=True\s*)?\)"""
)


def _programs_named(folder: Path) -> dict[str, bool]:
    """Every program looked up on PATH under ``folder``, and whether as a benchmark tool."""
    found: dict[str, bool] = {}
    for path in sorted(folder.rglob("*.py")):
        for match in _LOOKUP.finditer(path.read_text(encoding="utf-8")):
            found[match.group(1)] = found.get(match.group(1), False) or bool(match.group(2))
    return found


def test_every_program_the_suite_and_benchmarks_look_up_is_listed() -> None:
    listed = read_system_packages()
    in_tests = _programs_named(ROOT / "tests")
    in_bench = _programs_named(ROOT / "benchmarks") if (ROOT / "benchmarks").is_dir() else {}
    assert set(EXPECTED) - {"tinyproxy", "redis-server"} <= set(in_tests)  # the scan sees them
    not_listed = sorted(set(in_tests) - set(listed))
    assert not_listed == [], f"looked up in tests/ but not in {SYSTEM_PACKAGES.name}"
    benchmark_programs = {p for p, tool in listed.items() if tool.use == "bench"}
    bench_only = sorted(p for p, bench in in_tests.items() if p in benchmark_programs and not bench)
    assert bench_only == [], "tests/ needs programs only `nox -s bench` installs"
    assert sorted(set(in_bench) - set(listed)) == []


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("htpasswd apache2-utils tests", "expected 'program package use purpose'"),
        ("htpasswd apache2-utils test writes users", "third column"),
        ("htpasswd Apache2_Utils tests writes users", "not a Debian package name"),
        ("htpasswd apache2-utils tests a\nhtpasswd apache2-utils bench b", "listed twice"),
    ],
)
def test_a_malformed_list_is_refused_naming_file_and_line(
    tmp_path: Path, line: str, needle: str
) -> None:
    path = tmp_path / "system-packages.txt"
    path.write_text(f"# comment\n\n{line}\n")
    with pytest.raises(PeerError, match=re.escape(needle)) as info:
        read_system_packages(path)
    assert f"{path}:" in str(info.value)


@given(st.text())
def test_any_list_text_gives_tools_or_a_peer_error(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "system-packages.txt"
        path.write_text(text, encoding="utf-8", newline="")
        try:
            tools = read_system_packages(path)
        except PeerError:
            return
    assert all(tool.use in ("tests", "bench") for tool in tools.values())


# --- .ci/run installs the "tests" rows before the README's test line --------------------------

_FAKE_APT_GET = '#!/bin/sh\necho "apt-get $*" >> "$CI_LOG"\n'
_FAKE_PYTHON3 = """#!/bin/sh
echo "python3 $*" >> "$CI_LOG"
mkdir -p .venv/bin
for tool in pip nox; do
    printf '#!/bin/sh\\necho "%s $*" >> "$CI_LOG"\\n' "$tool" > .venv/bin/$tool
    chmod +x .venv/bin/$tool
done
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_ci_installs_every_tests_package_before_the_readme_line(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", clone / ".ci" / "run")
    shutil.copy(SYSTEM_PACKAGES, clone / "system-packages.txt")
    bin_dir = tmp_path / "bin"  # apt-get and python3 stand-ins that only record their calls
    bin_dir.mkdir()
    _executable(bin_dir / "apt-get", _FAKE_APT_GET)
    _executable(bin_dir / "python3", _FAKE_PYTHON3)
    log = tmp_path / "calls.log"
    done = subprocess.run(
        ["bash", str(clone / ".ci" / "run")],
        env={"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "CI_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    listed = read_system_packages().values()
    tests_packages = sorted({tool.package for tool in listed if tool.use == "tests"})
    assert calls == [
        "apt-get update -qq",
        f"apt-get install -y -qq python3-venv {' '.join(tests_packages)}",
        "python3 -m venv .venv",
        "pip install -q nox",
        "nox -s tests",
    ]
    assert {"apache2-utils", "tinyproxy-bin", "redis-server"} <= set(tests_packages)
