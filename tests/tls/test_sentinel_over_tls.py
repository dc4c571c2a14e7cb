"""Sentinel over TLS: a TLS-only primary, replica and three sentinels (replication and the
sentinels' links on TLS too), reached through ``rediss+sentinel://`` with the
LEASEGATE_REDIS_TLS_* files; an acquire/deliver round, then a failover the client follows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.sentinel

from leasegate.broker import Client
from leasegate.ownership import (
    Durability,
    LeaseHeld,
    Registry,
    RegistryUnavailable,
    RunState,
    confirm,
    connect,
)
from leasegate.ownership.sentinel import parse_sentinel_url
from leasegate.testing.redis_sentinel import SentinelGroup
from leasegate.testing.redis_server import RedisTls

pytestmark = pytest.mark.faults

SECRET = b"sentinel-tls-secret-0123456789ab"


@pytest.fixture(scope="module")
def group(redis_binary: str, redis_tls: RedisTls,
          tls_environment: dict[str, str]) -> Iterator[SentinelGroup]:
    with SentinelGroup(redis_binary, tls=redis_tls) as started:
        yield started


def test_the_tls_scheme_is_read_and_the_plain_one_stays_clear() -> None:
    assert parse_sentinel_url("rediss+sentinel://h:1,h:2/mymaster/3").tls
    plain = parse_sentinel_url("redis+sentinel://h:1/mymaster")
    assert not plain.tls and plain.sentinels == [("h", 1)]


def test_registry_and_gate_run_through_tls_sentinels(group: SentinelGroup,
                                                     namespace: str) -> None:
    assert group.url.startswith("rediss+sentinel://")
    client = connect(group.url)
    assert client.connection_pool.connection_class is \
        redis.sentinel.SentinelManagedSSLConnection  # the primary's connections are TLS
    registry = Registry(client, namespace)
    lease = registry.acquire("agent:t1", ttl=30, policy="exclusive")
    with pytest.raises(LeaseHeld):
        registry.acquire("agent:t1", ttl=30, policy="exclusive")
    assert registry.release(lease).state is RunState.RELEASED

    runtime = Client.from_url(group.url, namespace, secret=SECRET)
    run = runtime.start_run("agent:t2", "draw a cat")
    verdict = runtime.gate.deliver(run.envelope("image_generate"), {"url": "cat.png"})
    assert verdict.delivered and [e.kind for e in run.inbox.entries()] == ["prompt", "result"]


def test_the_sentinels_refuse_clear_text(group: SentinelGroup, namespace: str) -> None:
    clear = group.url.replace("rediss+sentinel://", "redis+sentinel://")
    with pytest.raises(RegistryUnavailable):
        Registry.from_url(clear, namespace).status("agent:t3", "run-1")


def test_a_failover_over_tls_is_followed_by_the_same_client(group: SentinelGroup,
                                                            namespace: str) -> None:
    """Last in the module: it kills the group's primary."""
    client = Client.from_url(group.url, namespace, secret=SECRET)
    run = client.start_run("agent:f1", "draw a cat")
    confirm(client.registry.client, Durability(1, 5000))  # the run is on the replica
    old = group.primary_port()
    group.kill_primary()
    new = group.wait_failover(old)
    assert new != old
    status = client.registry.status(run.lease)  # the same client, now on the promoted replica
    assert status.state is RunState.LIVE and status.fence == run.fence
    verdict = client.gate.deliver(run.envelope("image_generate"), {"url": "after.png"})
    assert verdict.delivered
    assert [e.kind for e in run.inbox.entries()] == ["prompt", "result"]
    assert client.start_run("agent:f1", "next").fence == run.fence + 1
