"""The public API as a user meets it: names that show where they are imported from, a docstring
on every one of them, and an ``import asyncauth`` that loads only what it needs."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

import asyncauth

ROOT = Path(asyncauth.__file__).parent
PUBLIC_MODULES = ("asyncauth", "asyncauth.aiohttp", "asyncauth.httpx2")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter: what a user's first ``import asyncauth`` does."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


# --- one rule: public names show as asyncauth.X ------------------------------------------------


def _public_classes_and_functions() -> list[str]:
    return [
        name
        for name in asyncauth.__all__
        if inspect.isclass(getattr(asyncauth, name)) or inspect.isfunction(getattr(asyncauth, name))
    ]


@pytest.mark.parametrize("name", _public_classes_and_functions())
def test_every_public_class_and_function_reports_module_asyncauth(name: str) -> None:
    """Tracebacks, ``repr``s and pickles say ``asyncauth.ConfigError``, where users import it
    from, not the private module that defines it today."""
    value = getattr(asyncauth, name)
    assert value.__module__ == "asyncauth"
    assert f"{value.__module__}.{value.__qualname__}" == f"asyncauth.{name}"


def test_an_error_shows_as_asyncauth_x_in_a_traceback_from_the_start() -> None:
    """Raised by a private module before any public name was touched, as a configuration
    mistake is at start-up: the traceback still names ``asyncauth.ConfigError``."""
    code = (
        "import asyncauth._sources.env as env\n"
        "env.parse_environ({'IMGPKG_REGISTRY_HOSTNAME_0': 'gcr.io',"
        " 'IMGPKG_REGISTRY_USERNAME_0': 'u'})\n"
    )
    result = _python(code)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("asyncauth.ConfigError: IMGPKG_REGISTRY_PASSWORD_0 is not set"), last


@pytest.mark.parametrize(
    "name", [name for name in asyncauth.__all__ if inspect.isclass(getattr(asyncauth, name))]
)
def test_type_hints_of_public_classes_resolve(name: str) -> None:
    """``typing.get_type_hints`` (pydantic, cattrs, typer use it) reads a class's annotations in
    the namespace of its ``__module__``: that is ``asyncauth`` now, so it must hold the names
    they use."""
    typing.get_type_hints(getattr(asyncauth, name))


# --- import asyncauth loads what it needs -----------------------------------------------------


def test_import_asyncauth_loads_neither_the_handshake_nor_httpx() -> None:
    result = _python(
        "import sys, asyncauth\n"
        "print(sorted(m for m in sys.modules if m.startswith(('asyncauth', 'httpx', 'anyio'))))"
    )
    assert result.returncode == 0, result.stderr
    loaded = set(ast.literal_eval(result.stdout))
    assert loaded == {"asyncauth", "asyncauth._compat", "asyncauth._errors", "asyncauth._version"}


def test_a_public_name_loads_its_module_on_first_use() -> None:
    result = _python(
        "import sys, pickle, asyncauth\n"
        "from asyncauth import Credential\n"
        "assert 'httpx' not in sys.modules, 'a credential needs no HTTP client'\n"
        "assert pickle.loads(pickle.dumps(Credential('u', 'p'))) == Credential('u', 'p')\n"
        "assert asyncauth.create_client.__module__ == 'asyncauth'\n"
        "assert 'create_client' in dir(asyncauth)\n"
        "print(type(asyncauth.create_client().auth))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "<class 'asyncauth.RegistryAuth'>\n"
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        asyncauth.no_such_name  # noqa: B018


def _type_checking_imports() -> dict[str, str]:
    """What ``asyncauth/__init__.py`` imports for type checkers: name -> module."""
    tree = ast.parse((ROOT / "__init__.py").read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    return {
        alias.name: "." * node.level + (node.module or "")
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_the_lazy_table_the_type_checkers_imports_and_all_agree() -> None:
    homes = {name: home for home, names in asyncauth._HOMES.items() for name in names}
    assert _type_checking_imports() == homes
    eager = {"__version__"} | {
        name for name in asyncauth.__all__ if isinstance(getattr(asyncauth, name), type)
    } - set(homes)
    assert all(
        issubclass(getattr(asyncauth, name), asyncauth.AsyncAuthError)
        for name in eager - {"__version__"}
    )
    assert set(homes) | eager == set(asyncauth.__all__)
    for name, home in homes.items():
        assert getattr(importlib.import_module(home, "asyncauth"), name) is getattr(asyncauth, name)


# --- a docstring on every public name -----------------------------------------------------------

PENDING_LEAD: set[str] = set(
    # Every public name is documented; a name here would have to lack a docstring.
)
"""Public names known to lack a docstring. The test fails for a name here once it has one, so
that the list only shrinks."""


def _members(cls: type) -> dict[str, Any]:
    """A public class's public methods and properties, its own and those asyncauth classes it
    inherits from define (not ``object``'s, ``Exception``'s or httpx's)."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        if klass.__module__.partition(".")[0] != "asyncauth":
            continue
        for attribute, member in vars(klass).items():
            if attribute.startswith("_") or attribute in found:
                continue
            if isinstance(member, property):
                found[attribute] = member
            elif inspect.isfunction(inspect.unwrap(getattr(member, "__func__", member))):
                found[attribute] = getattr(cls, attribute)
    return found


def _public_objects() -> dict[str, Any]:
    objects: dict[str, Any] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            objects[f"{module_name}.{name}"] = value
            if inspect.isclass(value):
                for attribute, member in _members(value).items():
                    objects[f"{module_name}.{name}.{attribute}"] = member
    return objects


PUBLIC_OBJECTS = _public_objects()


def _attribute_docstring(name: str) -> str | None:
    """The string under a constant's assignment in the module that defines it (what
    mkdocstrings shows): ``MANIFEST_MEDIA_TYPES``, ``__version__``."""
    homes = {n: home for home, names in asyncauth._HOMES.items() for n in names}
    home = homes.get(name, "._version")
    body = ast.parse((ROOT / (home.lstrip(".").replace(".", "/") + ".py")).read_text()).body
    for node, following in itertools.pairwise(body):
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        assigned = isinstance(target, ast.Name) and target.id == name
        if assigned and isinstance(following, ast.Expr):
            return following.value.value if isinstance(following.value, ast.Constant) else None
    return None


def _docstring(qualified: str, value: Any) -> str | None:
    if inspect.isclass(value) or inspect.isroutine(value) or isinstance(value, property):
        return inspect.getdoc(value)  # a method's own, or the one it overrides
    return _attribute_docstring(qualified.rpartition(".")[2])


@pytest.mark.parametrize("qualified", sorted(PUBLIC_OBJECTS))
def test_every_public_name_has_a_docstring(qualified: str) -> None:
    """Docstrings are the API reference (docs/api.md) and what ``help()`` shows."""
    documented = bool((_docstring(qualified, PUBLIC_OBJECTS[qualified]) or "").strip())
    if qualified in PENDING_LEAD:
        assert not documented, f"{qualified} has a docstring now: take it off PENDING_LEAD"
    else:
        assert documented, f"{qualified} has no docstring"


def test_pending_docstrings_name_public_objects() -> None:
    assert set(PUBLIC_OBJECTS) >= PENDING_LEAD
