"""The asyncio twin of ``connect``: the same URL, engine and TLS files, for code that streams
(the gateway's Server-Sent Events block on XREAD without holding a thread each)."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel

from .sentinel import is_sentinel, parse_sentinel_url, sentinel_tls_options
from .tls import is_tls, redis_tls_options


def connect_async(url: str, like: Any, **options: Any) -> aioredis.Redis:
    """An asyncio client of what ``like`` (the process's ``connect(url)`` client) talks to:
    the primary the sentinels name, the whole cluster, or the one server. ``options`` go to
    the client as they are (timeouts, ``max_connections``)."""
    if is_sentinel(url):
        target = parse_sentinel_url(url)
        tls = sentinel_tls_options(target)
        sentinel: Any = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            target.sentinels, sentinel_kwargs={"socket_timeout": 2.0, **tls})
        primary: aioredis.Redis = sentinel.master_for(
            target.service, db=target.db, username=target.username, password=target.password,
            **{**tls, **options})
        return primary
    if is_tls(url):
        options = {**redis_tls_options(), **options}
    if isinstance(like, redis.RedisCluster):
        options.pop("max_connections", None)  # per node in a cluster: its own default
        cluster: Any = aioredis.RedisCluster.from_url(url, **options)
        return cluster  # type: ignore[no-any-return]
    return aioredis.Redis.from_url(url, **options)
