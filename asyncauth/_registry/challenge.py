"""``WWW-Authenticate`` challenges, parsed per RFC 9110 §11.6.1 (formerly RFC 7235 §4.1).

A registry answers an unauthenticated request with ``401`` and one or more challenges, e.g.
Docker Hub's ``Bearer realm="https://auth.docker.io/token",service="registry.docker.io",
scope="repository:library/alpine:pull"`` or ECR's ``Basic realm="https://…",service="ecr…"``.
The grammar is awkward (the same comma separates challenges and their parameters, and a
challenge may carry a bare token68 instead of parameters), so this module implements it once,
completely, and refuses what it cannot read instead of guessing: a challenge decides where
credentials are sent.

Everything here is pure: text in, frozen values out. Malformed input raises
:class:`ChallengeError`, never ``IndexError`` or friends; its message names the header and at
most the (lower-cased, shortened) scheme, because a token68 challenge can carry a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from .._errors import ChallengeError, ScopeError
from .._redact import clip

if TYPE_CHECKING:
    from .scope import ScopeSet

WWW_AUTHENTICATE = "WWW-Authenticate"

# RFC 9110 §5.6.2 token, §11.2 token68, §5.6.4 quoted-string (qdtext and quoted-pair accept
# HTAB, SP, visible ASCII and obs-text; we also let non-Latin-1 text through, since a ``str``
# header may hold it, but never other control characters).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_OWS = re.compile(r"[ \t]*")
_OWS_AND_COMMAS = re.compile(r"[ \t,]*")
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_UNQUOTABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_SCHEME_SPELLING = {"bearer": "Bearer", "basic": "Basic"}


def quote(value: str) -> str:
    """``value`` as an RFC 9110 quoted-string: wrapped in ``"``, with ``"`` and ``\\`` escaped.

    Raises ``ValueError`` for control characters other than HTAB, which a quoted-string cannot
    carry even escaped.
    """
    if _UNQUOTABLE.search(value):
        raise ValueError("a quoted-string cannot contain control characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scheme_in_message(scheme: str) -> str:
    """A scheme is never a secret, but it is the server's text: shown lower-case and short."""
    return repr(clip(scheme.lower(), 24))


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge: an auth scheme with either auth-params or a token68 (or neither).

    ``scheme`` and parameter names are case-insensitive, so both are stored lower-cased;
    parameter values keep their case. ``params`` is a read-only mapping. Instances are
    hashable and compare by value, so they can take part in cache keys.

    ``repr``/``str`` never show the token68, which for some schemes is a credential.
    """

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.scheme, str) or not _TOKEN.fullmatch(self.scheme):
            raise ChallengeError("challenge: the auth scheme must be an RFC 9110 token")
        shown = _scheme_in_message(self.scheme)
        params: dict[str, str] = {}
        for name, value in self.params.items():
            if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                raise ChallengeError(
                    f"challenge {shown}: a parameter name is not an RFC 9110 token"
                )
            if not isinstance(value, str) or _UNQUOTABLE.search(value):
                raise ChallengeError(
                    f"challenge {shown}: parameter {name.lower()!r} must be text "
                    "without control characters"
                )
            if name.lower() in params:
                raise ChallengeError(f"challenge {shown}: parameter {name.lower()!r} is repeated")
            params[name.lower()] = value
        if self.token68 is not None:
            if not isinstance(self.token68, str) or not _TOKEN68.fullmatch(self.token68):
                raise ChallengeError(f"challenge {shown}: malformed token68")
            if params:
                raise ChallengeError(f"challenge {shown}: has both a token68 and parameters")
        object.__setattr__(self, "scheme", self.scheme.lower())
        object.__setattr__(self, "params", MappingProxyType(params))

    def __hash__(self) -> int:
        return hash((self.scheme, frozenset(self.params.items()), self.token68))

    def __reduce__(self) -> tuple[type[Challenge], tuple[str, dict[str, str], str | None]]:
        # A mappingproxy cannot be pickled or deep-copied; rebuild from a plain dict instead.
        return (Challenge, (self.scheme, dict(self.params), self.token68))

    # -- convenience -------------------------------------------------------------------------

    @property
    def is_bearer(self) -> bool:
        return self.scheme == "bearer"

    @property
    def is_basic(self) -> bool:
        return self.scheme == "basic"

    @property
    def realm(self) -> str | None:
        """Bearer: the token endpoint URL; Basic: a free-form protection-space name."""
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        """Bearer: the audience to ask the token server for (``service=`` in the token request)."""
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        """Bearer: the raw ``scope`` parameter (space-separated scopes); see :attr:`scopes`."""
        return self.params.get("scope")

    @property
    def error(self) -> str | None:
        """Bearer (RFC 6750 §3.1): ``invalid_token``, ``insufficient_scope`` or ``invalid_request``.

        Registries send it when a token was refused; it is absent on a first, anonymous 401.
        """
        return self.params.get("error")

    @property
    def error_description(self) -> str | None:
        return self.params.get("error_description")

    @property
    def scopes(self) -> ScopeSet:
        """The ``scope`` parameter parsed as a :class:`~asyncauth.registry.scope.ScopeSet`.

        Empty when the parameter is absent or blank (GCR and Oracle's OCIR send none or
        ``scope=""``). Raises :class:`ChallengeError` when it is not a list of registry scopes.
        """
        from .scope import ScopeSet

        try:
            return ScopeSet.parse(self.scope or "")
        except ScopeError as exc:
            shown = _scheme_in_message(self.scheme)
            raise ChallengeError(
                f"{WWW_AUTHENTICATE}: the scope parameter of the {shown} challenge "
                f"is not a list of registry scopes ({exc})"
            ) from None

    # -- rendering ---------------------------------------------------------------------------

    def to_header(self) -> str:
        """The challenge as a header value, secrets included (for servers and test peers).

        Parameters are always quoted, as distribution does; ``parse_challenges`` reads the
        result back to an equal challenge.
        """
        scheme = _SCHEME_SPELLING.get(self.scheme, self.scheme)
        if self.token68 is not None:
            return f"{scheme} {self.token68}"
        if not self.params:
            return scheme
        return scheme + " " + ",".join(f"{k}={quote(v)}" for k, v in self.params.items())

    def __repr__(self) -> str:
        fields = [f"scheme={self.scheme!r}"]
        if self.params or self.token68 is None:
            fields.append(f"params={dict(self.params)!r}")
        if self.token68 is not None:
            fields.append("token68='****'")
        return f"Challenge({', '.join(fields)})"

    def __str__(self) -> str:
        if self.token68 is not None:
            return f"{_SCHEME_SPELLING.get(self.scheme, self.scheme)} ****"
        return self.to_header()


class _Parser:
    """A cursor over one header value; every failure is a :class:`ChallengeError`."""

    __slots__ = ("header", "pos", "scheme", "text")

    def __init__(self, text: str, header: str) -> None:
        self.text = text
        self.header = header
        self.pos = 0
        self.scheme: str | None = None

    def fail(self, what: str) -> ChallengeError:
        where = (
            f" in the {_scheme_in_message(self.scheme)} challenge"
            if self.scheme is not None
            else ""
        )
        return ChallengeError(
            f"{self.header}: malformed header value: {what}{where} (at offset {self.pos})"
        )

    def skip(self, pattern: re.Pattern[str]) -> None:
        match = pattern.match(self.text, self.pos)
        assert match is not None  # both skip patterns match the empty string
        self.pos = match.end()

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self) -> str | None:
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def value(self) -> str:
        if self.peek() == '"':
            match = _QUOTED.match(self.text, self.pos)
            if match is None:
                raise self.fail("unterminated quoted string, or a control character inside it")
            self.pos = match.end()
            return _QUOTED_PAIR.sub(r"\1", match.group(1))
        token = self.token()
        if token is None:
            raise self.fail("expected a token or a quoted string after '='")
        return token

    def starts_param(self) -> bool:
        """Lookahead after a comma: ``token BWS "="`` is a parameter, anything else a challenge."""
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            return False
        after = _OWS.match(self.text, match.end())
        assert after is not None
        return self.text.startswith("=", after.end())

    def challenges(self) -> Iterator[Challenge]:
        while True:
            self.scheme = None
            self.skip(_OWS_AND_COMMAS)
            if self.at_end():
                return
            scheme = self.token()
            if scheme is None:
                raise self.fail("expected an auth scheme")
            self.scheme = scheme
            before_space = self.pos
            self.skip(_OWS)
            if self.at_end() or self.peek() == ",":
                yield Challenge(scheme)
                continue
            if self.pos == before_space:
                raise self.fail("expected a space after the auth scheme")

            token68 = _TOKEN68.match(self.text, self.pos)
            if token68 is not None:
                after = _OWS.match(self.text, token68.end())
                assert after is not None
                if after.end() >= len(self.text) or self.text[after.end()] == ",":
                    self.pos = after.end()
                    yield Challenge(scheme, token68=token68.group())
                    continue

            params: dict[str, str] = {}
            while True:
                name = self.token()
                if name is None:
                    raise self.fail("expected a parameter name")
                self.skip(_OWS)
                if self.peek() != "=":
                    raise self.fail("expected '=' after a parameter name")
                self.pos += 1
                self.skip(_OWS)
                value = self.value()
                if name.lower() in params:
                    raise self.fail("a parameter is repeated")
                params[name.lower()] = value
                self.skip(_OWS)
                if self.at_end():
                    break
                if self.peek() != ",":
                    raise self.fail("expected ',' after a parameter")
                self.skip(_OWS_AND_COMMAS)
                if self.at_end() or not self.starts_param():
                    break
            yield Challenge(scheme, params)


def parse_challenges(
    values: str | Iterable[str], *, header: str = WWW_AUTHENTICATE
) -> tuple[Challenge, ...]:
    """Every challenge in one header value or in several (``response.headers.get_list(...)``).

    Empty values and empty list elements (``, ,``) are skipped, so a response without the
    header gives ``()``. ``header`` only names the header in error messages (pass
    ``"Proxy-Authenticate"`` for proxies; the grammar is the same).

    >>> parse_challenges(['Bearer realm="https://ghcr.io/token",service="ghcr.io"'])[0].service
    'ghcr.io'
    """
    if isinstance(values, str):
        values = (values,)
    found: list[Challenge] = []
    for value in values:
        if not isinstance(value, str):
            raise ChallengeError(f"{header}: a header value is not text")
        found.extend(_Parser(value, header).challenges())
    return tuple(found)


def select_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge to answer: the first Bearer with a realm, else the first Basic, else None.

    Bearer wins because it scopes what the credential may do and keeps the password away from
    the registry; a Bearer without a realm cannot be answered (there is nowhere to get a token),
    so it is passed over. Other schemes (Digest, Negotiate, …) are not spoken by registries.
    """
    basic: Challenge | None = None
    for challenge in challenges:
        if challenge.is_bearer and challenge.realm:
            return challenge
        if challenge.is_basic and basic is None:
            basic = challenge
    return basic
