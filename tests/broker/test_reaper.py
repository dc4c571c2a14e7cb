"""The reaper against a real redis-server: a callback still pending past its deadline plus a
grace gets exactly one ``no_verdict`` dead letter, and nothing else changes.

``pend`` writes what ``Run.submit`` records (the run's pending hash entry and the index member
scored by the deadline) without sending a task; one test goes through ``submit`` itself."""

from __future__ import annotations

import threading
import uuid

import pytest

from leasegate.broker import Client, Envelope, Reaper, Run
from leasegate.broker.reaper import index_member
from leasegate.ownership import shard_of
from leasegate.testing.redis_server import RedisServer
from tests.conftest import SECRET
from tests.support.helpers import wait_until

TOOL = "image_generate"


def sk() -> str:
    return f"cron:job-{uuid.uuid4().hex[:8]}"


def pend(client: Client, run: Run, deadline: float = 0.05) -> Envelope:
    """What submit records for a callback: pending on its run, and in the deadline index."""
    env = run.envelope(TOOL, {"prompt": "a fox"}, deadline=deadline)
    client.redis.hset(client.keys.pending(run.session_key, run.run_id), env.callback_id, TOOL)
    client.redis.zadd(client.keys.pending_index(shard_of(run.session_key)),
                      {index_member(run.session_key, run.run_id, env.callback_id):
                       env.deadline_at_ms})
    return env


def index_size(client: Client) -> int:
    return sum(int(client.redis.zcard(client.keys.pending_index(shard)))
               for shard in client.keys.shards)


def reap_until(reaper: Reaper, count: int, grace: float = 0.0) -> int:
    """Reap until ``count`` letters were written (deadlines pass on the server's clock)."""
    done = [0]

    def reaped() -> bool:
        done[0] += reaper.reap(grace)
        return done[0] >= count

    wait_until(reaped, 5.0, message=f"{count} reaped callback(s)")
    return done[0]


def test_overdue_callback_gets_one_no_verdict_letter(broker_client: Client) -> None:
    client = broker_client
    run = client.start_run(sk(), prompt="p", ttl=30)
    env = pend(client, run)
    reaper = Reaper.for_client(client)
    assert reap_until(reaper, 1) == 1

    [letter] = client.dead_letters.list(reason="no_verdict").letters
    assert (letter.session_key, letter.run_id, letter.callback_id, letter.tool) == (
        run.session_key, run.run_id, env.callback_id, TOOL)
    assert letter.deadline_at == env.deadline_at_ms / 1000 and letter.run_state == "live"
    assert letter.fence == run.fence and "no verdict" in letter.detail
    assert run.pending() == {} and index_size(client) == 0
    memo = client.redis.hgetall(client.keys.callback(run.session_key, run.run_id,
                                         env.callback_id))
    assert memo[b"reason"] == b"no_verdict" and memo[b"entry"].decode() == letter.id

    # a late worker's delivery is a repeat: same letter, nothing written, inbox untouched
    late = client.gate.deliver(env, result={"images": 1})
    assert late.repeat and not late.delivered and late.entry_id == letter.id
    assert late.reason == "no_verdict"
    assert [e.seq for e in run.inbox.entries()] == [1]
    assert reaper.reap(0.0) == 0 and client.dead_letters.count() == 1


def test_a_submitted_callback_no_worker_took_gets_its_letter(
        redis_server: RedisServer, celery_broker: RedisServer, namespace: str) -> None:
    """Through the real submit: the task sits on a queue no worker reads, and after its
    deadline the reaper is what gives it a verdict."""
    client = Client.from_url(redis_server.url, namespace, secret=SECRET,
                             broker_url=celery_broker.url)
    try:
        run = client.start_run(sk(), prompt="p", ttl=30)
        cb = run.submit(TOOL, deadline=0.05, queue=f"nowhere-{uuid.uuid4().hex}", prompt="x")
        assert run.pending() == {cb: TOOL} and index_size(client) == 1
        assert reap_until(Reaper.for_client(client), 1) == 1
        [letter] = client.dead_letters.list(reason="no_verdict").letters
        assert (letter.run_id, letter.callback_id) == (run.run_id, cb)
        assert run.pending() == {} and index_size(client) == 0
    finally:
        client.redis.close()


def test_a_delivered_callback_only_leaves_the_index(broker_client: Client) -> None:
    client = broker_client
    run = client.start_run(sk(), prompt="p", ttl=30)
    env = pend(client, run, deadline=60)
    assert client.gate.deliver(env, result={"ok": True}).delivered
    client.redis.zadd(client.keys.pending_index(shard_of(run.session_key)),  # long overdue
                      {index_member(run.session_key, run.run_id, env.callback_id): 1})
    assert Reaper.for_client(client).reap(0.0) == 0
    assert index_size(client) == 0 and client.dead_letters.count() == 0


def test_not_due_before_deadline_plus_grace(broker_client: Client) -> None:
    client = broker_client
    run = client.start_run(sk(), prompt="p", ttl=30)
    pend(client, run, deadline=0.05)
    reaper = Reaper.for_client(client)
    wait_until(lambda: client.server_time_ms() > client.redis.zscore(
        client.keys.pending_index(shard_of(run.session_key)),
        index_member(run.session_key, run.run_id, run.pending().popitem()[0])),
               message="the deadline to pass")
    assert reaper.reap(grace=600) == 0  # past the deadline, not past the grace
    assert index_size(client) == 1 and len(run.pending()) == 1
    assert client.dead_letters.count() == 0


def test_run_gone_still_gets_a_letter(broker_client: Client) -> None:
    """The run record and its pending hash expired first: the letter says what is known."""
    client = broker_client
    run = client.start_run(sk(), prompt="p", ttl=30)
    env = pend(client, run)
    client.redis.delete(client.keys.run(run.session_key, run.run_id),
                        client.keys.pending(run.session_key, run.run_id))
    reap_until(Reaper.for_client(client), 1)
    [letter] = client.dead_letters.list(reason="no_verdict").letters
    assert letter.callback_id == env.callback_id and letter.tool is None
    assert letter.run_state == "unknown" and letter.run_id == run.run_id


def test_concurrent_reapers_write_one_letter_each_callback(broker_client: Client) -> None:
    client = broker_client
    run = client.start_run(sk(), prompt="p", ttl=30)
    envs = [pend(client, run) for _ in range(20)]
    wait_until(lambda: client.server_time_ms() > max(e.deadline_at_ms for e in envs),
               message="every deadline to pass")
    barrier, totals = threading.Barrier(4), []

    def reap() -> None:
        reaper = Reaper.for_client(client)
        barrier.wait()
        totals.append(reaper.reap(0.0))

    threads = [threading.Thread(target=reap) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(totals) == 20 and client.dead_letters.count() == 20
    letters = client.dead_letters.list(reason="no_verdict", limit=100).letters
    assert sorted(x.callback_id or "" for x in letters) == sorted(e.callback_id for e in envs)


def test_bad_arguments_name_the_field(broker_client: Client) -> None:
    reaper = Reaper.for_client(broker_client)
    with pytest.raises(ValueError, match="grace"):
        reaper.reap(-1)
    with pytest.raises(ValueError, match=r"limit must be an int in 1\.\.10000"):
        reaper.reap(0, limit=0)


def test_a_member_that_is_not_three_parts_is_dropped(broker_client: Client) -> None:
    client = broker_client
    client.redis.zadd(client.keys.pending_index(7), {"no-newlines-here": 1})
    assert Reaper.for_client(client).reap(0.0) == 0 and index_size(client) == 0
