"""The sdist is enough to run the tests: packagers build and test from it, not from git.

The sdist is built with the project's own build backend (hatchling, as ``pip`` or ``python -m
build`` would call it), unpacked into a temporary folder, and a real subset of the suite runs
there: pure tests, the repository checks (README, ``.ci/run``, the public names), the package
list and its tool lookup, and a registry peer started from the sdist's ``tests/peers``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHERE = "import asyncauth, tests; print(asyncauth.__file__, tests.__file__)"
BUILD = "import sys; from hatchling.build import build_sdist; print(build_sdist(sys.argv[1]))"
SUBSET = [
    "tests/test_resource.py",
    "tests/test_repository.py",
    "tests/test_system_packages.py",
    "tests/test_peers.py::test_htpasswd_file_from_apache2_utils_works_too",
]


@pytest.fixture(scope="module")
def unpacked_sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    archive = out / done.stdout.split()[-1]
    with tarfile.open(archive) as tar:
        tar.extractall(out / "unpacked", filter="data")
    (root,) = (out / "unpacked").iterdir()
    return root


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_the_sdist_carries_what_the_tests_need(unpacked_sdist: Path) -> None:
    files = _files(unpacked_sdist)
    tests = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py")}
    assert tests <= files, sorted(tests - files)
    needed = {
        "pyproject.toml",  # pytest settings: anyio_mode, filterwarnings, timeout
        "LICENSE",
        "system-packages.txt",  # require_tool refuses every program without it
        "README.md",
        ".ci/run",
        "tests/conftest.py",
    }
    assert needed <= files, sorted(needed - files)
    assert not any("__pycache__" in name or name.startswith(".venv") for name in files)
    assert (unpacked_sdist / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()


def test_the_license_is_the_apache_license_pyproject_declares(unpacked_sdist: Path) -> None:
    text = (unpacked_sdist / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    metadata = (unpacked_sdist / "PKG-INFO").read_text()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Requires-Dist: certifi" in metadata
    assert "Project-URL: Issues, https://github.com/asyncauth/asyncauth/issues" in metadata


def test_tests_run_from_the_unpacked_sdist(unpacked_sdist: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    where = subprocess.run(
        [sys.executable, "-c", WHERE],
        cwd=unpacked_sdist,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # `python -m pytest` puts the folder first on sys.path, as `-c` does: the sdist's code runs.
    assert all(Path(p).is_relative_to(unpacked_sdist) for p in where.stdout.split()), where.stdout
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUBSET],
        cwd=unpacked_sdist,
        env=environ,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.fullmatch(r"\d+ passed in [\d.]+s(?: \(.*\))?", summary), summary
    assert int(summary.split()[0]) >= 30, summary
