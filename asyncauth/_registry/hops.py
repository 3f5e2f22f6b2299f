"""Headers the handshake adds stay with the registry's origin, whatever a redirect says.

The flow adds the Docker config's ``HttpHeaders`` to registry requests. httpx follows redirects
inside the auth flow and copies every header to the next hop except ``Authorization`` (which it
drops on a change of origin), so a blob redirect to object storage would carry those headers —
often an API key — to a host nobody chose. The flow marks each request it added headers to
(:data:`ADDED_HEADERS`, a request extension: httpx hands a request's extensions on to the
redirect it builds), and the clients of :func:`asyncauth.create_client` run
:func:`strip_added_headers` as a request event hook, which httpx calls for every hop. A plain
``httpx.AsyncClient(auth=RegistryAuth())`` has no such hook: see docs/handshake.md.
"""

from __future__ import annotations

import httpx

from .target import origin_of

ADDED_HEADERS = "asyncauth.added_headers"
"""Request extension: ``(origin, header names)`` the flow added for that origin only."""


def mark(request: httpx.Request, origin: str, names: tuple[str, ...]) -> None:
    """Record that ``names`` were added to ``request`` for ``origin``."""
    request.extensions = {**request.extensions, ADDED_HEADERS: (origin, names)}


def strip_added_headers(request: httpx.Request) -> None:
    """Drop the headers the flow added from a hop to another origin than theirs."""
    marked = request.extensions.get(ADDED_HEADERS)
    if marked is None:
        return
    origin, names = marked
    if origin_of(request.url) == origin:
        return
    for name in names:
        if name in request.headers:
            del request.headers[name]


async def strip_added_headers_async(request: httpx.Request) -> None:
    """:func:`strip_added_headers` for an ``httpx.AsyncClient`` (its hooks are awaited)."""
    strip_added_headers(request)
