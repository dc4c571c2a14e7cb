"""The ``redis+sentinel://`` URL: where the sentinels are and which primary they watch.

``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
FORM = f"{SENTINEL_SCHEME}://[[user]:password@]host:port[,host:port...]/service_name[/db]"


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The parts of a sentinel URL; ValueError naming what is wrong (never the password)."""
    prefix = SENTINEL_SCHEME + "://"
    if not url.startswith(prefix):
        raise ValueError(f"a sentinel URL starts with {prefix}; expected {FORM}")
    rest = url[len(prefix):]
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
    return SentinelTarget(sentinels, service, db, username, password)


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
