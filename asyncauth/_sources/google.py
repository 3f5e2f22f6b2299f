"""Google Container Registry and Artifact Registry: an access token from google-auth's ADC.

For ``gcr.io``, ``<label>.gcr.io`` and ``<label>.pkg.dev`` the resolver asks google-auth's
Application Default Credentials for a ``cloud-platform`` token -- in ADC's order:
``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account key, external-account / workload identity
federation, or authorized-user file), gcloud's application-default credentials file, then the
GCE/GKE metadata server -- and answers ``oauth2accesstoken`` with the token as password, expiring
when the token does.

google-auth is blocking, so it runs in a worker thread; every request it makes hops back to the
event loop and goes out on the caller's ``transport`` (:mod:`asyncauth.transports.google`).

Off Google Cloud, ADC's metadata check costs seconds (google-auth pings three times, 3 s each).
When neither a credentials file nor gcloud's file is there, the resolver first makes one short
probe of its own (``metadata_timeout``, 1 s by default) and answers ``None`` if no metadata server
answers like Google's -- an answer the chain caches, so the next lookup costs nothing.

google-auth reads its variables (``GOOGLE_APPLICATION_CREDENTIALS``, ``CLOUDSDK_CONFIG``,
``GCE_METADATA_IP``, and ``GCE_METADATA_HOST`` *when it is first imported*) from ``os.environ``;
so does the resolver's probe, to agree with it.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread
import httpx

from .._chain import Bounded, Caching, Claiming, Explaining, Hinting
from .._credentials import Credential
from .._errors import ConfigError, ResolverError, ResolverUnavailableError
from .._grammar import LABEL
from .._http import client_for
from .._resource import Resource
from .cloud import (
    DEFAULT_CLOUD_TIMEOUT,
    CloudSettings,
    claimable_host,
    disable_hint,
    expiry_epoch,
)

if TYPE_CHECKING:
    from .sdk.google import HttpxGoogleRequest

KEYCHAIN: Final = "gke"
EXTRA: Final = "gcp"
USERNAME: Final = "oauth2accesstoken"
"""The user name GCR and Artifact Registry expect with an OAuth2 access token."""
CLOUD_PLATFORM_SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_METADATA_TIMEOUT: Final = 1.0
"""Seconds the off-cloud probe of the metadata server may take."""
_GOOGLE = re.compile(rf"\A(?:(?:{LABEL}\.)?gcr\.io|{LABEL}\.pkg\.dev)\Z")
_MAX_DETAIL = 300


def is_google_host(host: str) -> bool:
    """``gcr.io``, ``<one label>.gcr.io`` (``us.gcr.io``...) or ``<one label>.pkg.dev``."""
    return _GOOGLE.match(host) is not None


def claims_google(resource: Resource) -> bool:
    host = claimable_host(resource)
    return host is not None and is_google_host(host)


def adc_file_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ADC will find a credentials file before it gets to the metadata server.

    ``GOOGLE_APPLICATION_CREDENTIALS`` set, or gcloud's ``application_default_credentials.json``
    present (in ``CLOUDSDK_CONFIG``, else gcloud's config directory).
    """
    env = os.environ if environ is None else environ
    if env.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return True
    config_dir = env.get("CLOUDSDK_CONFIG")
    if not config_dir:
        if sys.platform == "win32":
            config_dir = os.path.join(env.get("APPDATA", ""), "gcloud")
        else:
            config_dir = os.path.join(os.path.expanduser("~"), ".config", "gcloud")
    return os.path.isfile(os.path.join(config_dir, "application_default_credentials.json"))


def _import_google() -> tuple[Any, Any]:
    try:
        import google.auth
        import google.auth.exceptions

        from .sdk import google as transport
    except ImportError as exc:
        raise ResolverUnavailableError(
            f"Google needs google-auth ({exc.name or 'google-auth'} is not installed): "
            f"pip install 'asyncauth[{EXTRA}]'"
        ) from None
    return google.auth, transport


def _short(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _adc_token(request: HttpxGoogleRequest) -> tuple[str, datetime | None] | None:
    """ADC's token, in a worker thread; ``None`` when ADC finds no credentials at all."""
    import google.auth
    import google.auth.exceptions

    try:
        credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE], request=request)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
            # A file the user named and ADC cannot use is a mistake to show, not to skip.
            raise ConfigError(f"GOOGLE_APPLICATION_CREDENTIALS: {_short(str(exc))}") from None
        return None  # no credentials of any kind here: no opinion
    try:
        credentials.refresh(request)  # type: ignore[no-untyped-call]
    except google.auth.exceptions.GoogleAuthError as exc:
        # RefreshError carries the token endpoint's error response, never what was sent.
        raise ResolverError(f"Google: {type(exc).__name__}: {_short(str(exc))}") from None
    token = credentials.token
    if not isinstance(token, str) or not token:
        raise ResolverError(f"Google: {type(credentials).__name__} produced no access token")
    expiry = credentials.expiry
    return token, expiry if isinstance(expiry, datetime) else None


class GoogleResolver(Bounded, Caching, Claiming, Explaining, Hinting):
    """Credentials for GCR and Artifact Registry from Application Default Credentials.

    ``transport`` carries every request google-auth makes (metadata server, token endpoints,
    STS). ``timeout`` bounds a lookup; ``metadata_timeout`` bounds the off-cloud probe.
    """

    name = "google"
    disable_hint = disable_hint(KEYCHAIN)

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_CLOUD_TIMEOUT,
        metadata_timeout: float = DEFAULT_METADATA_TIMEOUT,
    ) -> None:
        self.transport = transport
        self.timeout = timeout
        self.metadata_timeout = metadata_timeout

    def __repr__(self) -> str:
        return f"GoogleResolver(timeout={self.timeout!r})"

    def cache_key(self, resource: Resource) -> Hashable | None:
        """One ADC token serves every Google registry."""
        return ("google",) if claims_google(resource) else None

    def explain(self, resource: Resource) -> str | None:
        """Names Application Default Credentials, where a user would look for the identity."""
        if not claims_google(resource):
            return None
        return f"Google Application Default Credentials ({USERNAME})"

    def claims(self, resource: Resource) -> bool:
        """Whether ``resource`` is on a registry this cloud serves (pure; no I/O)."""
        return claims_google(resource)

    async def resolve(self, resource: Resource) -> Credential | None:
        """An access token from Application Default Credentials; ``None`` off Google's
        registries, or off Google Cloud with no ADC file (the metadata server did not answer),
        so that the chain asks the next source."""
        if not claims_google(resource):
            return None
        # Importing google-auth reads files; keep the event loop free meanwhile.
        _, transport = await anyio.to_thread.run_sync(_import_google, abandon_on_cancel=True)
        async with client_for(self.transport) as client:
            if not adc_file_configured() and not await transport.metadata_server_answers(
                client, limit=self.metadata_timeout
            ):
                return None
            request = transport.HttpxGoogleRequest(client)
            try:
                # Abandoned on timeout: the request object is closed below, so the thread
                # cannot send anything more and ends at its next request.
                answer = await anyio.to_thread.run_sync(
                    functools.partial(_adc_token, request), abandon_on_cancel=True
                )
            finally:
                request.close()
        if answer is None:
            return None
        token, expiry = answer
        expires_at = (
            None if expiry is None else expiry_epoch(expiry.replace(tzinfo=UTC).timestamp())
        )
        return Credential(username=USERNAME, password=token, expires_at=expires_at)


def cloud_resolver(settings: CloudSettings) -> GoogleResolver:
    """The default chain's Google resolver (registered in :mod:`asyncauth._defaults`)."""
    return GoogleResolver(transport=settings.transport, timeout=settings.timeout)
