"""What a registry says about its rate limit: :class:`RateLimit`, read from response headers.

Registries that limit pulls say how much is left on their answers, and users want to see it
before the limit is hit, not after (regclient shows it; Docker Hub's limit counts per 6 hours).
Two families of headers are read, all pure and bounded:

* **Docker Hub's** (and the IETF draft's first forms, ``draft-ietf-httpapi-ratelimit-headers``
  00 to 06): ``ratelimit-limit: 100;w=21600``, ``ratelimit-remaining: 76;w=21600``, optionally
  ``ratelimit-reset: 30`` (seconds) and ``ratelimit-policy: 100;w=21600``; early drafts list
  the policies after the limit (``ratelimit-limit: 10, 10;w=1, 50;w=60``). Docker Hub adds
  ``docker-ratelimit-source`` (what the limit counts against: an address or an account).
* **The IETF draft's structured forms** (07 and later): ``ratelimit: "default";r=50;t=30``
  with ``ratelimit-policy: "default";q=100;w=60`` (``r``: remaining, ``t``: seconds to reset,
  ``q``: quota, ``w``: window).

Anything malformed reads as ``None``, never as an exception: a header is the server's word, and
a bad one must not fail the request that carried it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

MAX_HEADER: Final = 1024
"""Characters of a rate-limit header read at most; a longer one is malformed."""
MAX_MEMBERS: Final = 32
"""List members of one header read at most (policies); more is malformed."""
LOW: Final = 0.1
"""The share of the limit under which :attr:`RateLimit.low` holds (and asyncauth warns)."""

_NUMBER = re.compile(r"[0-9]{1,15}")
_STRING = r'"(?:[^"\\\x00-\x1f\x7f]|\\["\\])*"'
_BARE = rf'(?:{_STRING}|[^\s;,"=]+)'
_PARAM = re.compile(rf"\s*;\s*([a-zA-Z*][a-zA-Z0-9_.*-]{{0,31}})(?:=({_BARE}))?")
_ITEM = re.compile(rf"\s*({_BARE})")
_SEPARATOR = re.compile(r"\s*(?:,|\Z)")
_SOURCE = re.compile(r"[\x21-\x7e]{1,128}")

Member = tuple[str, dict[str, str]]
"""One list member: its value (a string's quotes removed) and its parameters."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A registry's rate limit as one of its responses reported it.

    ``limit``: requests (quota units) per window, ``None`` when the registry did not say;
    ``remaining``: what is left of it; ``window``: the window's length in seconds
    (Docker Hub: 21600, six hours), if given; ``source``: what the limit counts against, as
    Docker Hub names it (``docker-ratelimit-source``: an address or an account id), if given;
    ``reset``: seconds until the quota resets, where the IETF forms say so.

    >>> RateLimit(limit=100, remaining=5, window=21600.0, source=None).low
    True
    """

    limit: int | None
    remaining: int
    window: float | None
    source: str | None
    reset: float | None = None

    @property
    def low(self) -> bool:
        """Whether less than 10 % of the limit is left (``False`` when the limit is unknown)."""
        return self.limit is not None and self.limit > 0 and self.remaining < LOW * self.limit

    def describe(self) -> str:
        """``5 of 100 left in a 21600 s window``: for logs and error messages."""
        text = f"{self.remaining} of {self.limit if self.limit is not None else '?'} left"
        if self.window is not None:
            text += f" in a {self.window:g} s window"
        if self.reset is not None:
            text += f", reset in {self.reset:g} s"
        if self.source is not None:
            text += f" (counted against {self.source})"
        return text

    def as_json(self) -> dict[str, Any]:
        """The fields as JSON-ready data (what ``asyncauth manifest --json`` shows)."""
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "window": self.window,
            "source": self.source,
            "reset": self.reset,
        }


def parse_list(value: str | None) -> list[Member] | None:
    """A header as a list of members with parameters (the syntax both families share); ``None``
    when absent, empty, too long or malformed."""
    if value is None or not value.strip() or len(value) > MAX_HEADER:
        return None
    members: list[Member] = []
    position = 0
    while position < len(value):
        item = _ITEM.match(value, position)
        if item is None or len(members) >= MAX_MEMBERS:
            return None
        position = item.end()
        params: dict[str, str] = {}
        while (param := _PARAM.match(value, position)) is not None:
            params.setdefault(param[1].lower(), _unquote(param[2] or ""))
            position = param.end()
        separator = _SEPARATOR.match(value, position)
        if separator is None:
            return None
        position = separator.end()
        members.append((_unquote(item[1]), params))
        if separator.group().strip() == "," and position >= len(value):
            return None  # a trailing comma
    return members


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and _NUMBER.fullmatch(text) else None


def _positive(text: str | None) -> float | None:
    number = _number(text)
    return float(number) if number is not None and number > 0 else None


def _window(members: list[Member], quota: int | None) -> float | None:
    """The window of the first member that gives one, preferring a policy of ``quota``."""
    windows = [(_number(value), _positive(params.get("w"))) for value, params in members]
    for number, window in windows:
        if window is not None and (quota is None or number == quota):
            return window
    return next((window for _, window in windows if window is not None), None)


def from_headers(header: Callable[[str], str | None]) -> RateLimit | None:
    """The rate limit the headers ``header(name)`` returns report (names in lower case);
    ``None`` when they report none or report it malformed."""
    try:
        if header("ratelimit-remaining") is not None:
            found = _split_fields(header)
        elif header("ratelimit") is not None:
            found = _structured(header)
        else:
            return None
    except (ValueError, TypeError):  # pragma: no cover - the parsers return None instead
        return None
    if found is None:
        return None
    source = header("docker-ratelimit-source")
    if source is not None:
        source = source.strip()
        source = source if _SOURCE.fullmatch(source) else None
    limit, remaining, window, reset = found
    return RateLimit(limit, remaining, window, source, reset)


Fields = tuple[int | None, int, float | None, float | None]


def _split_fields(header: Callable[[str], str | None]) -> Fields | None:
    """Docker Hub's form and the IETF draft's first ones: one header per field."""
    remaining_members = parse_list(header("ratelimit-remaining"))
    if not remaining_members or len(remaining_members) != 1:
        return None
    remaining = _number(remaining_members[0][0])
    if remaining is None:
        return None
    limit = window = None
    limit_value = header("ratelimit-limit")
    if limit_value is not None:
        limit_members = parse_list(limit_value)
        if not limit_members or (limit := _number(limit_members[0][0])) is None:
            return None
        window = _window(limit_members, limit)
    policy = parse_list(header("ratelimit-policy"))
    if window is None:
        window = _window(policy or [], limit) or _window(remaining_members, None)
    reset_value = header("ratelimit-reset")
    reset = None if reset_value is None else _number(reset_value.strip())
    if (reset_value is not None and reset is None) or (limit is not None and remaining > limit):
        return None
    return limit, remaining, window, None if reset is None else float(reset)


def _structured(header: Callable[[str], str | None]) -> Fields | None:
    """The IETF draft's structured form: ``ratelimit`` names a policy of ``ratelimit-policy``."""
    members = parse_list(header("ratelimit"))
    if not members:
        return None
    name, params = members[0]
    remaining = _number(params.get("r"))
    reset = _number(params.get("t")) if "t" in params else None
    if remaining is None or ("t" in params and reset is None):
        return None
    policies = parse_list(header("ratelimit-policy")) or []
    policy = next((p for n, p in policies if n == name), policies[0][1] if policies else {})
    limit = _number(policy.get("q"))
    if limit is not None and remaining > limit:
        return None
    return limit, remaining, _positive(policy.get("w")), None if reset is None else float(reset)


def rate_limit(response: Any) -> RateLimit | None:
    """The rate limit a registry's ``response`` reports (an httpx, httpx2 or aiohttp response),
    or ``None`` when it reports none (or reports it malformed).

    >>> response = await client.get(manifest_url)  # doctest: +SKIP
    >>> asyncauth.rate_limit(response)  # doctest: +SKIP
    RateLimit(limit=100, remaining=76, window=21600.0, source='192.0.2.1', reset=None)
    """
    headers = getattr(response, "headers", None)
    get = getattr(headers, "get", None)
    if get is None:
        raise TypeError(f"rate_limit() needs an HTTP response, not {type(response).__name__}")

    def header(name: str) -> str | None:
        value = get(name)
        return value if isinstance(value, str) else None

    return from_headers(header)


__all__ = ["LOW", "RateLimit", "from_headers", "parse_list", "rate_limit"]
