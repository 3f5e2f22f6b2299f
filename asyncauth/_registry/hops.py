"""What each hop of a redirect may carry, checked before httpx sends it.

httpx follows redirects inside the auth flow: it builds each next hop from the last (copying
every header but ``Authorization``, which it drops on a change of origin) and sends it before the
flow sees anything. Two rules must hold for every hop, so they run as a request event hook,
which httpx calls before it sends each one. The clients of :func:`asyncauth.create_client`
install :func:`guard_hop` (and :func:`guard_hop_async`); a hand-built
``httpx.AsyncClient(auth=RegistryAuth())`` has no such hook — see docs/handshake.md for exactly
what that leaves.

* **Added headers stay home.** The flow adds the Docker config's ``HttpHeaders`` to registry
  requests, and marks each request it added them to (:data:`ADDED_HEADERS`, a request
  extension, which httpx hands on to the redirect it builds). A blob redirect to object storage
  would otherwise carry those headers — often an API key — to a host nobody chose.
* **A token request goes nowhere a realm could not.** A token request carries
  ``asyncauth.destination`` (its registry's target); each hop must pass
  :func:`~asyncauth._registry.target.check_destination` before it leaves — a realm that
  answers 307 to ``https://169.254.169.254/...`` is refused without a byte sent there.
"""

from __future__ import annotations

import httpx

from .target import check_destination, origin_of

ADDED_HEADERS = "asyncauth.added_headers"
"""Request extension: ``(origin, header names)`` the flow added for that origin only."""
DESTINATION = "asyncauth.destination"
"""Request extension of token requests: ``(target, insecure registries)``."""
DEADLINE = "asyncauth.deadline"
"""Request extension of the handshake's own requests (pings, token requests): when the request
they serve must have ended (``time.monotonic()``). httpx bounds each phase and each read on its
own; a transport that honours this (:func:`asyncauth.create_client`'s do) bounds the whole
exchange, so a token server that drips its headers byte by byte is cut off in time."""
VIA = "asyncauth.via"
"""Response extension the routes of :func:`asyncauth.create_client` set: the ``host:port`` of
the proxy the response came through (a forwarding proxy can answer in the registry's place)."""


def mark(request: httpx.Request, origin: str, names: tuple[str, ...]) -> None:
    """Record that ``names`` were added to ``request`` for ``origin``."""
    request.extensions = {**request.extensions, ADDED_HEADERS: (origin, names)}


def guard_hop(request: httpx.Request) -> None:
    """Check a hop about to be sent: drop the headers the flow added if it leaves their
    origin; refuse a token request's hop to a destination its realm could not have named."""
    extensions = request.extensions
    destination = extensions.get(DESTINATION)
    if destination is not None:
        target, insecure = destination
        check_destination(target, str(request.url), insecure, carries=False)
    marked = extensions.get(ADDED_HEADERS)
    if marked is None:
        return
    origin, names = marked
    if origin_of(request.url) == origin:
        return
    for name in names:
        if name in request.headers:
            del request.headers[name]


async def guard_hop_async(request: httpx.Request) -> None:
    """:func:`guard_hop` for an ``httpx.AsyncClient`` (its hooks are awaited)."""
    guard_hop(request)
