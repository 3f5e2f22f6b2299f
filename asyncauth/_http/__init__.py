"""What every HTTP caller in asyncauth shares, and nothing that belongs to one of them.

Every HTTP call asyncauth makes (metadata servers, token endpoints, the ACR exchange, the AWS
API) goes through an :class:`httpx.AsyncClient` built by :func:`client_for` on the transport the
caller plugged in (a proxy, custom TLS, or a test transport that routes every host to loopback),
and reads answers through :func:`request_limited`. Two unrelated users build on this package:
the SDK adapters beside the sources (:mod:`asyncauth._sources.sdk`) and the transport picking
beside ``create_client`` (:mod:`asyncauth._client`). So it sits low and imports only the core
value modules (and httpx, anyio); the import-graph test holds it there:

* :mod:`.bridge` -- the one translation between ``httpx`` and its fork ``httpx2``;
* :mod:`.errors` -- connection failures that name their host and keep their kind;
* :mod:`.retry` -- the one retry policy for answers that say "not now" (token servers, clouds).
"""

from __future__ import annotations

from typing import Any, Final

import httpx

DEFAULT_HTTP_TIMEOUT: Final = 5.0
"""Seconds for each phase of a request (connect, read, write, pool) unless a caller says else."""
MAX_CLOUD_ANSWER_BYTES: Final = 1 << 20
"""Bytes of a cloud endpoint's answer (decoded) read at most: token answers are a few KiB."""


class AnswerTooLargeError(httpx.DecodingError):
    """A cloud endpoint's answer grew past :data:`MAX_CLOUD_ANSWER_BYTES` while being read."""


class BorrowedTransport(httpx.AsyncBaseTransport):
    """A caller's transport, lent to a short-lived client that must not close it.

    ``httpx.AsyncClient.aclose()`` closes its transport. A resolver opens and closes a client per
    lookup, but the transport belongs to the caller and is shared by every resolver (and by the
    caller's own clients), so closing is left to its owner.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transport.handle_async_request(request)

    async def aclose(self) -> None:
        """Do nothing: the transport's owner closes it."""

    def __repr__(self) -> str:
        return f"BorrowedTransport({self.transport!r})"


def client_for(
    transport: httpx.AsyncBaseTransport | None,
    *,
    timeout: float = DEFAULT_HTTP_TIMEOUT,
) -> httpx.AsyncClient:
    """A client for one lookup: on the caller's ``transport``, or on a default one it owns.

    Use it as ``async with client_for(transport) as client``. Closing the client closes a default
    transport but never the caller's. Redirects are not followed: a token endpoint that redirects
    would carry a secret to a host nobody chose.
    """
    return httpx.AsyncClient(
        transport=None if transport is None else BorrowedTransport(transport),
        timeout=timeout,
        follow_redirects=False,
    )


async def request_limited(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    limit: int = MAX_CLOUD_ANSWER_BYTES,
    **kwargs: Any,
) -> tuple[httpx.Response, bytes]:
    """Send a request and read its answer, decoded, up to ``limit`` bytes.

    Returns the (closed) response for its status and headers, and the body. Counting decoded
    bytes matters: a few hundred compressed bytes can inflate to gigabytes.
    """
    async with client.stream(method, url, **kwargs) as response:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise AnswerTooLargeError(
                    f"the answer is larger than {limit} bytes", request=response.request
                )
    return response, bytes(body)
