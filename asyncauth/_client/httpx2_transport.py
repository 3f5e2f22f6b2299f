"""An ``httpx`` transport that runs on httpx2's connection pool.

httpx 0.28's own pool slows down badly as concurrency grows (see docs/benchmarks.md: a few dozen
requests per second at 256 concurrent requests on this machine, where httpx2's pool keeps
hundreds), and under trio there is no aiohttp to fall back on. httpx2 is the maintained fork with
the same API under another module name, but its ``Request``/``Response`` are other classes, so
an ``httpx.AsyncClient`` cannot use its transport directly. :class:`Httpx2Transport` sends each
request across through :mod:`asyncauth._http.bridge` (streaming both ways), so users keep
their ``httpx.AsyncClient`` (and ``RegistryAuth``, event hooks, ...) and get httpx2's pool
underneath.

Import it only where httpx2 is installed (``pip install 'asyncauth[httpx2]'``).
"""

from __future__ import annotations

from typing import Any

import httpx
import httpx2

from .._http.bridge import send_across


class Httpx2Transport(httpx.AsyncBaseTransport):
    """httpx's transport interface over ``httpx2.AsyncHTTPTransport`` (same arguments)."""

    def __init__(
        self,
        *,
        verify: Any = True,
        limits: httpx.Limits | None = None,
        trust_env: bool = True,
        http2: bool = False,
        **kwargs: Any,
    ) -> None:
        limits = limits or httpx.Limits()
        self._inner = httpx2.AsyncHTTPTransport(
            verify=verify,
            limits=httpx2.Limits(
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
            ),
            trust_env=trust_env,
            http2=http2,
            **kwargs,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response: httpx.Response = await send_across(self._inner, httpx2, request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
