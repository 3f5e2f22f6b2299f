"""How text that may hold a secret is shown in messages: one place for every redaction rule.

Error messages, ``repr``s, trace details and log lines end up in CI logs and bug reports. Text
that comes from users or from third parties (references, keys, helper output) passes through
one of these functions before it is shown.
"""

from __future__ import annotations

import re

_FIELD_SECRET = re.compile(
    r"""(?ix)
    ( ["']? (?:secret|password|passwd|pwd|token|identitytoken|registrytoken|auth|authorization
              |access[_-]?token|refresh[_-]?token|api[_-]?key) ["']?
      \s* [:=] \s* )
    ( "[^"]*" | '[^']*' | [^\s,;]+ )
    """
)
_SCHEME_SECRET = re.compile(r"(?i)\b(basic|bearer)\s+[^\s,;]+")
_URL_USERINFO = re.compile(r"(?i)(://)[^/\s@]+@")
_WORD = re.compile(r"[A-Za-z0-9+/=_.~-]{20,}")
_HEX = re.compile(r"[0-9a-fA-F]{32,}")
MASK = "****"


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with ``…`` when something was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_DIGEST_SUFFIX = re.compile(
    r"@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$"
)


def without_userinfo(text: str) -> str:
    """A reference or host as it may appear in an error: nothing of a pasted ``user:pass@``.

    People paste ``user:password@host/...`` where a host or reference belongs. Everything up to
    and including the last ``@`` that does not start a digest (``@sha256:…``) becomes ``****@``,
    so neither the user nor the password, which may itself hold ``/``, ``:`` or ``@``, is shown.
    """
    digest = _DIGEST_SUFFIX.search(text)
    body, tail = (text[: digest.start()], digest.group(0)) if digest else (text, "")
    at = body.rfind("@")
    if at == -1:
        return text
    scheme, sep, _ = body.partition("://")
    prefix = scheme + sep if sep and "@" not in scheme else ""
    return f"{prefix}{MASK}@{body[at + 1 :]}{tail}"


def _looks_random(word: str) -> bool:
    """Whether a long word is more likely a token than a name or a path."""
    if _HEX.fullmatch(word):
        return True
    return (
        any(c.isdigit() for c in word)
        and any(c.islower() for c in word)
        and any(c.isupper() for c in word)
    )


def redact(text: str, *, limit: int = 300) -> str:
    """Third-party text fit for an error message: secrets masked, one line, ``limit`` chars.

    Masks ``password=…``/``"Secret": …``-style fields, ``Basic``/``Bearer`` credentials, URL
    user-info, and long words that look random (tokens, base64, JWTs). It is a heuristic for
    *error messages*; a successful answer that carries a secret is never shown at all.
    """
    text = _FIELD_SECRET.sub(lambda m: m.group(1) + MASK, text)
    text = _SCHEME_SECRET.sub(lambda m: m.group(1) + " " + MASK, text)
    text = _URL_USERINFO.sub(r"\1" + MASK + "@", text)
    text = _WORD.sub(lambda m: MASK if _looks_random(m.group(0)) else m.group(0), text)
    return clip(" ".join(text.split()), limit)
