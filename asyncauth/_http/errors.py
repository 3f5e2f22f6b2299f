"""Connection failures that say where they happened and keep their kind, on every transport.

httpx's own transport reports a refused connection as ``[Errno 111] Connection refused`` and a
proxy's refusal the same way; a user with three registries and a proxy cannot tell which one
failed. Every route :func:`asyncauth.create_client` builds passes its connect-phase failures
through :func:`named`, so the message starts with the ``host:port`` the request was for (and
the proxy it went through), whichever transport raised it.

A TLS handshake that fails for another reason than the certificate says so too, in OpenSSL's
words: under trio httpcore hides it behind a bare ``BrokenResourceError`` (the message was just
``ConnectError``), and ``WRONG_VERSION_NUMBER`` alone does not tell a user that the server's
answer was not TLS at all, which is what an https URL for a plain-http registry gets.
"""

from __future__ import annotations

import ssl
from typing import Final

import httpx

_CONNECT_PHASE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError)
_CHAIN_LIMIT = 12
TLS_FAILED: Final = "TLS handshake failed"
NOT_TLS_HINT: Final = "the server's answer is not TLS (plain HTTP on this port?)"
_NOT_TLS_REASONS: Final = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"}
)
"""OpenSSL's reasons for a first answer that is no TLS record (an HTTP response, for one)."""


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first, to a bounded depth.

    Each transport wraps TLS failures differently (httpcore once, trio's streams once more,
    aiohttp in a subclass of ``ssl.SSLError`` of its own), so the whole chain is searched.
    """
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < _CHAIN_LIMIT:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc``, if that is what it is."""
    for seen in _chain(exc):
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
    return None


def tls_failure(exc: BaseException) -> str | None:
    """Why a TLS handshake behind ``exc`` failed, other than an untrusted certificate: OpenSSL's
    words, and what they mean when the server's first answer was not TLS at all."""
    # The innermost one is OpenSSL's own (aiohttp's wrapper is an SSLError too, in its words).
    failures = [seen for seen in _chain(exc) if isinstance(seen, ssl.SSLError)]
    if not failures or isinstance(failures[-1], ssl.SSLCertVerificationError):
        return None
    failure = failures[-1]
    text = f"{TLS_FAILED}: {failure}"
    if getattr(failure, "reason", None) in _NOT_TLS_REASONS:
        text += f"; {NOT_TLS_HINT}"
    return text


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
    """The failure in words; a certificate failure always says ``certificate verify failed``,
    any other TLS failure ``TLS handshake failed: <OpenSSL's words>`` (under trio httpcore
    reports either as a bare ``BrokenResourceError``)."""
    text = str(exc)
    failure = certificate_error(exc)
    if failure is not None and "certificate verify failed" not in text:
        text = str(failure)
    handshake = tls_failure(exc) if failure is None else None
    if handshake is not None and not text.startswith(TLS_FAILED):
        text = handshake
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
