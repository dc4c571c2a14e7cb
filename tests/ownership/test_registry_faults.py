"""Faults: a holder frozen by SIGSTOP, Redis restarted (AOF) or killed under the registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from leasegate.ownership import (
    Lease,
    LeaseHeld,
    LeaseLost,
    Registry,
    RegistryUnavailable,
    RunState,
)
from leasegate.testing.redis_server import RedisServer
from tests.support.helpers import server_time, wait_for_state, wait_until

pytestmark = pytest.mark.faults

SK = "job:fault-drill"

# -- a holder frozen by SIGSTOP ------------------------------------------------------------------

HOLDER_CHILD = """
import json, sys, time
import redis
from leasegate.ownership import LeaseLost, Registry

url, namespace, session_key, report = sys.argv[1:5]
client = redis.Redis.from_url(url)
registry = Registry(client, namespace)

def say(**event):
    client.rpush(report, json.dumps(event))

try:
    with registry.hold(session_key, ttl=0.5) as lease:
        say(event="ready", run_id=lease.run_id, fence=lease.fence)
        while True:
            try:
                renewed = registry.renew(lease)
            except LeaseLost as lost:
                say(event="lost", reason=lost.reason)
                break
            # server time at which the renew was decided
            say(event="ok", at=renewed.expires_at - renewed.ttl)
            time.sleep(0.1)  # the holder heartbeats at this pace, because a renewal loop needs one
except LeaseLost as lost:
    say(event="exit", reason=lost.reason)
else:
    say(event="exit", reason=None)
"""


def process_state(pid: int) -> str:
    """The state letter of a Linux process ('T' when stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


@pytest.fixture
def holder(redis_server: RedisServer, namespace: str) -> Iterator[dict[str, Any]]:
    """A child process holding SK in ``namespace``; it reports on a Redis list."""
    report = f"{namespace}:report"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER_CHILD, redis_server.url, namespace, SK, report],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        yield {"proc": proc, "report": report}
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        _, stderr = proc.communicate(timeout=10)
        if proc.returncode not in (0, -signal.SIGKILL):
            pytest.fail(f"holder child failed: {stderr.decode()}")


def next_report(client: redis.Redis, report: str) -> dict[str, Any]:
    popped = client.blpop([report], timeout=15)
    assert popped is not None, "the holder child reported nothing for 15 s"
    event: dict[str, Any] = json.loads(popped[1])
    return event


@pytest.mark.parametrize("variant", ["expired", "expired-then-new-run",
                                     "superseded-while-paused"])
def test_paused_holder_never_renews_again(holder: dict[str, Any], registry: Registry,
                                          redis_client: redis.Redis, variant: str) -> None:
    proc, report = holder["proc"], holder["report"]
    ready = next_report(redis_client, report)
    assert ready["event"] == "ready", ready
    run_id = ready["run_id"]
    # the renew loop runs: two successful beats
    for _ in range(2):
        assert next_report(redis_client, report)["event"] == "ok"

    os.kill(proc.pid, signal.SIGSTOP)
    wait_until(lambda: process_state(proc.pid) == "T", message="the holder to stop")
    stopped_at = server_time(redis_client)

    if variant == "superseded-while-paused":
        assert registry.status(SK, run_id).state is RunState.LIVE
        newer = registry.acquire(SK, ttl=30)
        assert newer.previous_run_id == run_id
        expected = "superseded"
    else:
        held = Lease(SK, run_id, ready["fence"], 0.0, 0.5)
        wait_for_state(registry, held, RunState.EXPIRED)
        expected = "expired"
        if variant == "expired-then-new-run":
            newer = registry.acquire(SK, ttl=30)
            # an expired run is not superseded: it stays expired, and is no one's predecessor
            assert newer.previous_run_id is None
            assert newer.fence == ready["fence"] + 1
            assert registry.status(SK, run_id).superseded_by is None

    os.kill(proc.pid, signal.SIGCONT)
    events = [next_report(redis_client, report)]
    while events[-1]["event"] != "exit":
        events.append(next_report(redis_client, report))
    assert proc.wait(timeout=10) == 0

    # a renew answered before the stop may be reported after it: nothing decided later succeeded
    oks = [e for e in events if e["event"] == "ok"]
    assert all(e["at"] <= stopped_at + 1e-6 for e in oks), (stopped_at, events)
    assert len(oks) <= 1, events
    assert events[-2:] == [{"event": "lost", "reason": expected},
                           {"event": "exit", "reason": expected}], events
    final = registry.status(SK, run_id)
    assert final.state.value == expected
    if variant != "expired":
        assert registry.status(newer).state is RunState.LIVE


# -- restarts with AOF ---------------------------------------------------------------------------


def quick_client(server: RedisServer) -> redis.Redis:
    """No retries: whatever works after a restart works because the pool reconnects."""
    return server.client(socket_connect_timeout=0.5, socket_timeout=2,
                         retry=Retry(NoBackoff(), 0))


def test_fences_survive_graceful_and_hard_restarts(fault_redis: RedisServer) -> None:
    client = quick_client(fault_redis)
    registry = Registry(client, "lg")
    runs = [registry.acquire(SK, ttl=30) for _ in range(3)]
    assert [lease.fence for lease in runs] == [1, 2, 3]

    fault_redis.restart()  # SIGTERM: the server flushes its AOF
    # same Registry, same client: redis-py's pool reconnects and the scripts are loaded again
    assert [registry.status(lease).state for lease in runs] == [
        RunState.SUPERSEDED, RunState.SUPERSEDED, RunState.LIVE]
    fourth = registry.acquire(SK, ttl=30)
    assert fourth.fence == 4
    assert fourth.previous_run_id == runs[2].run_id

    fault_redis.restart(hard=True)  # SIGKILL: appendfsync always lost nothing acknowledged
    assert registry.status(fourth).state is RunState.LIVE
    assert registry.status(runs[2]).superseded_by == fourth.run_id
    fifth = registry.acquire(SK, ttl=30)
    assert fifth.fence == 5
    assert fifth.previous_run_id == fourth.run_id
    with pytest.raises(LeaseLost) as caught:
        registry.renew(fourth)
    assert caught.value.reason == "superseded"
    assert client.ttl(registry.keys.fence(SK)) == -1
    client.close()


def test_killed_server_gives_no_verdict_then_recovers(fault_redis: RedisServer) -> None:
    client = quick_client(fault_redis)
    registry = Registry(client, "lg")
    lease = registry.acquire(SK, ttl=30)

    fault_redis.kill()
    calls = {
        "acquire": lambda: registry.acquire(SK),
        "acquire exclusive": lambda: registry.acquire(SK, policy="exclusive"),
        "renew": lambda: registry.renew(lease),
        "park": lambda: registry.park(lease, until=60),
        "status by lease": lambda: registry.status(lease),
        "status by ids": lambda: registry.status(SK, lease.run_id),
        "release": lambda: registry.release(lease),
    }
    for name, call in calls.items():
        with pytest.raises(RegistryUnavailable):
            call()
            pytest.fail(f"{name} answered while Redis was down")
    with pytest.raises(RegistryUnavailable), registry.hold(SK, ttl=30):
        pytest.fail("hold entered while Redis was down")

    fault_redis.start()
    # the same Registry works again, and nothing the failed calls attempted took effect
    status = registry.status(lease)
    assert status.state is RunState.LIVE
    assert status.fence == 1
    with pytest.raises(LeaseHeld) as caught:
        registry.acquire(SK, policy="exclusive")
    assert caught.value.holder_run_id == lease.run_id
    assert registry.renew(lease).state is RunState.LIVE
    assert registry.release(lease).state is RunState.RELEASED
    assert registry.acquire(SK).fence == 2
    client.close()


def test_outage_longer_than_the_ttl_loses_the_held_lease(fault_redis: RedisServer) -> None:
    client = quick_client(fault_redis)
    registry = Registry(client, "lg")
    with pytest.raises(LeaseLost) as on_exit, registry.hold(SK, ttl=0.5) as lease:
        fault_redis.kill()
        # whatever the last renewal was, it was decided before now: the run ends by now + ttl.
        # Redis decides with its clock, which is this machine's: wait until that is past.
        ends_by = time.time() + 0.5
        wait_until(lambda: time.time() > ends_by + 0.1, timeout=5,
                   message="the lease to run out while Redis is down")
        assert not lease.lost  # the renewer kept trying and never saw a verdict
        fault_redis.start()
        wait_until(lambda: lease.lost, timeout=5, message="the renewer to see the loss")
        with pytest.raises(LeaseLost) as caught:
            lease.check()
        assert caught.value.reason == "expired"
    assert on_exit.value.reason == "expired"
    assert registry.status(lease).state is RunState.EXPIRED
    client.close()


def test_fresh_registry_after_restart_sees_the_same_runs(fault_redis: RedisServer) -> None:
    before = Registry(fault_redis.client(), f"ns{uuid.uuid4().hex[:6]}")
    lease = before.park(before.acquire(SK, ttl=30), until=600)
    fault_redis.restart(hard=True)
    after = Registry(fault_redis.client(), before.namespace)
    status = after.status(lease)
    assert status.state is RunState.PARKED
    assert status.expires_at == lease.expires_at
    assert after.acquire(SK).fence == 2
    before.client.close()
    after.client.close()
