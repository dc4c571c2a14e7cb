"""Sentinel: leasegate on a primary + replica watched by three sentinels (real processes),
through a ``redis+sentinel://`` URL; durable writes (WAIT) with LEASEGATE_MIN_REPLICAS."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from leasegate.broker import Client, Settings
from leasegate.ownership import (
    Durability,
    LeaseHeld,
    NotDurable,
    Registry,
    RegistryUnavailable,
    RunState,
    Scripts,
    confirm,
    connect,
)
from leasegate.testing.redis_sentinel import SentinelGroup
from tests.support.helpers import wait_until

pytestmark = pytest.mark.faults

SECRET = b"sentinel-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def started_group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as started:
        yield started


@pytest.fixture
def group(started_group: SentinelGroup) -> SentinelGroup:
    """The module's group, its replica caught up (a test before may have paused it)."""
    caught_up(started_group)
    return started_group


@pytest.fixture
def namespace() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


def caught_up(group: SentinelGroup) -> None:
    """Block until the replica acknowledges everything the primary wrote (after a pause)."""
    primary = connect(group.url)

    def confirmed() -> bool:
        try:
            confirm(primary, Durability(1, 200))  # a barrier write, then WAIT for it
        except NotDurable:
            return False
        return True

    wait_until(confirmed, 30, message="the replica to catch up")


def durable_client(url: str, namespace: str, replicas: int = 1) -> Client:
    return Client(connect(url), namespace, secret=SECRET,
                  settings=Settings(min_replicas=replicas, min_replicas_timeout_ms=300))


@pytest.mark.parametrize(("url", "names"), [
    ("redis+sentinel:///mymaster", "no sentinel host:port"),
    ("redis+sentinel://127.0.0.1:26379", "no service"),
    ("redis+sentinel://127.0.0.1:26379/", "no service"),
    ("redis+sentinel://127.0.0.1:port/mymaster", "port 'port'"),
    ("redis+sentinel://127.0.0.1:70000/mymaster", "port '70000'"),
    ("redis+sentinel://127.0.0.1:26379/mymaster/zero", "database 'zero'"),
    ("redis+sentinel://127.0.0.1:26379/mymaster?db=1", "no query"),
])
def test_a_bad_sentinel_url_is_refused_naming_what_is_wrong(url: str, names: str) -> None:
    with pytest.raises(ValueError, match=names) as refused:
        connect(url)
    assert "redis+sentinel://" in str(refused.value) or "port" in names


def test_a_sentinel_url_keeps_the_plain_urls_timeouts_and_retries(group: SentinelGroup) -> None:
    client = connect(group.url.replace("://", "://:secret-pw@"), socket_timeout=7.0)
    plain = connect("redis://127.0.0.1:1/0", socket_timeout=7.0)
    kwargs = client.connection_pool.connection_kwargs
    expected = plain.connection_pool.connection_kwargs
    for name in ("socket_timeout", "socket_connect_timeout", "retry_on_error"):
        assert kwargs[name] == expected[name], name
    assert kwargs["retry"].get_retries() == expected["retry"].get_retries() == 3
    assert kwargs["password"] == "secret-pw"  # the primary's, not the sentinels'


def test_registry_and_gate_run_through_the_sentinels(group: SentinelGroup,
                                                     namespace: str) -> None:
    registry = Registry.from_url(group.url, namespace)
    lease = registry.acquire("agent:s1", ttl=30, policy="exclusive")
    with pytest.raises(LeaseHeld):
        registry.acquire("agent:s1", ttl=30, policy="exclusive")
    assert registry.renew(lease).fence == lease.fence
    assert registry.release(lease).state is RunState.RELEASED

    client = Client.from_url(group.url, namespace, secret=SECRET)
    run = client.start_run("agent:s2", "draw a cat")
    verdict = client.gate.deliver(run.envelope("image_generate"), {"url": "cat.png"})
    assert verdict.delivered and [e.kind for e in run.inbox.entries()] == ["prompt", "result"]
    client.registry.release(run.lease)
    late = client.gate.deliver(run.envelope("image_generate"), {"url": "late.png"})
    assert not late.delivered and late.reason == "run_released"


def test_durable_writes_wait_for_a_replica(group: SentinelGroup, namespace: str) -> None:
    client = durable_client(group.url, namespace)
    run = client.start_run("agent:w1", "draw a cat")
    assert client.scripts.is_durable("deliver") and not client.scripts.is_durable("check")
    assert client.gate.deliver(run.envelope("image_generate"), {"url": "a.png"}).delivered
    assert group.replica is not None
    memo_count = group.replica.client().dbsize()
    assert memo_count > 0  # what WAIT confirmed is on the replica already
    # more replicas than there are: every durable write says so, naming both numbers
    greedy = durable_client(group.url, namespace, replicas=2)
    with pytest.raises(NotDurable, match="1 of the 2 replicas") as refused:
        greedy.start_run("agent:w2", "draw a dog", run_id="r-greedy")
    assert (refused.value.acked, refused.value.wanted) == (1, 2)
    assert isinstance(refused.value, RegistryUnavailable)


def test_start_run_returns_only_once_its_lease_is_on_a_replica(group: SentinelGroup,
                                                               namespace: str) -> None:
    client = durable_client(group.url, namespace)
    group.pause_replica()
    try:
        with pytest.raises(NotDurable) as refused:
            client.start_run("agent:p1", "draw a cat", run_id="r-paused")
        assert refused.value.acked == 0
        # it reached the primary: a plain reader sees it, the replica (paused) does not
        assert client.registry.status("agent:p1", "r-paused").state is RunState.LIVE
        with pytest.raises(NotDurable):  # the same call again: still not confirmed
            client.start_run("agent:p1", "draw a cat", run_id="r-paused")
    finally:
        group.resume_replica()
    caught_up(group)
    run = client.start_run("agent:p1", "draw a cat", run_id="r-paused")  # the same call
    assert run.run_id == "r-paused" and run.fence == 1
    assert [e.kind for e in run.inbox.entries()] == ["prompt"]  # one prompt, not two
    # a different caller with the same run id is told plainly
    other = durable_client(group.url, namespace)
    with pytest.raises(ValueError, match="already used"):
        other.start_run("agent:p1", "draw a cat", run_id="r-paused")


def test_a_verdict_not_on_a_replica_is_not_confirmed_and_its_repeat_is(
        group: SentinelGroup, namespace: str) -> None:
    client = durable_client(group.url, namespace)
    run = client.start_run("agent:v1", "draw a cat")
    env = run.envelope("image_generate")
    group.pause_replica()
    try:
        with pytest.raises(NotDurable):
            client.gate.deliver(env, {"url": "a.png"})
        with pytest.raises(NotDurable):  # a redelivered message: the memo answers, unconfirmed
            client.gate.check(env)
    finally:
        group.resume_replica()
    caught_up(group)
    admission = client.gate.check(env)  # now the first verdict is on the replica
    assert admission.repeat and admission.reason == "delivered"
    again = client.gate.deliver(env, {"url": "b.png"})
    assert again.delivered and again.repeat
    assert [e.kind for e in run.inbox.entries()] == ["prompt", "result"]  # exactly one verdict


def test_without_min_replicas_nothing_waits(group: SentinelGroup, namespace: str) -> None:
    client = durable_client(group.url, namespace, replicas=0)
    group.pause_replica()
    try:
        run = client.start_run("agent:n1", "draw a cat")
        assert client.gate.deliver(run.envelope("image_generate"), {"url": "a"}).delivered
    finally:
        group.resume_replica()


def test_durability_settings_are_checked_by_name() -> None:
    with pytest.raises(ValueError, match="LEASEGATE_MIN_REPLICAS must be"):
        Durability.from_env({"LEASEGATE_MIN_REPLICAS": "-1"})
    with pytest.raises(ValueError, match="LEASEGATE_MIN_REPLICAS_TIMEOUT='soon'"):
        Durability.from_env({"LEASEGATE_MIN_REPLICAS_TIMEOUT": "soon"})
    with pytest.raises(ValueError, match="min_replicas must be"):
        Settings(min_replicas=-1)
    assert Settings.from_env({"LEASEGATE_MIN_REPLICAS": "2"}).durability == Durability(2, 1000)


def test_a_failover_keeps_what_was_confirmed_and_clients_carry_on(namespace: str) -> None:
    with SentinelGroup() as fresh:
        client = durable_client(fresh.url, namespace)
        run = client.start_run("agent:f1", "draw a cat")   # on the replica when it returned
        old = fresh.primary_port()
        fresh.kill_primary()
        fresh.wait_failover(old)
        # the same clients, through the sentinels, now talk to the promoted replica
        status = client.registry.status(run.lease)
        assert status.state is RunState.LIVE and status.fence == run.fence
        env = run.envelope("image_generate")
        with pytest.raises(NotDurable):  # no replica left: durable writes say so
            client.gate.deliver(env, {"url": "a.png"})
        relaxed = durable_client(fresh.url, namespace, replicas=0)
        verdict = relaxed.gate.deliver(env, {"url": "b.png"})
        assert verdict.delivered and verdict.repeat  # written, only never confirmed
        assert [e.kind for e in run.inbox.entries()] == ["prompt", "result"]
        assert relaxed.start_run("agent:f1", "next").fence == run.fence + 1


def test_connect_to_sentinels_that_are_away_is_registry_unavailable() -> None:
    registry = Registry.from_url("redis+sentinel://127.0.0.1:1/mymaster", "x")
    with pytest.raises(RegistryUnavailable):
        registry.acquire("agent:x")
    assert issubclass(NotDurable, RegistryUnavailable)


def test_not_durable_survives_pickling_as_prefork_workers_send_it() -> None:
    error = pickle.loads(pickle.dumps(NotDurable(0, 1, 200, "the verdict of callback c")))
    assert (error.acked, error.wanted, error.timeout_ms) == (0, 1, 200)
    assert str(error).startswith("the verdict of callback c reached 0 of the 1 replicas")



def test_only_scripts_marked_durable_wait(redis_client: redis.Redis, tmp_path: Path) -> None:
    (tmp_path / "write-1.lua").write_text(
        "--[[\n  KEYS[1] key\n]]\n-- @durable: confirmed\nreturn redis.call('INCR', KEYS[1])\n")
    (tmp_path / "read-1.lua").write_text(
        "--[[\n  KEYS[1] key\n]]\nreturn redis.call('GET', KEYS[1])\n")
    key = f"t{uuid.uuid4().hex}"
    scripts = Scripts(redis_client, tmp_path, durability=Durability(1, 50))
    assert scripts.is_durable("write") and not scripts.is_durable("read")
    redis_client.script_flush()  # the first durable call loads its script itself
    with pytest.raises(NotDurable, match="0 of the 1 replicas"):  # this server has none
        scripts("write", [key], [])
    assert scripts("read", [key], []) == b"1"  # written on the primary, never waited for
    plain = Scripts(redis_client, tmp_path)
    assert plain("write", [key], []) == 2
