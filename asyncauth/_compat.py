"""Old module paths, kept importable for a while with a ``DeprecationWarning``.

Up to 0.1 the implementation modules were public (``asyncauth.chain``,
``asyncauth.sources.dockerconfig``...). They are private now and the public API is what
``asyncauth`` itself exports. Code that imported from an old path keeps working: the old
name is answered by a small stand-in module that warns and hands out the same objects,
taken from ``asyncauth`` when it exports the name, else from the module that now holds it.

One table says where everything went; an import hook serves it, so no stub files are needed.
``asyncauth`` hands itself to :func:`install` rather than being imported from here, so that
this module depends on nothing in the package (no import circle, not even a lazy one).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

MOVED: dict[str, str] = {
    "asyncauth.chain": "asyncauth._chain",
    "asyncauth.cli": "asyncauth._cli",
    "asyncauth.client": "asyncauth._client",
    "asyncauth.credential_helper": "asyncauth._credential_helper",
    "asyncauth.credentials": "asyncauth._credentials",
    "asyncauth.defaults": "asyncauth._defaults",
    "asyncauth.resource": "asyncauth._resource",
    "asyncauth.registry": "asyncauth._registry",
    "asyncauth.registry.auth": "asyncauth._registry.auth",
    "asyncauth.registry.challenge": "asyncauth._registry.challenge",
    "asyncauth.registry.scope": "asyncauth._registry.scope",
    "asyncauth.registry.tokens": "asyncauth._registry.tokens",
    "asyncauth.sources": "asyncauth._sources",
    "asyncauth.sources.azure": "asyncauth._sources.azure",
    "asyncauth.sources.dockerconfig": "asyncauth._sources.docker.resolver",
    "asyncauth.sources.ecr": "asyncauth._sources.ecr",
    "asyncauth.sources.env": "asyncauth._sources.env",
    "asyncauth.sources.flags": "asyncauth._sources.flags",
    "asyncauth.sources.github": "asyncauth._sources.github",
    "asyncauth.sources.google": "asyncauth._sources.google",
    "asyncauth.sources.helpers": "asyncauth._sources.docker.helperprotocol",
    "asyncauth.sources.iaas": "asyncauth._defaults",
    "asyncauth.transports": "asyncauth._http",
    "asyncauth.transports.aws": "asyncauth._sources.sdk.aws",
    "asyncauth.transports.azure": "asyncauth._sources.sdk.azure",
    "asyncauth.transports.google": "asyncauth._sources.sdk.google",
    "asyncauth.transports.httpx2": "asyncauth._client.httpx2_transport",
}
"""Old public module -> the private module that holds what it had."""


class _MovedModule(ModuleType):
    """Stands in for an old module: every attribute comes from the new home, with a warning."""

    def __init__(self, name: str, target: str, public: ModuleType) -> None:
        super().__init__(name, f"Deprecated alias of {target}; import from asyncauth instead.")
        self.__path__: list[str] = []  # a package, so that old sub-module paths import too
        self._target = target
        self._public = public

    def __getattr__(self, attribute: str) -> Any:
        asyncauth = self._public
        if attribute.startswith("__") and attribute not in asyncauth.__all__:
            raise AttributeError(attribute)

        warnings.warn(
            f"{self.__name__} is deprecated; use "
            + (
                f"asyncauth.{attribute}"
                if attribute in asyncauth.__all__
                else f"asyncauth (this name is internal now: {self._target}.{attribute})"
            ),
            DeprecationWarning,
            stacklevel=2,
        )
        if attribute in asyncauth.__all__:
            return getattr(asyncauth, attribute)
        return getattr(importlib.import_module(self._target), attribute)


class _MovedFinder:
    """Finder and loader of :data:`MOVED` (``sys.meta_path`` only needs these methods, so it
    does not subclass ``importlib.abc``, whose import would cost ``import asyncauth`` ~20 ms)."""

    def __init__(self, public: ModuleType) -> None:
        self._public = public

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, cast("Loader", self), is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return _MovedModule(spec.name, MOVED[spec.name], self._public)

    def exec_module(self, module: ModuleType) -> None:
        return None


def install(public: ModuleType) -> None:
    """Serve :data:`MOVED`, handing out ``public``'s names (idempotent; ``asyncauth`` calls it
    with itself when it is imported)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder(public))
