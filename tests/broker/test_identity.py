"""Issue 11, paths 3-5: a callback and a run are known by an identity that cannot collide.

Caller-chosen callback ids are scoped to their run, and once per run; a run is known by an
incarnation nonce that no Redis data loss can reissue; an expired predecessor is stored as
ended and the gate also asks the session's owner pointer. All against a real redis-server.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from leasegate.broker import HEADER, Client, Envelope, Run
from leasegate.broker.records import pack_body
from leasegate.ownership import LeaseLost, RunState, shard_of
from leasegate.testing.redis_server import RedisServer
from tests.conftest import SECRET
from tests.support.helpers import wait_until


def sk() -> str:
    return f"cron:job-{uuid.uuid4().hex[:8]}"


def inbox_callbacks(run: Run) -> list[str]:
    """The callback ids of a run's inbox entries after the prompt."""
    return [e.callback_id or "" for e in run.inbox.entries()[1:]]


@pytest.fixture
def sending_client(celery_broker: RedisServer, redis_client: redis.Redis,
                   namespace: str) -> Iterator[Client]:
    """A Client whose ``submit`` sends through a real Celery app, to a queue of the test's own
    (no worker consumes it: the tests read the message back)."""
    app = Celery(f"send-{namespace}", broker=celery_broker.url, set_as_current=False)
    queue = f"q-{namespace}"
    client = Client(redis_client, namespace, secret=SECRET, celery_app=app,
                    tasks={"image_generate": ("leasegate.image_generate", queue)})
    yield client
    with celery_broker.client() as broker:
        broker.delete(queue)
    app.close()


def sent_envelope(client: Client, run: Run, callback_id: str) -> Envelope:
    """The envelope of the one message ``submit`` sent for ``callback_id`` of ``run`` (read
    off the queue)."""
    queue = client.tasks["image_generate"].queue
    with client.celery_app.connection_for_write() as connection:  # the broker, wherever it is
        sent = connection.default_channel.client.lrange(queue, 0, -1)
    envs = [client.gate.open(base64.b64decode(json.loads(raw)["headers"][HEADER]))
            for raw in sent]
    mine = [e for e in envs if (e.run_id, e.callback_id) == (run.run_id, callback_id)]
    assert len(mine) == 1, f"{len(mine)} messages sent for callback {callback_id}"
    return mine[0]


# -- path 3: caller-chosen callback ids -------------------------------------------------------

def test_a_stable_callback_id_in_the_next_run_is_a_new_callback(broker_client: Client) -> None:
    """Run 2's 'call_0' is not run 1's: no 'repeat', its own inbox gets its own result."""
    key = sk()
    first = broker_client.start_run(key, prompt="p1", ttl=30)
    done = broker_client.gate.deliver(first.envelope("image_generate", {},
                                                     callback_id="call_0"), result={"n": 1})
    assert done.delivered
    first.release("completed")

    second = broker_client.start_run(key, prompt="p2", ttl=30)
    env = second.envelope("image_generate", {}, callback_id="call_0")
    admission = broker_client.gate.check(env)
    assert (admission.admitted, admission.repeat) == (True, False)
    verdict = broker_client.gate.deliver(env, result={"n": 2})
    assert verdict.delivered and not verdict.repeat
    assert verdict.entry_id != done.entry_id
    assert inbox_callbacks(second) == ["call_0"]
    assert second.inbox.entries()[1].payload == {"n": 2}
    assert inbox_callbacks(first) == ["call_0"]  # run 1 keeps its one result


def test_submit_takes_the_callers_id_once_per_run(sending_client: Client) -> None:
    key = sk()
    run = sending_client.start_run(key, prompt="p", ttl=30)
    assert run.submit("image_generate", callback_id="call_0", prompt="x") == "call_0"
    with pytest.raises(ValueError, match=r"callback_id 'call_0' is already used in run "):
        run.submit("image_generate", callback_id="call_0", prompt="y")
    assert run.pending() == {"call_0": "image_generate"}

    # the next run of the same session key may use it again, and its result is its own
    run.release("completed")
    nxt = sending_client.start_run(key, prompt="p", ttl=30)
    assert nxt.submit("image_generate", callback_id="call_0", prompt="x") == "call_0"
    assert sent_envelope(sending_client, run, "call_0").run_id == run.run_id  # sent once
    env = sent_envelope(sending_client, nxt, "call_0")
    assert sending_client.gate.deliver(env, result={}).delivered
    assert inbox_callbacks(nxt) == ["call_0"]


@pytest.mark.parametrize(("value", "error", "words"), [
    ("", ValueError, "callback_id must not be empty"),
    ("call:0", ValueError, "callback_id must not contain ':'"),
    ("c" * 129, ValueError, "callback_id is 129 bytes long; the limit is 128 bytes"),
    (7, TypeError, "callback_id must be a str"),
])
def test_submit_checks_a_callers_callback_id(sending_client: Client, value: Any,
                                             error: type[Exception], words: str) -> None:
    run = sending_client.start_run(sk(), prompt="p", ttl=30)
    with pytest.raises(error, match=words):
        run.submit("image_generate", callback_id=value, prompt="x")
    assert run.pending() == {}


def test_a_retried_submit_after_a_lost_reply_finds_its_own_entry(broker_client: Client) -> None:
    """redis-py resends the same script call when a reply is lost: the same request id finds
    its own entry (same server time, nothing written twice); another request is refused."""
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    k = broker_client.keys
    keys = [k.run(run.session_key, run.run_id), k.pending(run.session_key, run.run_id),
            k.requests(run.session_key, run.run_id), k.pending_index(shard_of(run.session_key))]
    argv = [run.fence, "call_0", "image_generate", "req-1", 60_000, run.session_key,
            run.run_id, run.lease.incarnation]
    first = broker_client.scripts("submit", keys, argv)
    again = broker_client.scripts("submit", keys, argv)
    assert int(first[0]) == int(again[0]) == 0
    assert int(again[1]) == int(first[1])
    other = broker_client.scripts("submit", keys, [*argv[:3], "req-2", *argv[4:]])
    assert (int(other[0]), other[1]) == (-30, b"req-1")
    member = f"{run.session_key}\n{run.run_id}\ncall_0"
    assert broker_client.redis.zrange(keys[3], 0, -1, withscores=True) == [
        (member.encode(), float(int(first[1]) + 60_000))]


def test_submit_indexes_the_deadline_the_envelope_carries(sending_client: Client) -> None:
    """The pending index's score is the envelope's deadline (one server time, the script's);
    the verdict takes the member out, so the index holds only callbacks still waiting."""
    run = sending_client.start_run(sk(), prompt="p", ttl=30)
    before = sending_client.server_time_ms()
    cb = run.submit("image_generate", deadline=90, prompt="x")
    env = sent_envelope(sending_client, run, cb)
    assert env.deadline_at_ms - env.submitted_at_ms == 90_000
    assert env.submitted_at_ms >= before
    index = sending_client.keys.pending_index(shard_of(run.session_key))
    member = f"{run.session_key}\n{run.run_id}\n{cb}"
    assert sending_client.redis.zscore(index, member) == env.deadline_at_ms
    assert sending_client.gate.deliver(env, result={}).delivered
    assert sending_client.redis.zscore(index, member) is None
    assert run.pending() == {}


def test_a_count_given_with_a_verdict_is_counted_once(broker_client: Client) -> None:
    """The skip counter moves in the gate's step, with the first verdict only: a retried
    delivery (an automatic client retry) does not count it twice."""
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    env = run.envelope("image_generate", {})
    run.release("failed")
    field = "skipped:run_released:image_generate"
    for _ in range(2):
        verdict = broker_client.gate.deliver(env, {"error": "skipped"}, kind="error",
                                             count=field)
        assert (verdict.delivered, verdict.reason) == (False, "run_released")
    metrics = broker_client.keys.metrics(shard_of(run.session_key))
    assert broker_client.redis.hget(metrics, field) == b"1"


# -- path 4: run ids after Redis data loss ----------------------------------------------------

def test_a_reissued_run_id_and_fence_after_data_loss_never_deliver(fault_redis: RedisServer,
                                                                   namespace: str) -> None:
    """After FLUSHALL the fence counter restarts: the same caller-chosen run id gets the same
    fence again. The envelope a worker still holds names the old incarnation: quarantined."""
    client = Client(fault_redis.client(), namespace, secret=SECRET)
    key = sk()
    old = client.start_run(key, prompt="p", ttl=30, run_id="run-7")
    held = old.envelope("image_generate", {})
    client.redis.flushall()

    new = client.start_run(key, prompt="p", ttl=30, run_id="run-7")
    assert (new.run_id, new.fence) == (old.run_id, old.fence)
    assert new.lease.incarnation != old.lease.incarnation
    admission = client.gate.check(held)
    assert (admission.admitted, admission.reason) == (False, "unknown_run")
    verdict = client.gate.deliver(held, result={"stale": True})
    assert (verdict.delivered, verdict.reason) == (False, "unknown_run")
    assert "incarnation" in verdict.detail and old.lease.incarnation in verdict.detail
    assert inbox_callbacks(new) == []
    # the new incarnation's own envelope delivers
    assert client.gate.deliver(new.envelope("image_generate", {}), result={}).delivered


def test_a_lease_from_before_data_loss_cannot_renew_or_release_its_successor(
        fault_redis: RedisServer, namespace: str) -> None:
    """The old runtime still holds (run-7, fence 1): it must not keep the new incarnation
    alive, nor end it."""
    client = Client(fault_redis.client(), namespace, secret=SECRET)
    key = sk()
    old = client.start_run(key, prompt="p", ttl=30, run_id="run-7")
    client.redis.flushall()
    new = client.start_run(key, prompt="p", ttl=30, run_id="run-7")
    with pytest.raises(LeaseLost) as lost:
        old.renew()
    assert lost.value.reason == "unknown"
    assert old.release("failed").state is RunState.LIVE  # the status of run-7: the new one
    assert new.status().state is RunState.LIVE
    assert new.renew().fence == new.fence


def test_a_retried_start_run_with_its_own_run_id_gets_its_lease(broker_client: Client) -> None:
    """A lost reply to start_run(run_id=...) and redis-py's retry: the record carries this
    call's incarnation, so the retry returns the lease instead of 'already used'."""
    key = sk()
    acquisition = broker_client.registry.prepare_acquire(key, 30, "supersede", "run-9")
    keys = [*acquisition.keys, acquisition.run_key + ":inbox"]
    argv = [*acquisition.argv, pack_body("prompt", "p", 1 << 20)]
    first = broker_client.scripts("start-run", keys, argv)  # the reply that never arrived
    again = broker_client.scripts("start-run", keys, argv)
    lease = broker_client.registry.finish_acquire(acquisition, again)
    assert (lease.run_id, lease.fence) == ("run-9", int(first[1]))
    assert lease.incarnation == acquisition.incarnation
    # someone else's start_run with that run id is still refused
    with pytest.raises(ValueError, match="run_id 'run-9' is already used"):
        broker_client.start_run(key, prompt="p", ttl=30, run_id="run-9")


def test_status_and_attach_carry_the_incarnation(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    assert len(run.lease.incarnation) == 32
    assert run.status().incarnation == run.lease.incarnation
    attached = broker_client.attach(run.session_key, run.run_id)
    assert attached.lease.incarnation == run.lease.incarnation
    env = attached.envelope("image_generate", {})
    assert env.incarnation == run.lease.incarnation
    assert broker_client.gate.deliver(env, result={}).delivered
    assert run.renew().incarnation == run.lease.incarnation


# -- path 5: expired predecessors and the owner pointer ---------------------------------------

def expired_then_succeeded(client: Client) -> tuple[Run, Envelope, Run]:
    """A run that expired with a callback out, then a successor of its session key."""
    key = sk()
    old = client.start_run(key, prompt="p", ttl=0.2)
    env = old.envelope("image_generate", {})
    wait_until(lambda: old.status().state is RunState.EXPIRED, timeout=10,
               message="the first run expiring")
    new = client.start_run(key, prompt="p", ttl=30)
    return old, env, new


def test_a_successor_stores_its_expired_predecessors_end(broker_client: Client) -> None:
    old, _, new = expired_then_succeeded(broker_client)
    record = broker_client.redis.hgetall(broker_client.keys.run(old.session_key, old.run_id))
    assert record[b"state"] == b"expired"
    assert record[b"ended"] == record[b"exp"]
    assert new.lease.previous_run_id is None  # an expired run is not superseded
    assert old.status().state is RunState.EXPIRED


def test_a_clock_step_back_does_not_revive_an_expired_predecessor(broker_client: Client) -> None:
    """A Redis clock stepping back makes an old ``exp`` look in the future again: rewrite it
    so, and the gate still refuses the predecessor's callback."""
    old, env, new = expired_then_succeeded(broker_client)
    run_key = broker_client.keys.run(old.session_key, old.run_id)
    broker_client.redis.hset(run_key, "exp", broker_client.server_time_ms() + 60_000)
    admission = broker_client.gate.check(env)
    assert (admission.admitted, admission.reason) == (False, "lease_expired")
    verdict = broker_client.gate.deliver(env, result={"late": True})
    assert (verdict.delivered, verdict.reason) == (False, "lease_expired")
    assert inbox_callbacks(old) == [] and inbox_callbacks(new) == []


def test_the_gate_requires_the_owner_pointer_to_name_the_run(broker_client: Client) -> None:
    """A record left 'live' by mistake cannot win over the session's current owner."""
    old, env, new = expired_then_succeeded(broker_client)
    run_key = broker_client.keys.run(old.session_key, old.run_id)
    broker_client.redis.hset(run_key, mapping={
        "state": "live", "exp": broker_client.server_time_ms() + 60_000})
    admission = broker_client.gate.check(env)
    assert (admission.admitted, admission.reason) == (False, "superseded")
    verdict = broker_client.gate.deliver(env, result={})
    assert (verdict.delivered, verdict.reason) == (False, "superseded")
    assert f"owner is run {new.run_id}, not run {old.run_id}" in verdict.detail
    assert inbox_callbacks(old) == [] and inbox_callbacks(new) == []


def test_a_run_without_the_owner_pointer_is_not_admitted(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    env = run.envelope("image_generate", {})
    broker_client.redis.delete(broker_client.keys.owner(run.session_key))
    verdict = broker_client.gate.deliver(env, result={})
    assert (verdict.delivered, verdict.reason) == (False, "unknown_run")
    assert "no owner pointer" in verdict.detail
    assert inbox_callbacks(run) == []


def test_a_submit_that_could_not_send_frees_its_callback_id(redis_client: redis.Redis,
                                                             namespace: str,
                                                             sending_client: Client) -> None:
    """Nothing was sent: not pending, not indexed for the reaper, and the id may be used again."""
    with socket.socket() as probe:  # a port nothing listens on: the broker is away
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = Celery(f"away-{namespace}", broker=f"redis://127.0.0.1:{port}/0",
                 set_as_current=False)
    app.conf.task_publish_retry = False
    away = Client(redis_client, namespace, secret=SECRET, celery_app=app)
    run = away.start_run(sk(), prompt="p", ttl=30)
    with pytest.raises(Exception) as failed:
        run.submit("image_generate", callback_id="call_0", prompt="x")
    assert not isinstance(failed.value, ValueError)
    assert run.pending() == {}
    assert redis_client.zcard(away.keys.pending_index(shard_of(run.session_key))) == 0
    again = sending_client.attach(run.session_key, run.run_id)
    assert again.submit("image_generate", callback_id="call_0", prompt="x") == "call_0"
    assert again.pending() == {"call_0": "image_generate"}
    app.close()
