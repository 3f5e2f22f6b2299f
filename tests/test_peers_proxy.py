"""The proxy and object-store peers do what the client tests rely on (checked with plain httpx)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest

from .peers.blob_store import BlobStore
from .peers.proxy import ForwardProxy
from .peers.registry import RegistryServer


def test_tinyproxy_forwards_and_logs_each_request(
    tmp_path: Path, open_registry: RegistryServer
) -> None:
    with ForwardProxy(tmp_path) as proxy:
        pid = proxy.pid
        mark = proxy.mark()
        with httpx.Client(proxy=proxy.url, trust_env=False) as client:
            assert client.get(f"{open_registry.url}/v2/").status_code == 200
            assert client.get(f"{open_registry.url}/v2/_catalog").status_code == 200
        assert proxy.requests_since(mark) == [
            f"GET {open_registry.url}/v2/",
            f"GET {open_registry.url}/v2/_catalog",
        ]
        assert proxy.requests_since(proxy.mark()) == []
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_tinyproxy_with_basic_auth_demands_credentials(
    tmp_path: Path, open_registry: RegistryServer
) -> None:
    with ForwardProxy(tmp_path, basic_auth=("u", "p-secret")) as proxy:
        url = f"{open_registry.url}/v2/"
        assert httpx.get(url, proxy=proxy.url, trust_env=False).status_code == 407
        with_credentials = proxy.url_with_credentials("u", "p-secret")
        assert httpx.get(url, proxy=with_credentials, trust_env=False).status_code == 200


def test_blob_store_is_strict(tmp_path: Path) -> None:
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "root" / "a" / "data").write_bytes(b"blob")
    (tmp_path / "secret").write_text("outside the root")
    with BlobStore(tmp_path / "root") as store:
        assert httpx.get(f"{store.url}/a/data").content == b"blob"
        assert httpx.head(f"{store.url}/a/data").headers["Content-Length"] == "4"
        assert httpx.get(f"{store.url}/missing").status_code == 404
        port = int(store.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"GET /../secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.0 404")
        chunked = httpx.Request("GET", f"{store.url}/a/data", content=iter([b""]))
        with httpx.Client() as client:
            refused = client.send(chunked)
        assert refused.status_code == 400
        assert refused.text == "a GET must not carry a body"
        assert [r.method for r in store.requests] == ["GET", "HEAD", "GET", "GET", "GET"]
