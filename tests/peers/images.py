"""Test images without the internet: build an OCI layout in Python, push it for real.

Why: handshake tests need a manifest to fetch, and the machines have no internet, so nothing can
be pulled from Docker Hub. A one-file image is built on disk (a gzip'd tar layer, a config, a
manifest, ``index.json`` and ``oci-layout``), deterministically, so its digests are known before
it is pushed. ``skopeo_push`` pushes it with the real ``skopeo copy`` — a real client doing the
real handshake against the registry and our token issuer, which is part of the proof that both
peers behave like the real thing. ``push_image_http`` / ``seed_repositories`` push the same blobs
with plain httpx through distribution's blob-upload API, for seeding 20 or 100 repositories
quickly (skopeo costs a process and a handshake per repository).

Usage::

    image = build_oci_layout(tmp_path / "layout", tag="v1")
    pushed = skopeo_push(image, registry.host, "team/app", creds=("alice", "pw"))
    pushed.digest, pushed.media_type  # what a manifest GET must return
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ._tools import PeerError, require_tool

__all__ = [
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "OCIImage",
    "PushedImage",
    "bearer",
    "build_oci_layout",
    "push_image_http",
    "seed_repositories",
    "skopeo_push",
    "write_auth_file",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass(frozen=True)
class OCIImage:
    """A single-platform image held both on disk (``layout``) and in memory (``blobs``).

    ``manifest_digest``/``media_type`` are what the registry must report for the manifest once
    pushed (skopeo is run with ``--preserve-digests``, and the httpx path uploads bytes verbatim).
    """

    layout: Path
    tag: str
    manifest: bytes = field(repr=False)
    manifest_digest: str
    config_digest: str
    layer_digest: str
    blobs: Mapping[str, bytes] = field(repr=False)
    media_type: str = OCI_MANIFEST


@dataclass(frozen=True)
class PushedImage:
    """An image as it now lives in a registry: what tests fetch and compare against."""

    registry: str
    repository: str
    tag: str
    digest: str
    media_type: str

    @property
    def reference(self) -> str:
        """``host:port/repository:tag``."""
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def manifest_path(self) -> str:
        """``/v2/<repository>/manifests/<tag>``, the path a manifest GET uses."""
        return f"/v2/{self.repository}/manifests/{self.tag}"


def build_oci_layout(
    directory: Path, *, tag: str = "v1", payload: bytes | str = b"hello\n"
) -> OCIImage:
    """Write a minimal OCI image layout into ``directory`` and return its description.

    The image is one layer holding ``/hello.txt`` with ``payload``; equal payloads give equal
    digests (fixed mtimes, owners and gzip header), different payloads give different images.
    """
    data = payload.encode() if isinstance(payload, str) else payload
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        tar.addfile(info, io.BytesIO(data))
    layer_tar = tar_buffer.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer_tar)]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "asyncauth tests"}],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _digest(layer), "size": len(layer)}],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    blobs = {_digest(config): config, _digest(layer): layer, _digest(manifest): manifest}
    blob_dir = directory / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for digest, content in blobs.items():
        (blob_dir / digest.removeprefix("sha256:")).write_bytes(content)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": _digest(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(index), encoding="utf-8")
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}', encoding="utf-8")
    return OCIImage(
        layout=directory,
        tag=tag,
        manifest=manifest,
        manifest_digest=_digest(manifest),
        config_digest=_digest(config),
        layer_digest=_digest(layer),
        blobs={_digest(config): config, _digest(layer): layer},
    )


def skopeo_push(
    image: OCIImage,
    host: str,
    repository: str,
    *,
    tag: str | None = None,
    creds: tuple[str, str] | None = None,
    registry_token: str | None = None,
    authfile: Path | None = None,
    timeout: float = 60.0,
) -> PushedImage:
    """Push ``image`` with ``skopeo copy`` to ``docker://host/repository:tag`` over plain http.

    Authentication, at most one of: ``creds`` (``--dest-creds``; skopeo runs the token GET with
    Basic), ``registry_token`` (``--dest-registry-token``, sent verbatim as Bearer), ``authfile``
    (``--dest-authfile``; an ``identitytoken`` entry there makes skopeo run the OAuth2 POST,
    chunked). With none, ``--dest-no-creds``: skopeo never reads the user's own auth files.

    Errors name the destination but never the credentials.
    """
    skopeo = require_tool("skopeo")
    given = [x for x in (creds, registry_token, authfile) if x is not None]
    if len(given) > 1:
        raise ValueError("pass at most one of creds, registry_token, authfile")
    dest_tag = tag or image.tag
    auth_args: list[str]
    if creds is not None:
        auth_args = ["--dest-creds", f"{creds[0]}:{creds[1]}"]
    elif registry_token is not None:
        auth_args = ["--dest-registry-token", registry_token]
    elif authfile is not None:
        auth_args = ["--dest-authfile", str(authfile)]
    else:
        auth_args = ["--dest-no-creds"]
    destination = f"docker://{host}/{repository}:{dest_tag}"
    argv = [
        skopeo,
        "--insecure-policy",  # no dependency on the machine's /etc/containers/policy.json
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
        *auth_args,
        f"oci:{image.layout}:{image.tag}",
        destination,
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PeerError(f"skopeo copy to {destination} timed out after {timeout} s") from None
    if done.returncode != 0:
        raise PeerError(
            f"skopeo copy to {destination} failed with status {done.returncode}:\n"
            f"{_redact(done.stderr.strip(), creds, registry_token)}"
        )
    return PushedImage(host, repository, dest_tag, image.manifest_digest, image.media_type)


def write_auth_file(
    path: Path,
    host: str,
    *,
    username: str | None = None,
    password: str | None = None,
    identity_token: str | None = None,
) -> Path:
    """Write a containers ``auth.json`` (same shape as ``~/.docker/config.json``) for ``host``.

    For an identity token the entry is ``auth = base64("<token>:")`` plus ``identitytoken``, as
    ``docker login`` writes it: containers-image ignores an ``identitytoken`` whose entry has no
    parsable ``auth`` field, and then silently goes anonymous.
    """
    if identity_token is not None:
        entry = {"auth": base64.b64encode(b"<token>:").decode(), "identitytoken": identity_token}
    elif username is not None and password is not None:
        entry = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    else:
        raise ValueError("give username and password, or identity_token")
    path.write_text(json.dumps({"auths": {host: entry}}), encoding="utf-8")
    path.chmod(0o600)
    return path


def _redact(text: str, creds: tuple[str, str] | None, token: str | None) -> str:
    for secret in (creds[1] if creds else None, token):
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def bearer(token: str) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}``, for ``push_image_http(headers=...)``."""
    return {"Authorization": f"Bearer {token}"}


def push_image_http(
    client: httpx.Client,
    image: OCIImage,
    repository: str,
    *,
    tag: str | None = None,
    headers: Mapping[str, str] | None = None,
    mount_from: str | None = None,
) -> PushedImage:
    """Push ``image`` to ``client.base_url`` with distribution's blob-upload API.

    ``client`` carries the base URL (``httpx.Client(base_url=registry.url)``) and, for htpasswd
    registries, ``auth=(user, password)``; for token registries pass ``headers=bearer(token)``
    with a token minted for ``repository:<name>:pull,push`` (``TokenIssuer.mint`` does not count
    as a token request, so seeding leaves the issuer's counters alone). ``mount_from`` names a
    repository that already holds the blobs: they are cross-mounted instead of uploaded.
    """
    dest_tag = tag or image.tag
    request_headers = dict(headers or {})
    # No HEAD probe first: in a fresh repository it always misses, and re-uploading an existing
    # blob is harmless, so skipping it saves a round trip per blob.
    for digest, content in image.blobs.items():
        params = {"mount": digest, "from": mount_from} if mount_from else None
        start = client.post(
            f"/v2/{repository}/blobs/uploads/", params=params, headers=request_headers
        )
        if start.status_code == 201:
            continue  # mounted
        _expect(start, 202, f"start blob upload to {repository}")
        # The Location carries upload state (``_state=``) in its query: add to it, not replace.
        location = httpx.URL(start.headers["Location"]).copy_add_param("digest", digest)
        put = client.put(
            location,
            content=content,
            headers={**request_headers, "Content-Type": "application/octet-stream"},
        )
        _expect(put, 201, f"upload blob {digest} to {repository}")
    manifest = client.put(
        f"/v2/{repository}/manifests/{dest_tag}",
        content=image.manifest,
        headers={**request_headers, "Content-Type": image.media_type},
    )
    _expect(manifest, 201, f"put manifest {repository}:{dest_tag}")
    digest = manifest.headers.get("Docker-Content-Digest")
    if digest != image.manifest_digest:
        raise PeerError(
            f"registry stored {repository}:{dest_tag} as {digest}, expected {image.manifest_digest}"
        )
    host = client.base_url.netloc.decode()
    return PushedImage(host, repository, dest_tag, image.manifest_digest, image.media_type)


def seed_repositories(
    base_url: str,
    image: OCIImage,
    repositories: Iterable[str],
    *,
    tag: str | None = None,
    headers: Mapping[str, str] | Callable[[str], Mapping[str, str]] | None = None,
    auth: tuple[str, str] | None = None,
    mount: bool = False,
    workers: int = 8,
) -> list[PushedImage]:
    """Push ``image`` into each repository concurrently (threads); return them in input order.

    ``headers`` may be a function of the repository name, so token registries can get one
    minted token per repository. With ``mount=True`` the first repository's blobs are uploaded
    and the others cross-mount them (as real clients dedupe layers); a token then also needs
    ``pull`` on the first repository, which is why it is off by default. 100 repositories take
    about a second either way.
    """
    names = list(repositories)
    if not names:
        return []

    def headers_for(repository: str) -> Mapping[str, str]:
        if callable(headers):
            return headers(repository)
        return headers or {}

    with httpx.Client(base_url=base_url, auth=auth, timeout=30.0, trust_env=False) as client:
        first = push_image_http(client, image, names[0], tag=tag, headers=headers_for(names[0]))

        def push(repository: str) -> PushedImage:
            return push_image_http(
                client,
                image,
                repository,
                tag=tag,
                headers=headers_for(repository),
                mount_from=names[0] if mount else None,
            )

        with ThreadPoolExecutor(max_workers=workers) as pool:
            rest = list(pool.map(push, names[1:]))
    return [first, *rest]


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise PeerError(
            f"{what}: expected HTTP {status}, got {response.status_code}: {response.text[:500]}"
        )
