"""Assertions about secrets that do not print the secret when they fail."""

from __future__ import annotations


def assert_hidden(text: str, *secrets: str, where: str = "output") -> None:
    """Fail if any secret occurs in ``text``, without showing either in the failure."""
    leaked = [index for index, secret in enumerate(secrets) if secret and secret in text]
    if leaked:
        raise AssertionError(f"secret #{leaked} leaked into the {where} (value not shown)")
