"""``RegistryAuth``: the registry token handshake as an ``httpx.Auth``.

The handshake itself is :mod:`~asyncauth._registry.flow` (decisions) and
:mod:`~asyncauth._registry.drivers` (I/O); tokens live in
:mod:`~asyncauth._registry.tokencache`. This module plugs them into httpx: ``async_auth_flow``
for ``httpx.AsyncClient``, ``sync_auth_flow`` for ``httpx.Client``, both over the same state, so
one instance can serve every client, task, event loop and thread of a program. Token requests
are yielded to httpx like any other request, so they go through the caller's client: its
transport, proxies, TLS settings and event hooks.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from types import ModuleType
from typing import Literal

import httpx

from .._chain import Chain
from .._errors import AsyncAuthError
from .._net import is_loopback
from .._resource import DOCKER_HUB, Resource, normalise_registry
from .._stores.environ import chosen_store
from .._stores.protocol import TokenStore
from .call import Call
from .drivers import drive_async, drive_sync
from .flow import Handshake, Options, Stats
from .tokencache import TokenCache
from .tokens import DEFAULT_CLIENT_ID

MAX_TOKEN_RESPONSE = 1 << 20
"""Decoded bytes a token response may have; a token server that sends more is not one."""


class RegistryAuthBase:
    """The handshake, whichever httpx module's ``Auth`` it plugs into (see :class:`RegistryAuth`).

    ``_http`` is that module: ``httpx`` here, ``httpx2`` in :mod:`asyncauth.httpx2`.
    """

    _http: ModuleType = httpx
    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        chain: Chain | None = None,
        *,
        insecure_registries: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        credential_ttl: float = 60.0,
        token_cache_size: int = 4096,
        max_token_response: int = MAX_TOKEN_RESPONSE,
        offline_token: bool = False,
        token_store: TokenStore | Literal[False] | None = None,
    ) -> None:
        self._chain = chain
        self._headers_from_chain = headers is None
        self._options = Options(
            insecure=frozenset(normalise_registry(r) for r in insecure_registries),
            client_id=client_id,
            credential_ttl=credential_ttl,
            max_token_response=max_token_response,
            offline_token=offline_token,
            headers=None if headers is None else dict(headers),
        )
        self._tokens = TokenCache(maxsize=token_cache_size, shared=chosen_store(token_store))
        self._handshake = Handshake(self._http, lambda: self.chain, self._options, self._tokens)

    def __repr__(self) -> str:
        chain = self._chain if self._chain is not None else "default_chain()"
        insecure = sorted(self._options.insecure)
        return f"RegistryAuth(chain={chain!r}, insecure_registries={insecure!r})"

    @property
    def chain(self) -> Chain:
        """The chain that decides the credentials (:func:`~asyncauth.default_chain` by default,
        built on first use)."""
        if self._chain is None:
            from .._defaults import default_chain

            store = self.token_store
            self._chain = default_chain(token_store=False if store is None else store)
        return self._chain

    @property
    def stats(self) -> Stats:
        """Counters: token requests, challenges learnt, retries, credential resolutions."""
        return self._options.stats

    @property
    def token_store(self) -> TokenStore | None:
        return self._tokens.shared

    def clear(self) -> None:
        """Forget learnt challenges, tokens and credentials (e.g. after a ``docker login``)."""
        handshake = self._handshake
        handshake.challenges.clear()
        handshake.resolutions.clear()
        if self._headers_from_chain:
            handshake.headers = None
        self._tokens.clear()

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        call = self._handshake.warm(request)
        if call is None:
            return drive_async(self._handshake.flow(request), self._http)
        return self._warm_async(call)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        call = self._handshake.warm(request)
        if call is None:
            return drive_sync(self._handshake.flow(request), self._http)
        return self._warm_sync(call)

    # The warm path: the request is authorised already (Handshake.warm), so it is sent with no
    # flow or driver in between; only a 401 brings the flow in, to retry or explain.

    async def _warm_async(self, call: Call) -> AsyncGenerator[httpx.Request, httpx.Response]:
        response = yield call.request
        if response.status_code != 401:
            return
        rest = drive_async(self._handshake.after(call, response), self._http)
        try:
            outgoing = await rest.__anext__()
            while True:
                outgoing = await rest.asend((yield outgoing))
        except StopAsyncIteration:
            return
        finally:
            await rest.aclose()

    def _warm_sync(self, call: Call) -> Generator[httpx.Request, httpx.Response]:
        response = yield call.request
        if response.status_code == 401:
            yield from drive_sync(self._handshake.after(call, response), self._http)

    async def bearer_token(
        self,
        client: httpx.AsyncClient,
        reference: str | Resource,
        *,
        push: bool = False,
        base_url: str | None = None,
    ) -> str:
        """The ``Authorization`` value this auth would send for ``reference`` (pull or push).

        Uses ``client`` to reach the registry (a ``GET /v2/`` ping learns the challenge) and the
        token server. ``base_url`` defaults to :meth:`registry_url`. Returns ``""`` when the
        registry needs no authorisation. Raises :class:`~asyncauth.AuthenticationError` when the
        answer would be anonymous only because sources failed.
        """
        resource = Resource.parse(reference)
        if resource.repository is None:
            raise AsyncAuthError(f"{resource}: a token is for a repository, not a registry")
        base = base_url or self.registry_url(resource)
        url = httpx.URL(f"{base}/v2/{resource.repository}/manifests/x")
        request = client.build_request("PUT" if push else "GET", url)
        drive = drive_async(self._handshake.flow(request, only_authorize=True), self._http)
        try:
            outgoing = await drive.__anext__()
            while True:
                response = await client.send(outgoing, auth=None, stream=True)
                try:
                    outgoing = await drive.asend(response)
                finally:
                    await response.aclose()
        except StopAsyncIteration:
            return str(request.headers.get("Authorization", ""))
        finally:
            await drive.aclose()

    def registry_url(self, resource: Resource) -> str:
        """``https://host[:port]`` — or ``http://`` for loopback and insecure registries.

        A guess without I/O; :func:`asyncauth._client.registry_base_url` asks the registry.
        """
        if resource.registry == DOCKER_HUB:
            return "https://registry-1.docker.io"
        if is_loopback(resource.host) or resource.registry in self._options.insecure:
            return f"http://{resource.registry}"
        return f"https://{resource.registry}"


class RegistryAuth(RegistryAuthBase, httpx.Auth):
    """Authenticates requests to OCI/Docker registries; for async and sync httpx clients.

    >>> client = httpx.AsyncClient(auth=RegistryAuth())  # doctest: +SKIP
    >>> await client.get("https://ghcr.io/v2/org/app/manifests/1.0")  # doctest: +SKIP

    ``chain`` decides the credentials (default: :func:`asyncauth.default_chain`, built on first
    use). ``insecure_registries`` (``host[:port]``) may receive credentials over plain http;
    loopback hosts always may. ``headers`` are added to every registry request (Docker config's
    ``HttpHeaders``; by default the chain's header sources are asked, once). ``credential_ttl``
    bounds how long a resolved credential is reused. ``offline_token=True`` asks token servers
    for a refresh token along with the first token fetched with a password; later tokens are
    then fetched with it (docker's behaviour). ``token_store`` shares tokens with other
    processes (see :class:`~asyncauth.TokenStore`, :class:`~asyncauth.RedisTokenStore`); tokens
    are always kept in process too. By default the store ``ASYNCAUTH_TOKEN_STORE`` and
    ``ASYNCAUTH_TOKEN_STORE_KEY`` describe is used, if they are set (read now); ``False`` opts
    out. The default chain shares cloud credentials through the same store.

    One instance is meant to be shared by all clients, tasks, event loops and threads of a
    program: its caches and single-flight tables are what make a thousand concurrent requests
    cost one token request per scope.
    """
