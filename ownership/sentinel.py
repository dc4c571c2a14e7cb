"""The ``redis+sentinel://`` URL: where the sentinels are and which primary they watch, and the
client that follows that primary. ``rediss+sentinel://`` is the same over TLS, to the sentinels
and to the primary alike, with the ``LEASEGATE_REDIS_TLS_*`` files.

``redis[s]+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from .tls import redis_tls_options

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_TLS_SCHEME = "rediss+sentinel"
DEFAULT_SENTINEL_PORT = 26379
FORM = (f"{SENTINEL_SCHEME}://[[user]:password@]host:port[,host:port...]/service_name[/db] "
        f"({SENTINEL_TLS_SCHEME}:// over TLS)")


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0] in (SENTINEL_SCHEME, SENTINEL_TLS_SCHEME)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The parts of a sentinel URL; ValueError naming what is wrong (never the password)."""
    scheme, found, rest = url.partition("://")
    if not found or scheme not in (SENTINEL_SCHEME, SENTINEL_TLS_SCHEME):
        raise ValueError(f"a sentinel URL starts with {SENTINEL_SCHEME}:// or "
                         f"{SENTINEL_TLS_SCHEME}://; expected {FORM}")
    if "?" in rest or "#" in rest:
        raise ValueError(f"a sentinel URL takes no query or fragment; expected {FORM}")
    credentials, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    username = password = None
    if credentials:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = [_host_port(item) for item in hosts.split(",")] if hosts else []
    if not sentinels:
        raise ValueError(f"sentinel URL names no sentinel host:port; expected {FORM}")
    service, _, db_text = path.partition("/")
    service = unquote(service)
    if not service:
        raise ValueError(f"sentinel URL names no service (the sentinels' master name); "
                         f"expected {FORM}")
    db = 0
    if db_text:
        if not db_text.isdigit():
            raise ValueError(f"sentinel URL database {db_text!r} is not a number; "
                             f"expected {FORM}")
        db = int(db_text)
    return SentinelTarget(sentinels, service, db, username, password,
                          tls=scheme == SENTINEL_TLS_SCHEME)


def _host_port(item: str) -> tuple[str, int]:
    host, colon, port = item.strip().rpartition(":")
    if not colon:
        host, port = item.strip(), str(DEFAULT_SENTINEL_PORT)
    host = host.strip("[]")  # an IPv6 address in brackets
    if not host:
        raise ValueError(f"sentinel URL has an empty host in {item!r}; expected {FORM}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sentinel URL port {port!r} of {item!r} is not a port number "
                         f"(1-65535)")
    return host, int(port)


def sentinel_tls_options(target: SentinelTarget) -> dict[str, Any]:
    """For a ``rediss+sentinel://`` target, the options of the sentinels' and the primary's
    connections: TLS with the LEASEGATE_REDIS_TLS_* files; none for ``redis+sentinel://``."""
    return {"ssl": True, **redis_tls_options()} if target.tls else {}


def sentinel_client(url: str, policy: dict[str, Any], options: dict[str, Any]) -> redis.Redis:
    """The primary the sentinels name for the URL's service, asked again after a failover.
    ``policy`` (timeouts, retries) and ``options`` are the primary's connections'; the
    sentinels get one try each (discovery moves on to the next), and, over TLS, the same
    files as the primary (``options``' own ``ssl_*`` win for the primary)."""
    target = parse_sentinel_url(url)
    tls = sentinel_tls_options(target)
    sentinel: Any = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        target.sentinels, sentinel_kwargs={"socket_timeout": 2.0, "socket_connect_timeout": 2,
                                           "retry": Retry(NoBackoff(), 0), **tls})
    client: redis.Redis = sentinel.master_for(
        target.service, db=target.db, username=target.username, password=target.password,
        **policy, **{**tls, **options})
    return client
