"""What registries answer with: the manifest media types a client should accept."""

from __future__ import annotations

MANIFEST_MEDIA_TYPES: tuple[str, ...] = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
"""The manifest media types registries serve today, for an ``Accept`` header.

A registry answers only in a type the client accepts, so leaving one out makes images look
missing (distribution answers 404 for an OCI index the client did not accept). The OCI artifact
manifest is left out on purpose: the image spec 1.1 withdrew it."""
