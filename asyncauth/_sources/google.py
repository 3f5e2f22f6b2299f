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
import sys
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx

from .._credentials import Credential
from .._errors import ConfigError, ResolverError, ResolverUnavailableError
from .._resource import Resource
from .._transports import client_for
from .iaas import DEFAULT_IAAS_TIMEOUT, claims_google, disable_hint

if TYPE_CHECKING:
    from .._transports.google import HttpxGoogleRequest

__all__ = ["CLOUD_PLATFORM_SCOPE", "USERNAME", "GoogleResolver", "adc_file_configured"]

EXTRA = "gcp"
USERNAME = "oauth2accesstoken"
"""The user name GCR and Artifact Registry expect with an OAuth2 access token."""
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_DEFAULT_METADATA_IP = "169.254.169.254"
_PRODUCT_NAME_FILE = "/sys/class/dmi/id/product_name"
_MAX_DETAIL = 300


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


def _gce_product_name() -> bool:
    """google-auth's fallback residency check: the machine's DMI product name says Google."""
    try:
        with open(_PRODUCT_NAME_FILE, encoding="utf-8") as file:
            return file.read().strip().startswith("Google")
    except OSError:
        return False


def _import_google() -> tuple[Any, Any]:
    try:
        import google.auth
        import google.auth.exceptions

        from .._transports import google as transport
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


class GoogleResolver:
    """Credentials for GCR and Artifact Registry from Application Default Credentials.

    ``transport`` carries every request google-auth makes (metadata server, token endpoints,
    STS). ``timeout`` bounds a lookup; ``metadata_timeout`` bounds the off-cloud probe.
    """

    name = "google"
    disable_hint = disable_hint("gke")

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_IAAS_TIMEOUT,
        metadata_timeout: float = 1.0,
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
        if not claims_google(resource):
            return None
        return f"Google Application Default Credentials ({USERNAME})"

    async def _metadata_server_answers(self, client: httpx.AsyncClient) -> bool:
        """One short probe where google-auth would ping, judged the way google-auth judges it."""
        ip = os.environ.get("GCE_METADATA_IP") or _DEFAULT_METADATA_IP
        try:
            response = await client.get(
                f"http://{ip}/",
                headers={"Metadata-Flavor": "Google"},
                timeout=self.metadata_timeout,
            )
        except httpx.HTTPError:
            return await anyio.to_thread.run_sync(_gce_product_name)
        return response.status_code == 200 and response.headers.get("metadata-flavor") == "Google"

    def claims(self, resource: Resource) -> bool:
        """Whether ``resource`` is on a registry this cloud serves (pure; no I/O)."""
        return claims_google(resource)

    async def resolve(self, resource: Resource) -> Credential | None:
        if not claims_google(resource):
            return None
        # Importing google-auth reads files; keep the event loop free meanwhile.
        _, transport = await anyio.to_thread.run_sync(_import_google, abandon_on_cancel=True)
        async with client_for(self.transport) as client:
            if not adc_file_configured() and not await self._metadata_server_answers(client):
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
        expires_at = None if expiry is None else expiry.replace(tzinfo=UTC).timestamp()
        return Credential(username=USERNAME, password=token, expires_at=expires_at)
