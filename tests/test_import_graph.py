"""No import circle anywhere in asyncauth: data and dependencies flow one way.

The graph is read from the source with ``ast``, not from ``sys.modules``: an import inside a
function closes a loop just as surely as one at the top (it only fails later, at the first call),
so both count. Imports under ``if TYPE_CHECKING:`` do not run and do not count for circles, but
they do for layers: a type named from an upper layer is a dependency on it all the same.
Importing ``pkg.sub`` runs ``pkg/__init__`` first, but an edge to every parent package would put
the whole library in one loop through ``asyncauth/__init__``; an edge goes to the package only
when the import names the package itself.

The layers, from top to bottom (:data:`LAYERS`): an import may go down or stay in its layer,
never up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import asyncauth

ROOT = Path(asyncauth.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, typing: bool = False) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth, outside ``if TYPE_CHECKING:``; with
    ``typing``, the ones inside such blocks too."""
    for node in ast.iter_child_nodes(tree):
        if not typing and isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node, typing=typing)


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    for alias in node.names:
        yield f"{source}.{alias.name}"
        yield source


def import_graph(*, typing: bool = False) -> dict[str, set[str]]:
    """Module -> the asyncauth modules it imports (``typing``: ``TYPE_CHECKING`` ones too)."""
    files = {_module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _imports(tree, typing=typing):
            targets = list(_targets(name, path.name == "__init__.py", node))
            if isinstance(node, ast.ImportFrom):
                # ``from pkg import sub`` imports the module ``pkg.sub`` when there is one,
                # else it reads an attribute of ``pkg``.
                pairs = zip(targets[0::2], targets[1::2], strict=True)
                targets = [sub if sub in files else source for sub, source in pairs]
            graph[name].update(t for t in targets if t in files and t != name)
    # ``asyncauth`` imports its public names' modules on first use, by name (PEP 562): edges
    # all the same, which a circle through the package would run into at that first use.
    graph["asyncauth"].update(f"asyncauth{home}" for home in asyncauth._HOMES)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that returns to its start), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_graph_sees_function_level_imports_and_skips_type_checking_blocks() -> None:
    graph = import_graph()
    # ecr imports the AWS fence inside a function, and only there.
    assert "asyncauth._sources.sdk.aws" in graph["asyncauth._sources.ecr"]
    # google names HttpxGoogleRequest under TYPE_CHECKING and imports the fence in a function.
    assert "asyncauth._sources.sdk.google" in graph["asyncauth._sources.google"]
    assert "asyncauth._defaults" in graph["asyncauth"]


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_asyncauth() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_cloud_modules_import_no_other_cloud() -> None:
    """Each cloud stands alone: the shared bits are in ``_sources.cloud``, the list in
    ``_defaults``."""
    graph = import_graph()
    clouds = {f"asyncauth._sources.{name}" for name in ("ecr", "google", "azure", "github")}
    for cloud in clouds:
        assert not (graph[cloud] & (clouds - {cloud})), cloud
    assert not (graph["asyncauth._sources.cloud"] & clouds)
    assert "asyncauth._sources.azure" not in graph["asyncauth._sources.env"]


# --- layers ---------------------------------------------------------------------------------------

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "CLI and public drivers",
        (
            "asyncauth",
            "asyncauth.__main__",
            "asyncauth._cli",
            "asyncauth._cli_args",
            "asyncauth._credential_helper",
            "asyncauth.aiohttp",
            "asyncauth.httpx2",
        ),
    ),
    ("clients", ("asyncauth._client",)),
    ("handshake", ("asyncauth._registry",)),
    ("defaults", ("asyncauth._defaults",)),
    ("sources", ("asyncauth._sources",)),
    ("chain", ("asyncauth._chain",)),
    ("resolution", ("asyncauth._resolution",)),
    ("stores", ("asyncauth._stores",)),
    (
        "core values and _http",
        (
            "asyncauth._http",
            "asyncauth._errors",
            "asyncauth._resource",
            "asyncauth._credentials",
            "asyncauth._net",
            "asyncauth._grammar",
            "asyncauth._redact",
            "asyncauth._patterns",
            "asyncauth._variables",
            "asyncauth._media_types",
            "asyncauth._ratelimit",
            "asyncauth._singleflight",
            "asyncauth._groups",
            "asyncauth._error_body",
            "asyncauth._compat",
            "asyncauth._version",
        ),
    ),
]
"""asyncauth's layers, top to bottom. A module belongs to the layer that names it or its package
(``asyncauth`` itself: only the package's ``__init__``)."""


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the one layer ``module`` belongs to."""
    found = [
        index
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or (prefix != "asyncauth" and module.startswith(prefix + "."))
    ]
    assert len(found) == 1, f"{module} is in {len(found)} layers: name it in exactly one"
    return found[0]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs back up the layers, as ``importer (layer) -> imported (layer)``."""
    return [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module in sorted(graph)
        for target in sorted(graph[module])
        if layer_of(target) < layer_of(module)
    ]


def test_every_module_is_in_exactly_one_layer() -> None:
    for module in import_graph():
        layer_of(module)


def test_the_layer_rule_names_an_upward_import_and_sees_type_checking_ones() -> None:
    graph = {"asyncauth._chain": {"asyncauth._registry.auth"}, "asyncauth._registry.auth": set()}
    assert upward_imports(graph) == [
        "asyncauth._chain (chain) imports asyncauth._registry.auth (handshake)"
    ]
    # TYPE_CHECKING imports count for layers: aiohttp.py names types only for the checker.
    typed, run = import_graph(typing=True), import_graph()
    assert any(typed[module] - run[module] for module in typed)


def test_no_import_runs_back_up_the_layers() -> None:
    """CLI/public drivers -> clients -> handshake -> defaults -> sources -> chain -> resolution ->
    stores -> core values and ``_http``, ``TYPE_CHECKING`` imports included."""
    upward = upward_imports(import_graph(typing=True))
    assert not upward, "imports that run back up the layers:\n" + "\n".join(upward)


def test_http_and_the_layers_below_the_handshake_import_none_above_them() -> None:
    """The rules item 7 and 8 of issue 16 name, spelt out (the layer order implies them)."""
    graph = import_graph(typing=True)
    above = {
        "asyncauth._http": ("_sources", "_chain", "_defaults", "_registry", "_client", "_stores"),
        "asyncauth._stores": ("_registry", "_client"),
        "asyncauth._chain": ("_registry", "_client"),
        "asyncauth._resolution": ("_registry", "_client"),
        "asyncauth._defaults": ("_registry", "_client"),
        "asyncauth._sources": ("_registry", "_client"),
    }
    found = [
        f"{module} imports {target}"
        for low, forbidden in above.items()
        for module in graph
        if _within(module, low)
        for target in graph[module]
        if any(_within(target, f"asyncauth.{name}") for name in forbidden)
    ]
    assert not found, "\n".join(found)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")
