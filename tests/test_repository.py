"""The repository keeps its promises: CI runs exactly the README's test line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", readme)


def test_readme_has_exactly_two_command_lines() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    assert "asyncauth explain" in commands[0]
    assert "nox -s tests" in commands[1]


def test_ci_runs_the_readme_test_line_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_library_never_imports_asyncio() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "asyncauth").rglob("*.py")
        if re.search(r"^\s*(import asyncio|from asyncio\b)", path.read_text(), re.MULTILINE)
    ]
    assert offenders == []


# The public API: what ``asyncauth`` exports, pinned so that a change to it is a decision.
PUBLIC_NAMES = {
    "Hinting",
    "Sharing",
    "HeaderSource",
    "Explaining",
    "Claiming",
    "Caching",
    "Bounded",
    "AsyncAuthError",
    "AuthenticationError",
    "AzureResolver",
    "Chain",
    "ChainOptions",
    "ChallengeError",
    "ConfigError",
    "Credential",
    "DockerConfigResolver",
    "ECRResolver",
    "EnvResolver",
    "FlagsResolver",
    "GitHubResolver",
    "GoogleResolver",
    "InsecureTransportError",
    "InvalidReferenceError",
    "MANIFEST_MEDIA_TYPES",
    "MemoryTokenStore",
    "Outcome",
    "RateLimit",
    "RateLimitedError",
    "RedisTokenStore",
    "RegistryAuth",
    "Resolution",
    "Resolver",
    "ResolverError",
    "ResolverUnavailableError",
    "Resource",
    "ScopeError",
    "TokenResponseError",
    "TokenStore",
    "TraceEntry",
    "__version__",
    "create_client",
    "create_sync_client",
    "default_chain",
    "iaas_resolvers",
    "rate_limit",
    "resolve",
    "ssl_context",
}


def test_public_names_are_pinned() -> None:
    import asyncauth

    assert set(asyncauth.__all__) == PUBLIC_NAMES
    assert all(hasattr(asyncauth, name) for name in asyncauth.__all__)


def test_only_public_modules_lack_an_underscore() -> None:
    public = {"__init__.py", "__main__.py", "httpx2.py", "aiohttp.py", "py.typed"}
    package = ROOT / "asyncauth"
    exposed = sorted(p.name for p in package.iterdir() if not p.name.startswith("_"))
    assert set(exposed) <= public, exposed


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _length_without_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    assert node.end_lineno is not None
    length = node.end_lineno - node.lineno + 1
    first = node.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if docstring and isinstance(first.value.value, str) and first.end_lineno is not None:  # type: ignore[attr-defined]
        length -= first.end_lineno - first.lineno + 1
    return length


def test_functions_stay_short() -> None:
    """No function over 50 lines (docstrings aside). Modules are sized by concept: ~400 lines
    is a prompt to look again, not a rule (a cap shaped the structure once; see CONTRIBUTING)."""
    too_long: list[str] = []
    for path in sorted((ROOT / "asyncauth").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        for node in _functions(ast.parse(path.read_text())):
            if _length_without_docstring(node) > 50:
                too_long.append(f"{name}:{node.lineno} {node.name}()")
    assert too_long == []
