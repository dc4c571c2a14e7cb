"""Durable writes: a write is confirmed only once N replicas acknowledged it (Redis WAIT).

WAIT counts what the connection it runs on wrote, so it must follow the write on the same
connection: a non-transactional pipeline of the script, a barrier and WAIT holds one. The
barrier (a PUBLISH, which a primary always replicates) makes WAIT cover everything the primary
wrote before it, a verdict an earlier call wrote included: a repeat that writes nothing (the
memo answers) is only confirmed once that first verdict reached the replicas.

Not strong consistency: replication stays asynchronous, and a failover still loses what no
WAIT covered yet (docs/failure-modes.md says what it buys).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from .connection import unavailable_as_error
from .errors import RegistryUnavailable

BARRIER_CHANNEL = "leasegate:durability-barrier"
DEFAULT_TIMEOUT_MS = 1000
MAX_REPLICAS = 100
MAX_TIMEOUT_MS = 60_000


class NotDurable(RegistryUnavailable):
    """A write reached the primary but fewer than ``wanted`` replicas within the timeout.

    Like any RegistryUnavailable nothing may be taken as decided: a worker leaves its message
    unacknowledged (the redelivered message finds the memo), a runtime retries its call."""

    def __init__(self, acked: int, wanted: int, timeout_ms: int, what: str = "a write") -> None:
        self.acked = acked
        self.wanted = wanted
        self.timeout_ms = timeout_ms
        self.what = what
        super().__init__(f"{what} reached {acked} of the {wanted} replicas "
                         f"LEASEGATE_MIN_REPLICAS asks for within {timeout_ms} ms")

    def __reduce__(self) -> tuple[Any, ...]:
        # a prefork child hands it to its parent pickled (Celery's Reject carries it)
        return (NotDurable, (self.acked, self.wanted, self.timeout_ms, self.what))


@dataclass(frozen=True)
class Durability:
    """How many replicas (``replicas``) must acknowledge a write within ``timeout_ms``."""

    replicas: int = 0
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    def __post_init__(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) \
                or not 0 <= self.replicas <= MAX_REPLICAS:
            raise ValueError(f"min_replicas must be an integer from 0 to {MAX_REPLICAS}, "
                             f"got {self.replicas!r}")
        if isinstance(self.timeout_ms, bool) or not isinstance(self.timeout_ms, int) \
                or not 1 <= self.timeout_ms <= MAX_TIMEOUT_MS:
            raise ValueError(f"min_replicas_timeout_ms must be an integer from 1 to "
                             f"{MAX_TIMEOUT_MS} ms, got {self.timeout_ms!r}")

    @property
    def enabled(self) -> bool:
        return self.replicas > 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Durability:
        """From LEASEGATE_MIN_REPLICAS and LEASEGATE_MIN_REPLICAS_TIMEOUT (ms)."""
        return cls(_integer(env, "LEASEGATE_MIN_REPLICAS", 0, 0, MAX_REPLICAS),
                   _integer(env, "LEASEGATE_MIN_REPLICAS_TIMEOUT", DEFAULT_TIMEOUT_MS, 1,
                            MAX_TIMEOUT_MS))


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {raw}")
    return value


def durable_call(client: redis.Redis, durability: Durability, script: Any, keys: list[str],
                 args: list[Any]) -> Any:
    """Run ``script`` (a redis-py Script), then barrier and WAIT on the same connection; its
    reply, or NotDurable when fewer replicas than wanted acknowledged it."""
    client, cluster = on_primary(client, keys[0] if keys else None)
    for attempt in range(2):
        pipe: Any
        with refreshed_on_move(cluster), client.pipeline(transaction=False) as pipe:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            pipe.execute_command("PUBLISH", BARRIER_CHANNEL, "")
            pipe.execute_command("WAIT", durability.replicas, durability.timeout_ms)
            try:
                reply, _, acked = pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                client.script_load(script.script)  # first call on this server (or a new one)
                continue
        check_acked(int(acked), durability)
        return reply
    raise AssertionError("unreachable")


def confirm(client: redis.Redis, durability: Durability, what: str = "a write",
            key: str | None = None) -> None:
    """Return once everything the primary wrote so far reached the wanted replicas (a repeat
    answered from a memo: confirm the first verdict before acknowledging); NotDurable if not.
    On a Redis Cluster, the primary of ``key``'s slot (required there)."""
    if not durability.enabled:
        return
    client, cluster = on_primary(client, key)
    pipe: Any
    with unavailable_as_error(), refreshed_on_move(cluster), \
            client.pipeline(transaction=False) as pipe:
        pipe.execute_command("PUBLISH", BARRIER_CHANNEL, "")
        pipe.execute_command("WAIT", durability.replicas, durability.timeout_ms)
        _, acked = pipe.execute()
    check_acked(int(acked), durability, what)


def check_acked(acked: int, durability: Durability, what: str = "a write") -> None:
    if acked < durability.replicas:
        raise NotDurable(acked, durability.replicas, durability.timeout_ms, what)



# On a Redis Cluster the script and its WAIT must share one connection: the primary's of the
# slot, reached directly (a cluster client would route the keyless PUBLISH and WAIT anywhere).
def on_primary(client: Any, key: str | None) -> tuple[Any, Any]:
    """(the client to run on, the cluster client it came from or None)."""
    if not isinstance(client, redis.RedisCluster):
        return client, None
    if key is None:
        raise ValueError("on a Redis Cluster a durable write names its key (to find its primary)")
    node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
    return client.get_redis_connection(node), client


@contextlib.contextmanager
def refreshed_on_move(cluster: Any) -> Iterator[None]:
    """A primary gone or its slots moved (a failover): refresh the cluster's slot map, then
    fail as unavailable; the caller's retry reaches the new primary."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.MovedError) as exc:
        if cluster is None:
            raise
        cluster.nodes_manager.initialize()
        raise redis.exceptions.ConnectionError(f"the cluster moved on: {exc}") from exc
