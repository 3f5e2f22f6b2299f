"""Where a Redis token store is: ``redis://``, ``rediss://`` and their ``+cluster`` and
``+sentinel`` forms.

``[scheme]://[user[:password]@]host[:port][,host[:port]...][/db][?option=value&...]``
``[scheme]+sentinel://[user[:password]@]host[:port][,host[:port]...]/SERVICE[/db][?...]``

* ``redis`` / ``rediss`` (TLS): one server; ``redis+cluster`` / ``rediss+cluster``: a Redis
  Cluster, reached through any of the listed nodes (the rest are found from them);
  ``redis+sentinel`` / ``rediss+sentinel``: the master Redis Sentinel names ``SERVICE`` (the
  hosts are sentinels, port 26379 by default; the user and password are the master's, as in
  kombu and django-redis; TLS applies to the sentinels and the master alike).
* ``db``: a database number (servers only; a cluster has database 0 alone).
* options: ``namespace`` (prefix of every key), ``timeout`` (seconds per Redis call),
  ``lease`` (seconds a fetching process holds the fleet's lease), ``ca_file`` (PEM file of the
  CAs that sign the server's certificate; TLS only).

The parser is strict and pure: anything else is a :class:`~asyncauth.ConfigError` naming the
variable (or argument) and the part at fault, and no message ever shows the password.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

from .._errors import ConfigError

DEFAULT_PORT: Final = 6379
SENTINEL_PORT: Final = 26379
_SCHEMES: Final = {
    "redis": (False, ""),
    "rediss": (True, ""),
    "redis+cluster": (False, "cluster"),
    "rediss+cluster": (True, "cluster"),
    "redis+sentinel": (False, "sentinel"),
    "rediss+sentinel": (True, "sentinel"),
}
_OPTIONS: Final = ("namespace", "timeout", "lease", "ca_file")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]{2,45}\]")
_SERVICE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
NAMESPACE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_SECONDS: Final = 3600.0


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A parsed store URL; ``str()`` is the URL without its password.

    ``service`` is the Sentinel service name (``None``: not Sentinel; then ``nodes`` are
    servers, not sentinels).
    """

    tls: bool
    cluster: bool
    nodes: tuple[tuple[str, int], ...]
    db: int = 0
    service: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    namespace: str | None = None
    timeout: float | None = None
    lease_time: float | None = None
    ca_file: str | None = None

    def __str__(self) -> str:
        kind = "+cluster" if self.cluster else "+sentinel" if self.service is not None else ""
        user = f"{self.username}@" if self.username else ""
        nodes = ",".join(f"{host}:{port}" for host, port in self.nodes)
        service = "" if self.service is None else f"{self.service}/"
        return f"{'rediss' if self.tls else 'redis'}{kind}://{user}{nodes}/{service}{self.db}"


def _fail(what: str, problem: str) -> ConfigError:
    return ConfigError(f"{what}: {problem}")


class _Shown:
    """Quotes parts of the URL in messages, but only parts after its last ``@``: a password
    with an unescaped ``/``, ``?`` or ``:`` ends up where a host or a port is expected."""

    def __init__(self, url: str) -> None:
        self._public = url.rpartition("@")[2]

    def __call__(self, part: str, instead: str) -> str:
        return repr(part) if part in self._public else instead


def _node(text: str, what: str, shown: _Shown, default_port: int) -> tuple[str, int]:
    if text.startswith("["):
        host, _, port_text = text.partition("]")
        host += "]"
        if port_text and not port_text.startswith(":"):
            raise _fail(what, f"{shown(text, 'a host')} is not host[:port]")
        port_text = port_text[1:]
        if not _IPV6.fullmatch(host):
            raise _fail(what, f"{shown(host, 'a host')} is not an IPv6 address")
    else:
        host, _, port_text = text.partition(":")
        if not _HOST.fullmatch(host):
            raise _fail(what, f"{shown(host, 'a host')} is not a host name or address")
    if port_text == "":
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()):
        # Not even digits: maybe a password whose '@' is missing; never quoted.
        raise _fail(what, "a port is not a number (a password goes before an '@')")
    if not 0 < int(port_text) < 65536:
        raise _fail(what, f"{shown(port_text, 'a port')} is not a port number from 1 to 65535")
    return host, int(port_text)


def _seconds(name: str, value: str, what: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= _MAX_SECONDS:
        raise _fail(what, f"option {name} must be seconds, above 0 and at most 3600")
    return seconds


def _options(query: str, what: str, shown: _Shown) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in query.split("&") if query else ():
        name, equals, value = item.partition("=")
        if name not in _OPTIONS:
            option = shown(name[:40], "an option") if name else "an empty option"
            raise _fail(what, f"unknown option {option} (known: {', '.join(_OPTIONS)})")
        value = unquote(value)
        if not equals or not value:
            raise _fail(what, f"option {name} has no value")
        if name in found:
            raise _fail(what, f"option {name} is given twice")
        found[name] = value
    return found


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    return unquote(user) or None, (unquote(password) or None) if colon else None


def _path(path: str, kind: str, what: str, shown: _Shown) -> tuple[str | None, int]:
    """The Sentinel service (``None`` for other kinds) and the database number in ``path``."""
    service = None
    if kind == "sentinel":
        service, _, path = path.partition("/")
        if not service:
            raise _fail(what, "names no Sentinel service: the path is /SERVICE[/db]")
        if not _SERVICE.fullmatch(service):
            name = shown(service, "the service")
            raise _fail(what, f"{name} is not a Sentinel service name (letters, digits, '_.-')")
    if not path:
        return service, 0
    if not (path.isascii() and path.isdigit()) or len(path) > 9:
        raise _fail(what, f"the path must be a database number, not {shown(path, 'that')}")
    if kind == "cluster" and int(path) != 0:
        raise _fail(what, "a Redis Cluster has database 0 only")
    return service, int(path)


def parse_redis_url(url: str, *, what: str) -> RedisURL:
    """Parse a store URL (see the module docs); ``what`` names it in errors."""
    scheme, separator, rest = url.strip().partition("://")
    if not separator or scheme.lower() not in _SCHEMES:
        raise _fail(what, f"must be a {', '.join(f'{s}://' for s in _SCHEMES)} URL")
    tls, kind = _SCHEMES[scheme.lower()]
    if "#" in rest:
        raise _fail(what, "a store URL has no #fragment")
    shown = _Shown(rest)
    location, _, query = rest.partition("?")
    userinfo, _, netloc = location.rpartition("@")
    netloc, _, path = netloc.partition("/")
    username, password = _credentials(userinfo)
    if not netloc:
        raise _fail(what, "names no host")
    port = SENTINEL_PORT if kind == "sentinel" else DEFAULT_PORT
    nodes = tuple(_node(part, what, shown, port) for part in netloc.split(","))
    if len(nodes) > 1 and not kind:
        raise _fail(what, f"several hosts need a {scheme}+cluster:// or +sentinel:// URL")
    service, db = _path(path, kind, what, shown)
    options = _options(query, what, shown)
    namespace = options.get("namespace")
    if namespace is not None and not NAMESPACE.fullmatch(namespace):
        raise _fail(what, "option namespace must be 1 to 64 letters, digits, '_', '.' or '-'")
    if "ca_file" in options and not tls:
        raise _fail(what, f"option ca_file needs TLS (rediss://), not {scheme}://")
    return RedisURL(
        tls=tls,
        cluster=kind == "cluster",
        nodes=nodes,
        db=db,
        service=service,
        username=username,
        password=password,
        namespace=namespace,
        timeout=_seconds("timeout", options["timeout"], what) if "timeout" in options else None,
        lease_time=_seconds("lease", options["lease"], what) if "lease" in options else None,
        ca_file=options.get("ca_file"),
    )
