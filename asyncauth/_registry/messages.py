"""What the handshake's flow and its drivers say to each other: plain data, no I/O, no callables.

The flow (:mod:`~asyncauth._registry.flow`) is a generator. It yields *effects* — what it needs
done — and is sent back their results; every value crossing that line is defined here, so that
the flow, the state that carries out its effects (:mod:`~asyncauth._registry.handshake`) and the
drivers for each HTTP library share one vocabulary and import nothing of each other:

* three effects send something: :class:`Transmit` (the caller's own request, with headers set),
  :class:`Ping` (``GET /v2/`` to learn a challenge) and :class:`Fetch` (a token request, a
  library-neutral :class:`~asyncauth._registry.tokens.TokenRequest`); each is answered with a
  :class:`Reply`. Drivers build their own library's requests from these.
* the others ask the handshake's state for something or tell it what was learnt:
  :class:`Resolve`, :class:`Headers`, :class:`AwaitChallenge`/:class:`Learn`,
  :class:`AwaitToken`/:class:`KeepToken`/:class:`DropToken`/:class:`KeepRefresh`,
  :class:`Sleep`, :class:`Backoff`; a prefetch's :class:`ClaimTokens`/:class:`KeepTokens`.

Time reaches the flow as data too: :attr:`Reply.received_at` is when an answer arrived (wall
clock), which is all a token's lifetime needs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Final

from .._credentials import Credential
from .._resolution import Resolution
from .._resource import Resource
from .challenge import Challenge
from .scope import ScopeSet, infer_scopes, repository_from_path
from .target import Target
from .tokencache import TokenKey
from .tokens import Token, TokenRequest


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


OPEN: Final = _Marker("OPEN")
"""A registry that answered without a challenge: nothing to send until it asks."""
LEAD: Final = _Marker("LEAD")
"""The answer to :class:`AwaitChallenge` that makes this request the one to learn it."""

Known = Challenge | _Marker
"""What is known of an origin's authentication: its :class:`Challenge`, or :data:`OPEN`."""


@dataclass(frozen=True, slots=True)
class Need:
    """What a request is about: its repository (as a resource) and the scopes it needs."""

    resource: Resource
    scopes: ScopeSet


@functools.lru_cache(maxsize=4096)
def need_of(registry: str, method: str, path: str, query: str) -> Need:
    """:class:`Need` from a request's line; cached, as requests repeat the same few routes."""
    return Need(Resource(registry, repository_from_path(path)), infer_scopes(method, path, query))


@dataclass(slots=True)
class Call:
    """One request on its way through the flow, and what has been decided about it."""

    method: str
    url: str
    target: Target
    need: Need
    replayable: bool
    """Whether its body can be sent twice (a probe and then the authorised request)."""
    challenge: Challenge | None = None
    resolution: Resolution | None = None
    sent: str | None = field(default=None, repr=False)
    """The ``Authorization`` value the request was last sent with (``None``: none), so that a
    refusal drops that token and not one a concurrent request has fetched since."""
    carried: TokenKey | None = None
    """The key of the cached token the request was last sent with (one another request, or an
    earlier one, fetched); ``None`` when it carried none, or one fetched for it just now."""
    fallback: Resolution | None = None
    """Set when ``anonymous_fallback`` sent this pull anonymously: the resolution as it ended,
    its trace saying which credential was refused, and by whom."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer as the flow reads it.

    ``headers`` are ``(lower-case name, value)`` pairs; ``history`` the URLs of the requests a
    redirect led through before this one (oldest first); ``body`` is set only for a
    :class:`Fetch` (read within its limit); ``received_at`` is the wall-clock time of arrival;
    ``via`` the ``host:port`` of the proxy a plain-http answer came through, when the driver
    knows of one (a forwarding proxy can answer in the registry's place).
    """

    status: int
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    history: tuple[str, ...] = ()
    body: bytes | None = field(default=None, repr=False)
    received_at: float = 0.0
    via: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case), or ``None``."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_list(self, name: str) -> list[str]:
        """Every value of header ``name`` (lower case), in order."""
        return [value for key, value in self.headers if key == name]


# -- effects that send -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send the caller's own request with ``headers`` set (``Authorization`` among them)."""

    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Ping:
    """``GET url`` (the registry's ``/v2/``) with the caller's ``User-Agent``, no credentials."""

    url: str


@dataclass(frozen=True, slots=True)
class Fetch:
    """Send a token request; the reply's body is read, at most ``limit`` decoded bytes.

    ``target`` is the registry the token is for: every hop a redirect leads the request to must
    pass :func:`~asyncauth._registry.target.check_destination` for it before it is sent.
    """

    request: TokenRequest
    limit: int
    target: Target


Sending = Transmit | Ping | Fetch


# -- effects the handshake's state answers ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Headers:
    """The extra headers every registry request carries (Docker config ``HttpHeaders``)."""


@dataclass(frozen=True, slots=True)
class Resolve:
    """The credential for ``resource``: a :class:`~asyncauth._resolution.Resolution`."""

    resource: Resource


@dataclass(frozen=True, slots=True)
class AwaitChallenge:
    """What is known of ``origin``: a :class:`Challenge`, :data:`OPEN`, or :data:`LEAD` — then
    this request learns it for everyone and must yield :class:`Learn` when it has."""

    origin: str


@dataclass(frozen=True, slots=True)
class Learn:
    """``origin`` answered so: keep it (and wake whoever waits for it)."""

    origin: str
    known: Known


@dataclass(frozen=True, slots=True)
class AwaitToken:
    """A fresh token for ``key``, or a :class:`TokenDuty` when this request must fetch it (then
    it yields :class:`KeepToken`; if it fails instead, the state shares the failure)."""

    key: TokenKey


@dataclass(frozen=True, slots=True)
class TokenDuty:
    """The answer to :class:`AwaitToken` that makes this request fetch the token for everyone.

    ``refresh_token``: an OAuth2 refresh token a token server handed out earlier for the same
    registry, service and credential, to be used in place of the password.
    """

    refresh_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class KeepToken:
    """The token fetched for ``key``: hand it to the waiters and keep it."""

    key: TokenKey
    token: Token


@dataclass(frozen=True, slots=True)
class DropToken:
    """The registry refused the token kept for ``key``: drop it, here and in a shared store.

    ``refused`` is the ``Authorization`` value it refused: a token kept since (another request's
    retry fetched it) stays. ``None``: whatever is kept for ``key`` is dropped.
    """

    key: TokenKey
    refused: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class KeepRefresh:
    """Keep (or, with ``None``, forget) the refresh token for a registry, service and
    credential."""

    registry: str
    service: str
    credential: Credential
    value: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class ClaimTokens:
    """A prefetch's claim on many tokens of one credential: answered with :class:`Claimed`, the
    keys this flow must fetch (those with no fresh token that no other request is fetching).
    It ends each with :class:`KeepTokens`; those it does not are handed back when it ends."""

    keys: tuple[TokenKey, ...]


@dataclass(frozen=True, slots=True)
class Claimed:
    """The keys a :class:`ClaimTokens` got, and the credential's refresh token (as
    :class:`TokenDuty`'s)."""

    keys: tuple[TokenKey, ...]
    refresh_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class KeepTokens:
    """One ``token`` for every key in ``keys`` (claimed by this flow): kept once, under each."""

    keys: tuple[TokenKey, ...]
    token: Token


@dataclass(frozen=True, slots=True)
class Sleep:
    """Pause before try ``attempt + 1`` of a request answered "not now" (429, 503), as the one
    retry policy says (:mod:`asyncauth._http.retry`: back-off with jitter, or the server's
    ``Retry-After``, capped), if that fits in the request's time; ``reason`` names the wait in
    the error when it does not."""

    attempt: int
    retry_after: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Backoff:
    """The registry answered the request itself "not now" (``status`` 429, or 503 with a
    ``Retry-After``): pause the registry as it asked (capped by the one retry policy) for this
    ``RegistryAuth`` and, with a token store, for the fleet; then, with ``wait``, wait the pause
    out before the one retry, or raise :class:`~asyncauth.RateLimitedError` naming the wait
    and the registry when it does not fit in the request's time."""

    registry: str
    origin: str
    status: int
    retry_after: str | None
    wait: bool


Effect = (
    Transmit
    | Ping
    | Fetch
    | Headers
    | Resolve
    | AwaitChallenge
    | Learn
    | AwaitToken
    | KeepToken
    | DropToken
    | KeepRefresh
    | Sleep
    | ClaimTokens
    | KeepTokens
    | Backoff
)
