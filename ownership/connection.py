"""Talking to Redis: the client leasegate uses, its failure mode, and reading its replies.

Every layer above reaches Redis through these, so an outage means the same thing everywhere:
``RegistryUnavailable``, never a guess.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from .errors import RegistryUnavailable
from .sentinel import is_sentinel, sentinel_client
from .tls import explain_tls_failure, is_tls, redis_tls_options

MAX_WAIT_SLICE = 5.0   # seconds one server-side blocking call may last, at most


def connect(url: str, socket_timeout: float = 30.0, **options: Any) -> redis.Redis:
    """A client that gives up within about a second when Redis is away (redis-py 8 would
    retry for seconds, longer than a short lease), and reconnects once it is back.
    ``options`` go to ``redis.Redis.from_url`` as they are (``client_name``, ...).

    ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``: the
    primary the sentinels name for ``service``, asked again after every failover; the
    password is the primary's (the sentinels' own connections carry only the timeouts).
    ``rediss+sentinel://``: the same, over TLS to the sentinels and the primary.

    ``rediss://``: TLS with the ``LEASEGATE_REDIS_TLS_*`` files (ownership/tls.py), unless
    ``options`` name their own ``ssl_*``.

    ``redis://`` or ``rediss://`` of any node of a Redis Cluster: a ``redis.RedisCluster``
    (typed as ``redis.Redis``: leasegate uses the commands both have)."""
    policy: dict[str, Any] = dict(
        socket_timeout=socket_timeout, socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), 3),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError])
    if is_sentinel(url):
        return sentinel_client(url, policy, options)
    if is_tls(url):
        options = {**redis_tls_options(), **options}
    # one quick question, no retries: a node that does not answer now counts as standalone
    with redis.Redis.from_url(url, **{**options, "socket_timeout": 2, "socket_connect_timeout": 2,
                                      "retry": Retry(NoBackoff(), 0)}) as probe:
        clustered = is_cluster(probe)
    if not clustered:
        return redis.Redis.from_url(url, **policy, **options)
    # any node's URL: the cluster client learns the others from it (CLUSTER SLOTS) and follows
    # MOVED/ASK; each script names keys of one slot (ownership/keys.py), so it runs on one node
    cluster: Any = redis.RedisCluster.from_url(url, **policy, **options)
    return cluster  # type: ignore[no-any-return]


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is, or talks to a node of, a Redis Cluster. A node that cannot be
    asked now (down, or INFO refused by ACL) counts as standalone: cluster mode is decided when
    the client is made, so make clients once the cluster is up."""
    if isinstance(client, redis.RedisCluster):
        return True
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except redis.exceptions.RedisError:
        return False


def one_node_info(client: Any, section: str) -> dict[str, Any]:
    """INFO ``section`` of the server, or of one node of a cluster (they run one version)."""
    if isinstance(client, redis.RedisCluster):
        client = client.get_redis_connection(client.get_default_node())  # type: ignore[no-untyped-call]
    info: dict[str, Any] = client.info(section)
    return info


def wait_slice(client: redis.Redis) -> float:
    """How long one blocking call (BLMOVE, XREAD BLOCK) may wait on the server with
    ``client``: a quarter of its socket timeout, at most MAX_WAIT_SLICE. A longer wait is
    several such calls, so the socket timeout never fires while Redis is only waiting (a
    client timeout would drop the connection, and what it popped with it)."""
    kwargs = (client.get_connection_kwargs() if isinstance(client, redis.RedisCluster)
              else client.connection_pool.connection_kwargs)
    timeout = kwargs.get("socket_timeout")
    if not timeout:
        return MAX_WAIT_SLICE
    return min(MAX_WAIT_SLICE, float(timeout) / 4)


@contextlib.contextmanager
def unavailable_as_error() -> Iterator[None]:
    """Turn 'Redis did not answer' into RegistryUnavailable: cannot tell is never 'live'."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
            redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError,
            # a Redis Cluster mid-failover (CLUSTERDOWN, TRYAGAIN, a slot with no live primary
            # yet): the command was refused, not run
            redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
            redis.exceptions.ClusterError, redis.exceptions.SlotNotCoveredError) as exc:
        raise RegistryUnavailable(f"Redis is unavailable: {explain_tls_failure(str(exc))}") \
            from exc


def as_text(value: Any) -> str:
    """A reply item as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def server_time_ms(client: redis.Redis) -> int:
    """Redis server time in ms: the clock every deadline and expiry is counted on."""
    with unavailable_as_error():
        seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def glob_escape(text: str) -> str:
    """``text`` matched literally by a SCAN MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
