"""Connection failures that say where they happened and keep their kind, on every transport.

httpx's own transport reports a refused connection as ``[Errno 111] Connection refused`` and a
proxy's refusal the same way; a user with three registries and a proxy cannot tell which one
failed. Every route :func:`asyncauth.create_client` builds passes its connect-phase failures
through :func:`named`, so the message starts with the ``host:port`` the request was for (and
the proxy it went through), whichever transport raised it.
"""

from __future__ import annotations

import ssl

import httpx

_CONNECT_PHASE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError)
_CHAIN_LIMIT = 12


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc``, if that is what it is.

    Each transport wraps it differently (httpcore once, trio's streams once more, aiohttp in a
    subclass of its own), so the whole ``__cause__``/``__context__`` chain is searched.
    """
    seen: BaseException | None = exc
    for _ in range(_CHAIN_LIMIT):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def authority(url: httpx.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    return f"{host}:{port}" if port else host


def _where(request: httpx.Request, proxy: httpx.Proxy | None) -> str:
    where = authority(request.url)
    if proxy is not None:
        where += f" through the proxy {authority(proxy.url)}"
    return where


def _reason(exc: httpx.TransportError) -> str:
    """The failure in words; a certificate failure always says ``certificate verify failed``
    (under trio httpcore reports it as a bare ``BrokenResourceError``)."""
    text = str(exc)
    failure = certificate_error(exc)
    if failure is not None and "certificate verify failed" not in text:
        text = str(failure)
    if not text and isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting"
    return text or type(exc).__name__


def named(
    exc: httpx.TransportError, request: httpx.Request, proxy: httpx.Proxy | None
) -> httpx.TransportError:
    """``exc`` again, of the same class, with ``host:port`` (and the proxy) first in its message;
    other exceptions come back unchanged."""
    if not isinstance(exc, _CONNECT_PHASE):
        return exc
    where = _where(request, proxy)
    text = _reason(exc)
    if text.startswith(where):
        return exc
    return type(exc)(f"{where}: {text}", request=request)
