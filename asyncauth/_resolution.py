"""What a chain answers: :class:`Resolution`, its trace, and the failed-anonymous rule.

The chain produces these values; the handshake, the defaults' ``resolve`` and the CLI read them.
They live below all of those (and import nothing of theirs), so that a reader of a resolution
never reaches up into the code that produced it, nor into the handshake.

The rule is one sentence: an anonymous answer that only stands because sources failed is not a
silent success (:func:`refuse_failed_anonymous`). ``asyncauth.resolve`` applies it at once; the
handshake applies it when a registry asks for credentials, and names the same failures when a
registry refuses the request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._credentials import Credential
from ._errors import AuthenticationError
from ._resource import Resource


class Outcome(enum.StrEnum):
    """What one resolver did during one resolution."""

    MATCHED = "matched"
    NO_MATCH = "no match"
    SKIPPED = "skipped"
    TIMED_OUT = "timed out"
    UNAVAILABLE = "unavailable"
    ERROR = "error"


FAILED = frozenset({Outcome.TIMED_OUT, Outcome.UNAVAILABLE, Outcome.ERROR})
"""Outcomes that mean a source could not give its answer (as opposed to having none)."""


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One resolver's part in a resolution; ``duration`` is in seconds."""

    resolver: str
    outcome: Outcome
    duration: float
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """The chain's answer: the credential, which source gave it, and how every source fared.

    When no source matched, ``credential`` is anonymous and ``source`` is ``None``.
    """

    resource: Resource
    credential: Credential
    source: str | None
    trace: tuple[TraceEntry, ...]

    @property
    def failures(self) -> tuple[TraceEntry, ...]:
        """Sources that failed (timed out, unavailable, error) before the answer was reached.

        Their credentials might have been the right ones: when the registry then refuses the
        request, these are what the user needs to see.
        """
        return tuple(entry for entry in self.trace if entry.outcome in FAILED)


def failures_text(resolution: Resolution) -> str:
    """Each failed source, what happened and why, in one line (no secrets: details never hold
    any)."""
    return "; ".join(
        f"{entry.resolver} {entry.outcome}" + (f" ({entry.detail})" if entry.detail else "")
        for entry in resolution.failures
    )


def refuse_failed_anonymous(resolution: Resolution) -> None:
    """An anonymous answer that only stands because sources failed is not a silent success."""
    if resolution.credential.is_anonymous and resolution.failures:
        raise AuthenticationError(
            f"{resolution.resource}: no credential, because these sources failed: "
            f"{failures_text(resolution)}"
        )
