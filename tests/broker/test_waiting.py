"""Waits longer than the socket timeout: ``Run.wait_resume``, ``Inbox.read(block=...)`` and
``Inbox.wait_for`` return what came, or nothing once their time is up, never an error, and a
resume signal is never lost to a dropped reply.

The clients here have a 0.5 s socket timeout (with connect()'s usual Retry), so "several
socket timeouts" is a couple of seconds instead of minutes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from leasegate.broker import Client, Envelope, Run
from leasegate.ownership import connect
from leasegate.testing.redis_server import RedisServer
from tests.conftest import SECRET
from tests.support.helpers import wait_until
from tests.support.lossy_proxy import LossyProxy

SOCKET_TIMEOUT = 0.5
LONG = 4 * SOCKET_TIMEOUT   # what "several socket timeouts" means below


@pytest.fixture
def waiter_name() -> str:
    return f"waiter-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def short_client(redis_server: RedisServer, namespace: str,
                 waiter_name: str) -> Iterator[Client]:
    """A Client whose connections time out after SOCKET_TIMEOUT, named for CLIENT LIST."""
    client = Client(connect(redis_server.url, socket_timeout=SOCKET_TIMEOUT,
                            client_name=waiter_name), namespace, secret=SECRET)
    yield client
    client.redis.close()


def parked_run(client: Client) -> tuple[Run, Envelope]:
    run = client.start_run(f"cron:wait-{uuid.uuid4().hex[:8]}", prompt="p", ttl=30)
    envelope = run.envelope("image_generate")
    run.park(60)
    return run, envelope


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` in a thread; its return value or exception lands in the dict."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # reported by the test, not lost in the thread
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def waited_on_one_connection(admin: redis.Redis, name: str, seconds: int,
                             thread: threading.Thread) -> bool:
    """True once the waiter has been blocked on one connection for ``seconds`` (a client
    timeout would have replaced it), or once the waiter gave up (the test then reports it)."""
    if not thread.is_alive():
        return True
    return any(c.get("name") == name and c.get("cmd") in ("blmove", "blpop", "xread")
               and int(c.get("age", 0)) >= seconds for c in admin.client_list())


def result_of(thread: threading.Thread, out: dict[str, Any]) -> Any:
    thread.join(30)
    assert not thread.is_alive(), "the wait never returned"
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_wait_resume_over_several_socket_timeouts_returns_the_signal(
        broker_client: Client, short_client: Client, redis_client: redis.Redis,
        waiter_name: str) -> None:
    run, envelope = parked_run(broker_client)
    mine = short_client.attach(run.session_key, run.run_id)
    thread, out = in_thread(lambda: mine.wait_resume(60))
    wait_until(lambda: waited_on_one_connection(redis_client, waiter_name, round(LONG), thread),
               timeout=30, message="the waiter blocked on one connection for 4 socket timeouts")
    broker_client.gate.deliver(envelope, result={"ok": 1})
    assert result_of(thread, out) == envelope.callback_id


def test_wait_resume_with_nothing_to_take_returns_none_after_its_timeout(
        broker_client: Client, short_client: Client) -> None:
    run, envelope = parked_run(broker_client)
    mine = short_client.attach(run.session_key, run.run_id)
    assert mine.wait_resume(LONG) is None  # its time ran out: an answer, not an error
    broker_client.gate.deliver(envelope, result={"ok": 1})
    assert mine.wait_resume(LONG) == envelope.callback_id  # the client still works


def test_inbox_read_over_several_socket_timeouts_returns_the_entry(
        broker_client: Client, short_client: Client, redis_client: redis.Redis,
        waiter_name: str) -> None:
    run, envelope = parked_run(broker_client)
    mine = short_client.attach(run.session_key, run.run_id)
    thread, out = in_thread(lambda: mine.inbox.read(after=1, block=60))
    wait_until(lambda: waited_on_one_connection(redis_client, waiter_name, round(LONG), thread),
               timeout=30, message="the reader blocked on one connection for 4 socket timeouts")
    broker_client.gate.deliver(envelope, result={"ok": 1})
    assert [e.callback_id for e in result_of(thread, out)] == [envelope.callback_id]


def test_inbox_waits_with_nothing_to_read_return_empty_after_their_timeout(
        broker_client: Client, short_client: Client) -> None:
    run, envelope = parked_run(broker_client)
    mine = short_client.attach(run.session_key, run.run_id)
    assert mine.inbox.read(after=1, block=LONG) == []
    assert mine.inbox.wait_for([envelope.callback_id], timeout=LONG) == {}


def test_inbox_wait_for_over_several_socket_timeouts_gets_every_callback(
        broker_client: Client, short_client: Client, redis_client: redis.Redis,
        waiter_name: str) -> None:
    run, first = parked_run(broker_client)
    second = run.envelope("image_generate")
    mine = short_client.attach(run.session_key, run.run_id)
    broker_client.gate.deliver(first, result={"n": 1})  # before the wait began: still seen
    thread, out = in_thread(lambda: mine.inbox.wait_for(
        [first.callback_id, second.callback_id], timeout=60))
    wait_until(lambda: waited_on_one_connection(redis_client, waiter_name, round(LONG), thread),
               timeout=30, message="wait_for blocked on one connection for 4 socket timeouts")
    broker_client.gate.deliver(second, result={"n": 2})
    assert set(result_of(thread, out)) == {first.callback_id, second.callback_id}


def test_a_signal_whose_reply_was_lost_is_returned_by_the_wait(
        broker_client: Client, redis_server: RedisServer, namespace: str) -> None:
    run, envelope = parked_run(broker_client)
    broker_client.gate.deliver(envelope, result={"ok": 1})
    resume = broker_client.keys.resume(run.session_key, run.run_id)
    with LossyProxy("127.0.0.1", redis_server.port) as proxy:
        lossy = Client(connect(proxy.url, socket_timeout=5), namespace, secret=SECRET)
        mine = lossy.attach(run.session_key, run.run_id)
        # the pop of the resume list itself (BLMOVE or BLPOP) reaches Redis; its reply does not
        proxy.drop_reply_to(resume.encode() + b"\r\n")
        assert mine.wait_resume(LONG) == envelope.callback_id
        assert proxy.dropped.is_set(), "no reply was lost: the test proves nothing"
        assert mine.wait_resume(0) is None  # returned once, not again
        lossy.redis.close()
    assert broker_client.redis.exists(resume, resume + ":taken") == 0


@pytest.mark.parametrize("bad", [-1, float("nan"), "5", 2 * 86400])
def test_waits_refuse_a_bad_timeout_naming_it(broker_client: Client, bad: object) -> None:
    run, _ = parked_run(broker_client)
    with pytest.raises((TypeError, ValueError), match="timeout"):
        run.wait_resume(bad)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match="block"):
        run.inbox.read(block=bad)  # type: ignore[arg-type]


def test_a_signal_held_after_a_lost_reply_expires_rather_than_stays(
        broker_client: Client, redis_server: RedisServer, namespace: str) -> None:
    """While a taken signal waits for the next call, ``:taken`` has an expiry: a waiter
    that died holding it would leave nothing behind for good."""
    run, envelope = parked_run(broker_client)
    broker_client.gate.deliver(envelope, result={"ok": 1})
    taken = broker_client.keys.resume(run.session_key, run.run_id) + ":taken"
    with LossyProxy("127.0.0.1", redis_server.port) as proxy:
        # socket timeout 20 s: the retried pop blocks a 5 s slice before the signal is taken
        # back from :taken, time enough to look at it
        lossy = Client(connect(proxy.url, socket_timeout=20), namespace, secret=SECRET)
        mine = lossy.attach(run.session_key, run.run_id)
        proxy.drop_reply_to(taken.removesuffix(":taken").encode() + b"\r\n")
        thread, out = in_thread(lambda: mine.wait_resume(10))
        wait_until(proxy.dropped.is_set, timeout=10, message="the pop's reply was lost")
        assert 0 < broker_client.redis.pttl(taken) <= 86_400_000
        assert result_of(thread, out) == envelope.callback_id
        lossy.redis.close()
