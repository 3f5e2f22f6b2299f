"""Token requests and responses of the registry token protocol, sans IO.

What to send to a Bearer challenge's realm (``build_token_request``), how to read what comes back
(``parse_token_response``) and how long the result may be used (``Token``). The cache
(:mod:`~asyncauth._registry.tokencache`) and the HTTP calls live elsewhere and build on these
pure pieces. The flows follow distribution's token spec (``docs/spec/auth/token.md``,
``oauth.md``) and what go-containerregistry's and containerd's clients actually send:

* username/password: ``GET realm?service=…&scope=…&scope=…`` with ``Authorization: Basic``;
* anonymous: the same ``GET`` without ``Authorization``;
* identity token (an OAuth2 refresh token): ``POST realm`` with the form
  ``grant_type=refresh_token&service=…&client_id=…&refresh_token=…&scope=<space-separated>``;
  token servers without OAuth2 answer ``400``, ``401``, ``404`` or ``405``
  (:data:`OAUTH_FALLBACK_STATUSES`), and then the ``GET`` with Basic is used instead
  (``oauth_fallback=True``);
* registry token: sent as ``Bearer`` verbatim, nothing to request.

Nothing here lets a secret out through ``repr``, ``str`` or an exception message.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal
from urllib.parse import urlencode, urlsplit

from .._credentials import EXPIRY_MARGIN, Credential
from .._errors import ChallengeError, TokenResponseError
from .challenge import WWW_AUTHENTICATE, Challenge
from .scope import ScopeSet

DEFAULT_EXPIRES_IN = 60.0
"""Lifetime assumed when a token response has no ``expires_in`` (token spec: 60 seconds)."""

MIN_EXPIRES_IN = 60.0
"""Shortest lifetime honoured: the token spec tells clients to assume at least 60 seconds."""

DEFAULT_CLIENT_ID = "asyncauth"

OAUTH_FALLBACK_STATUSES = frozenset({400, 401, 404, 405})
"""Answers to the OAuth2 ``POST`` after which the one ``GET`` with Basic is tried, as containerd
does.

``404`` is the spec's (and go-containerregistry's) signal for "no OAuth2 here" (GCR answered
so) and ``405`` says the same more honestly (``ghcr.io``). Token servers that do not speak the
``refresh_token`` grant also answer ``400`` (ACR) or ``401`` (JFrog Artifactory), which is also
what a server that *does* speak it answers to a revoked refresh token: then the ``GET`` is
refused as well and costs one request more. It goes to the same realm, checked by the same
destination rules, so the secret reaches no party the ``POST`` did not; and it is tried once,
never in a loop. ``403`` is not among them: it refuses the credential, not the grant.
"""

HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]|\s")


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer access token and when it stops being usable.

    ``expires_at`` and ``issued_at`` are seconds since the epoch (``time.time()`` clock), so
    tokens can be compared with wall time and survive a process's monotonic clock. The access
    and refresh tokens never appear in ``repr``/``str``.
    """

    access_token: str = field(repr=False)
    expires_at: float
    issued_at: float
    refresh_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.access_token, str) or not HEADER_SAFE.fullmatch(self.access_token):
            raise ValueError(
                "an access token must be non-empty visible ASCII (it goes into a header)"
            )

    @property
    def lifetime(self) -> float:
        """Seconds from issue to expiry (never less than :data:`MIN_EXPIRES_IN` when parsed)."""
        return self.expires_at - self.issued_at

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value: ``Bearer <access token>``."""
        return f"Bearer {self.access_token}"

    def remaining(self, now: float, margin: float = EXPIRY_MARGIN) -> float:
        """Seconds this token stays fresh after ``now``; ``<= 0`` once it is not (a cache TTL)."""
        return self.expires_at - margin - now

    def __repr__(self) -> str:
        refresh = "'****'" if self.refresh_token else "None"
        return (
            f"Token(access_token='****', expires_at={self.expires_at!r}, "
            f"issued_at={self.issued_at!r}, refresh_token={refresh})"
        )

    __str__ = __repr__


def _error(what: str) -> TokenResponseError:
    return TokenResponseError(f"token response: {what}")


def _parse_rfc3339(text: str) -> float:
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise _error("issued_at is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = float("0" + match.group(7)) if match.group(7) else 0.0
    leap = 1 if second == 60 else 0  # RFC 3339 allows a leap second; datetime does not
    try:
        if match.group(8):
            tz = UTC
        else:
            offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
            tz = timezone(-offset if match.group(9) == "-" else offset)
        moment = datetime(year, month, day, hour, minute, second - leap, tzinfo=tz)
        return moment.timestamp() + leap + fraction
    except (ValueError, OverflowError):
        raise _error("issued_at is not a valid date-time") from None


def _optional_string(data: dict[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _error(f"{key} is a {type(value).__name__}, not a string")
    return value


def parse_token_response(body: bytes | str, *, received_at: float) -> Token:
    """Read a token server's JSON answer into a :class:`Token`.

    * ``token`` or ``access_token``: when both are present ``token`` wins (the spec says they
      should be equal and leaves the choice to the client); an empty one counts as absent.
    * ``expires_in``: seconds, default 60 and never less than 60 (token spec).
    * ``issued_at``: RFC 3339; when absent, ``received_at`` (the caller's ``time.time()`` when
      the response arrived). The server's clock is trusted only within reason: the token's
      lifetime is counted from ``issued_at`` clamped to at most ``received_at`` and to at
      least ``received_at - (lifetime - 60 s)``. A server clock that runs ahead therefore
      cannot extend a token, and one that lags cannot make a token we just received look
      expired, which would otherwise send every request back to the token server.
    * ``refresh_token``: kept for the next OAuth2 refresh.

    Anything else malformed raises :class:`TokenResponseError`, whose message never contains
    the body or a token.
    """
    if not isinstance(received_at, int | float) or not math.isfinite(received_at):
        raise ValueError("received_at must be a finite number of seconds since the epoch")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _error("the body is not valid JSON") from None
    except TypeError:
        raise _error("the body is not text or bytes") from None
    if not isinstance(data, dict):
        raise _error(f"the body is a JSON {type(data).__name__}, not an object")

    access_token = _optional_string(data, "token") or _optional_string(data, "access_token")
    if access_token is None:
        raise _error("neither 'token' nor 'access_token' is present")
    if not HEADER_SAFE.fullmatch(access_token):
        raise _error("the token contains characters that cannot be sent in a header")
    refresh_token = _optional_string(data, "refresh_token")

    expires_in = data.get("expires_in")
    if expires_in is None:
        lifetime = DEFAULT_EXPIRES_IN
    elif isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise _error(f"expires_in is a {type(expires_in).__name__}, not a number")
    else:
        try:
            lifetime = float(expires_in)
        except OverflowError:
            raise _error("expires_in is out of range") from None
        if not math.isfinite(lifetime) or lifetime < 0:
            raise _error("expires_in must be a finite, non-negative number of seconds")
        lifetime = max(lifetime, MIN_EXPIRES_IN)

    issued_text = _optional_string(data, "issued_at")
    issued_at = float(received_at)
    if issued_text is not None:
        claimed = _parse_rfc3339(issued_text)
        issued_at = min(max(claimed, received_at - (lifetime - MIN_EXPIRES_IN)), received_at)

    return Token(access_token, issued_at + lifetime, issued_at, refresh_token)


# -- token requests ---------------------------------------------------------------------------


def basic_authorization(username: str, password: str) -> str:
    """``Basic base64(username:password)``, UTF-8 encoded (RFC 7617's ``charset="UTF-8"``)."""
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A token request to make, described without doing it.

    ``url`` includes the query; ``headers`` are name/value pairs to add; ``body`` is the
    url-encoded form for ``POST`` (``None`` for ``GET``). ``repr`` hides the ``Authorization``
    value and the body, which hold the credential.
    """

    method: Literal["GET", "POST"]
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None

    def __repr__(self) -> str:
        headers = tuple(
            f"{name}: ****" if name.lower() == "authorization" else f"{name}: {value}"
            for name, value in self.headers
        )
        body = "None" if self.body is None else f"<{len(self.body)} bytes, not shown>"
        return (
            f"TokenRequest(method={self.method!r}, url={self.url!r}, "
            f"headers={headers!r}, body={body})"
        )

    __str__ = __repr__


def _realm_url(challenge: Challenge, allow_http: bool) -> str:
    """The challenge's realm, checked: an absolute https (or allowed http) URL, no userinfo."""
    if not challenge.is_bearer:
        raise ChallengeError(
            f"{WWW_AUTHENTICATE}: only a Bearer challenge is answered with a token request "
            f"(got {challenge.scheme[:24]!r})"
        )
    realm = challenge.realm
    if not realm:
        raise ChallengeError(f"{WWW_AUTHENTICATE}: the Bearer challenge has no realm")
    try:
        parts = urlsplit(realm)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        parts = None
    if parts is None or _CONTROL_OR_SPACE.search(realm):
        raise ChallengeError(f"{WWW_AUTHENTICATE}: the Bearer realm is not a valid URL")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ChallengeError(f"{WWW_AUTHENTICATE}: the Bearer realm must be an absolute https URL")
    if "@" in parts.netloc:
        raise ChallengeError(
            f"{WWW_AUTHENTICATE}: the Bearer realm must not carry a user name or password"
        )
    if scheme == "http" and not allow_http:
        raise ChallengeError(
            f"{WWW_AUTHENTICATE}: the Bearer realm is plain http; token requests carry "
            "credentials, so it must be https unless the registry itself is plain http"
        )
    return realm.partition("#")[0]


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    if not params:
        return url
    query = urlencode(params)
    if "?" not in url:
        return f"{url}?{query}"
    return url + query if url.endswith(("?", "&")) else f"{url}&{query}"


def _oauth2_post(
    base: str, service: str | None, scopes: ScopeSet, credential: Credential, client_id: str
) -> TokenRequest:
    """The OAuth2 form POST: ``refresh_token`` grant for an identity token, else ``password``."""
    refresh = credential.kind == "identity_token"
    form: list[tuple[str, str]] = [("grant_type", "refresh_token" if refresh else "password")]
    if service:
        form.append(("service", service))
    form.append(("client_id", client_id))
    if refresh:
        form.append(("refresh_token", credential.identity_token or ""))
    else:
        form += [
            ("username", credential.username or ""),
            ("password", credential.password or ""),
            ("access_type", "offline"),
        ]
    if scopes:
        form.append(("scope", scopes.form_value()))
    return TokenRequest(
        "POST",
        base,
        (("Content-Type", "application/x-www-form-urlencoded"),),
        urlencode(form).encode("ascii"),
    )


def build_token_request(
    challenge: Challenge,
    scopes: ScopeSet,
    credential: Credential,
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    oauth_fallback: bool = False,
    password_grant: bool = False,
    allow_http: bool = False,
) -> TokenRequest:
    """The request that exchanges ``credential`` for a token covering ``scopes``.

    ``challenge`` must be a Bearer challenge with an absolute ``https`` realm (``http`` only
    with ``allow_http=True``, for a registry that is itself plain http); otherwise
    :class:`ChallengeError`. Existing query parameters of the realm are kept.

    By credential kind:

    * ``anonymous``: ``GET`` without ``Authorization``.
    * ``basic``: ``GET`` with Basic; with ``password_grant=True``, the OAuth2 ``POST``
      ``grant_type=password`` (plus ``access_type=offline``, which asks for a refresh token)
      instead. Off by default: it is what docker does only when told to, and the ``GET`` is
      what every token server supports.
    * ``identity_token``: the OAuth2 ``POST`` with ``grant_type=refresh_token``; with
      ``oauth_fallback=True`` (the ``POST`` was answered with a status in
      :data:`OAUTH_FALLBACK_STATUSES`), ``GET`` with Basic ``username:secret``, where the
      secret is the password if the credential has one, else the identity token (containerd
      does the same; ACR accepts its refresh token that way).
    * ``registry_token``: ``ValueError``: it is sent as ``Bearer`` as is, with no exchange.

    ``GET`` repeats ``scope`` once per resource; ``POST`` sends one space-separated ``scope``.
    ``service`` and ``scope`` are left out when the challenge or the set has none.
    """
    base = _realm_url(challenge, allow_http)
    kind = credential.kind
    if kind == "registry_token":
        raise ValueError("a registry token is sent as a Bearer token as is; there is no exchange")
    service = challenge.service or None

    post = (kind == "identity_token" and not oauth_fallback) or (
        kind == "basic" and password_grant and not oauth_fallback
    )
    if post:
        return _oauth2_post(base, service, scopes, credential, client_id)
    params: list[tuple[str, str]] = [("service", service)] if service else []
    params.extend(scopes.query_params())
    url = _with_query(base, params)
    if kind == "anonymous":
        return TokenRequest("GET", url)
    secret = credential.password
    if kind == "identity_token" and not secret:
        secret = credential.identity_token
    authorization = basic_authorization(credential.username or "", secret or "")
    return TokenRequest("GET", url, (("Authorization", authorization),))
