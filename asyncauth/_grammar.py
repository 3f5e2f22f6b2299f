"""The name grammar registries share (distribution's ``reference`` package), written once.

Image references, registry keys users write, and the paths of registry API requests all name
repositories and hosts the same way; every parser takes its pieces from here.
"""

from __future__ import annotations

import re

COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
"""One path component of a repository name: lower-case alphanumerics with separators."""
REPOSITORY = rf"{COMPONENT}(?:/{COMPONENT})*"
"""A repository name: components joined by ``/``."""
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
"""One DNS label (RFC 1123): at most 63 characters, no ``-`` at either end."""

COMPONENT_RE = re.compile(COMPONENT)
REPOSITORY_RE = re.compile(REPOSITORY)
LABEL_RE = re.compile(LABEL)
