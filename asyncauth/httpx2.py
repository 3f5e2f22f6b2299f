"""``RegistryAuth`` for httpx2 clients (the maintained fork of httpx).

httpx2 is the maintained fork of httpx with the same API under another module name; its
``Auth`` base class is a different class, so an auth for one is not accepted by the other.
The handshake is the same code (``RegistryAuthBase``)::

    import httpx2
    from asyncauth.httpx2 import RegistryAuth

    async with httpx2.AsyncClient(auth=RegistryAuth()) as client:
        ...

Importing this module requires httpx2 (``pip install httpx2``).
"""

from __future__ import annotations

import httpx2

from ._registry.auth import RegistryAuthBase

__all__ = ["RegistryAuth"]


class RegistryAuth(RegistryAuthBase, httpx2.Auth):  # type: ignore[misc]
    """:class:`asyncauth.RegistryAuth` for ``httpx2.AsyncClient`` and ``httpx2.Client``."""

    _http = httpx2
