"""Issue 11, the worker's side of a verdict: every owned task's callback ends in exactly one
place, whatever its result, its error, its message or its deadline.

End to end with a real worker running ``tests.support.verdict_app`` (owned tasks that return
too much, return a datetime, raise a huge error, or break the artifact store): a ``celery
worker`` process, or for path 1 the in-process worker of leasegate's pytest plugin
(``leasegate_worker``); plus unit-level checks where no worker is needed (revocation during
a Redis blip, limits).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.app.task import Context

from leasegate.broker import HEADER, Client, DeadLetter, Run, Settings, header_value
from leasegate.testing.redis_server import RedisServer
from leasegate.workers.config import WorkerConfig
from leasegate.workers.installation import install
from leasegate.workers.signals import quarantine_revoked
from leasegate.workers.tasks import OwnedTask, WorkerRuntime
from leasegate.workers.tasks.verdicts import CUT_MARKER, MAX_ERROR_TEXT, capped, storable
from tests.support import verdict_app
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.helpers import wait_until
from tests.support.verdict_app import QUEUE, TASKS

LIMIT = Settings().max_result_bytes


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s


@pytest.fixture(scope="module")
def ns() -> str:
    return f"vd{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def worker(server: RedisServer, ns: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(server.url, ns, tmp_path_factory.mktemp("verdicts"), name="verdicts",
                         queues=QUEUE)
    proc.args[proc.args.index("leasegate.workers")] = "tests.support.verdict_app"
    yield proc.start()
    proc.stop()


@pytest.fixture
def client(server: RedisServer, ns: str) -> Client:
    """A runtime that does not know the workers' max_deadline (Settings' 7 days)."""
    return Client.from_url(server.url, ns, secret=SECRET.encode(), tasks=TASKS)


@pytest.fixture
def embedded(leasegate_client: Client, leasegate_worker: Any) -> Client:
    """leasegate's pytest plugin: verdict_app's worker in this process, the test's namespace."""
    leasegate_worker(verdict_app.app, queues=[QUEUE])
    return leasegate_client


def job() -> str:
    return f"verdicts:{uuid.uuid4().hex[:6]}"


def one_error(run: Run, cb: str) -> dict[str, Any]:
    """The callback's one inbox entry, a kind=error; nothing pending any more."""
    got = run.inbox.wait_for([cb], timeout=30)
    assert got[cb].kind == "error", got[cb]
    assert run.pending() == {}
    assert [e.callback_id for e in run.inbox.entries()[1:]] == [cb]
    payload: dict[str, Any] = got[cb].payload
    return payload


# -- path 1: results that cannot be stored ------------------------------------------------


def test_too_large_result_is_an_error_naming_size_and_limit(embedded: Client) -> None:
    run = embedded.start_run(job(), prompt="big", ttl=60)
    cb = run.submit("too_large", size=LIMIT + 1000)
    payload = one_error(run, cb)
    assert payload["error"] == "result_too_large" and payload["limit"] == LIMIT
    assert payload["size"] > LIMIT and set(payload) == {"error", "size", "limit"}


def test_unencodable_result_is_an_error_naming_the_type(embedded: Client) -> None:
    run = embedded.start_run(job(), prompt="when", ttl=60)
    cb = run.submit("unencodable")
    assert one_error(run, cb) == {"error": "result_unencodable", "type": "datetime"}


def test_huge_error_message_is_capped_with_a_marker(embedded: Client) -> None:
    run = embedded.start_run(job(), prompt="loud", ttl=60)
    cb = run.submit("huge_error", size=LIMIT * 2)
    payload = one_error(run, cb)
    assert payload["error"] == "RuntimeError"
    assert payload["message"] == "e" * MAX_ERROR_TEXT + CUT_MARKER.format(
        n=LIMIT * 2 - MAX_ERROR_TEXT)


def test_failure_outside_the_work_gets_one_internal_verdict(embedded: Client) -> None:
    run = embedded.start_run(job(), prompt="store", ttl=60)
    cb = run.submit("bad_file")
    payload = one_error(run, cb)
    assert payload["error"] == "internal" and payload["type"] == "TypeError", payload
    memo = embedded.keys.callback(run.session_key, run.run_id, cb)
    assert embedded.redis.hget(memo, "d") == b"1"


def test_storable_and_capped_without_a_worker() -> None:
    assert storable({"a": 1}, 100) == ({"a": 1}, "result")
    assert storable({"a": [{"b": {1, 2}}]}, 100) == (
        {"error": "result_unencodable", "type": "set"}, "error")
    assert storable({"n": 2**70}, 100)[0] == {"error": "result_unencodable", "type": "int"}
    assert storable({"a": b"x" * 200}, 100)[0]["error"] == "result_too_large"
    assert capped("x" * 10, 10) == "x" * 10
    assert capped("x" * 11, 10) == "x" * 10 + CUT_MARKER.format(n=1)


# -- path 10: an envelope is bound to its message -----------------------------------------


def raw_letter(client: Client, env_wire: bytes) -> DeadLetter:
    memo = client.keys.raw_memo(hashlib.sha256(env_wire).hexdigest())
    wait_until(lambda: client.redis.get(memo) is not None, 30,
               message="the re-sent envelope's dead letter")
    return client.dead_letters.get(client.redis.get(memo).decode())


def send(client: Client, task: str, env: Any, kwargs: dict[str, Any], task_id: str) -> None:
    client.celery_app.send_task(task, kwargs=kwargs, task_id=task_id, queue=QUEUE,
                                serializer="msgpack", headers={HEADER: header_value(env)})


@pytest.mark.parametrize("binding", ["task", "task_id"])
def test_envelope_resent_unbound_is_quarantined_and_the_genuine_one_delivers(
        worker: WorkerProcess, client: Client, binding: str) -> None:
    run = client.start_run(job(), prompt="replay", ttl=60)
    kwargs = {"size": 3}
    env = run.envelope("echo", kwargs, task_id=uuid.uuid4().hex)
    if binding == "task":   # the signed echo envelope, re-sent to another owned task
        send(client, "verdicts.too_large", env, kwargs, env.task_id)
    else:                   # the same task, under another message id
        send(client, "verdicts.echo", env, kwargs, uuid.uuid4().hex)
    letter = raw_letter(client, env.encode())
    assert letter.reason == "bad_signature"
    assert ("tool 'echo'" if binding == "task" else "task id") in letter.detail, letter.detail
    assert len(run.inbox.entries()) == 1  # no work delivered anything

    send(client, "verdicts.echo", env, kwargs, env.task_id)  # the genuine message still counts
    got = run.inbox.wait_for([env.callback_id], timeout=30)
    assert got[env.callback_id].kind == "result" and got[env.callback_id].payload == kwargs


def test_owned_task_tool_defaults_to_the_names_last_part() -> None:
    app = Celery("tools", set_as_current=False)
    from leasegate.workers import owned_task

    def work(ctx: Any) -> None:
        return None

    default = owned_task(app, name="a.b.image_generate")(work)
    named = owned_task(app, name="bench.owned_noop", tool="noop")(work)
    assert isinstance(default, OwnedTask) and default.tool_name == "image_generate"
    assert named.tool_name == "noop"
    with pytest.raises(ValueError, match="tool must be a non-empty string"):
        owned_task(app, name="x.y", tool="")


# -- path 13: deadlines longer than the workers allow -------------------------------------


def test_deadline_beyond_worker_max_is_refused_without_work(worker: WorkerProcess,
                                                            client: Client) -> None:
    run = client.start_run(job(), prompt="a week", ttl=60)
    cb = run.submit("echo", deadline=3600, size=1)  # the worker's max_deadline is 1800 s
    memo = client.keys.callback(run.session_key, run.run_id, cb)
    wait_until(lambda: client.redis.hget(memo, "d") is not None, 30, message="a verdict")
    assert client.redis.hget(memo, "d") == b"0"
    letter = client.dead_letters.get(client.redis.hget(memo, "entry").decode())
    assert letter.reason == "deadline_too_long" and letter.run_id == run.run_id
    assert "deadline is 3600 s" in letter.detail and "is 1800 s" in letter.detail
    assert len(run.inbox.entries()) == 1 and run.pending() == {}
    assert f"working on verdicts.echo callback {cb}" not in worker.log()


def test_runtime_knowing_the_limit_refuses_up_front(redis_client: Any, namespace: str) -> None:
    client = Client(redis_client, namespace, secret=SECRET.encode(),
                    settings=Settings(max_deadline=60), celery_app=Celery(set_as_current=False))
    run = client.start_run(job(), prompt="p", ttl=10)
    match = r"^deadline is 61 s; the configured maximum is 60 s$"
    with pytest.raises(ValueError, match=match):
        run.envelope("image_generate", deadline=61)
    with pytest.raises(ValueError, match=match):
        run.submit("image_generate", deadline=61)
    assert run.pending() == {}
    with pytest.raises(ValueError, match="max_deadline must be > 0"):
        Settings(max_deadline=0)


def test_worker_runtime_client_knows_the_workers_max_deadline(redis_server: RedisServer,
                                                              tmp_path: Path) -> None:
    config = WorkerConfig(redis_url=redis_server.url, secret=SECRET.encode(),
                          artifact_dir=str(tmp_path), max_deadline=90)
    assert WorkerRuntime(config).client.settings.max_deadline == 90


def test_gate_refuse_takes_only_known_reasons(broker_client: Client) -> None:
    run = broker_client.start_run(job(), prompt="p", ttl=10)
    with pytest.raises(ValueError, match="reason must be one of"):
        broker_client.gate.refuse(run.envelope("image_generate"), "because", "no")


# -- path 8: revocation during a Redis blip -----------------------------------------------


def test_revoked_during_a_redis_blip_is_still_quarantined(fault_redis: RedisServer,
                                                          namespace: str, tmp_path: Path) -> None:
    config = WorkerConfig(redis_url=fault_redis.url, broker_url=fault_redis.url,
                          secret=SECRET.encode(), namespace=namespace,
                          artifact_dir=str(tmp_path))
    app = install(Celery("revoke-blip", broker=fault_redis.url, set_as_current=False), config)
    task = app.tasks["leasegate.image_generate"]
    client = Client(fault_redis.client(), namespace, secret=SECRET.encode())
    run = client.start_run(job(), prompt="revoked", ttl=30)
    env = run.envelope("image_generate", {"prompt": "x"})
    run.release("cancelled")
    WorkerRuntime.for_app(app)  # the worker's runtime exists before the blip, as in a worker

    retrying = threading.Event()

    class Retrying(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "Redis unavailable" in record.getMessage():
                retrying.set()

    logger, handler = logging.getLogger("leasegate.workers"), Retrying()
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.DEBUG

    def restart_once_it_waits() -> None:
        retrying.wait(20)  # the handler met the outage (or failed: then the test does)
        fault_redis.restart()

    fault_redis.kill()
    restarter = threading.Thread(target=restart_once_it_waits)
    restarter.start()
    try:
        quarantine_revoked(sender=task, request=Context(id=env.task_id,
                                                        headers={HEADER: header_value(env)}))
    finally:
        retrying.set()
        restarter.join()
        logger.removeHandler(handler)
        logger.setLevel(level)
    memo = client.redis.hgetall(client.keys.callback(run.session_key, run.run_id, env.callback_id))
    assert memo[b"d"] == b"0" and memo[b"reason"] == b"run_released"
    letter = client.dead_letters.get(memo[b"entry"].decode())
    assert letter.payload == {"error": "cancelled", "reason": "revoked"}
