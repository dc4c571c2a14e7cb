"""Poison pushed straight onto a worker's Redis queue (``LPUSH media 'garbage'``): bytes that
are not a kombu message at all. Kombu's Redis transport decodes them in its event loop, before
any consumer hook; the worker must survive, quarantine them as ``malformed`` with their raw
bytes (one letter per distinct input), and run the next task."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import pytest

from leasegate.broker import Client, DeadLetter
from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.helpers import wait_until

pytestmark = pytest.mark.e2e

QUEUE = "media"
POISON = [
    b"garbage",                              # not JSON: JSONDecodeError in _brpop_read
    b"\xff\xfe\x00 not even utf-8",          # not text: UnicodeDecodeError first
    b"5",                                    # JSON, but not a message
    b"[1, 2, 3]",
    b"{}",                                   # a dict without properties
    b'{"properties": 1, "body": ""}',       # properties of the wrong shape
    b'{"properties": {}, "body": "eA=="}',  # no delivery tag
]


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkerProcess, Client]]:
    with RedisServer() as server:
        namespace = f"px{uuid.uuid4().hex[:8]}"
        proc = WorkerProcess(server.url, namespace, tmp_path_factory.mktemp("poison"),
                             name="poison", queues=QUEUE, LEASEGATE_GENERATOR_LATENCY="0",
                             LEASEGATE_MAINTENANCE_INTERVAL="0")
        proc.start()
        client = Client.from_url(server.url, namespace, secret=SECRET.encode())
        try:
            yield proc, client
        finally:
            client.redis.close()
            proc.stop()


def settled(proc: WorkerProcess, client: Client, raw: bytes) -> DeadLetter:
    memo = client.keys.raw_memo(hashlib.sha256(raw).hexdigest())

    def done() -> bool:
        assert proc.process is not None and proc.process.poll() is None, \
            f"the worker died:\n{proc.log()[-3000:]}"
        return client.redis.llen(QUEUE) == 0 and client.redis.get(memo) is not None

    wait_until(done, timeout=20, message=f"the letter of {raw!r}")
    return client.dead_letters.get(client.redis.get(memo).decode())


@pytest.mark.parametrize("raw", POISON, ids=[repr(p)[:24] for p in POISON])
def test_poison_is_quarantined_with_its_raw_bytes(worker: tuple[WorkerProcess, Client],
                                                  raw: bytes) -> None:
    proc, client = worker
    client.redis.lpush(QUEUE, raw)
    letter = settled(proc, client, raw)
    assert letter.reason == "malformed" and letter.raw == raw and letter.raw_size == len(raw)
    assert letter.session_key is None and letter.run_id is None  # untrusted: no owner
    assert "queue media" in letter.detail


def test_same_poison_twice_is_one_letter_and_the_next_task_runs(
        worker: tuple[WorkerProcess, Client]) -> None:
    proc, client = worker
    raw = b"twice " + uuid.uuid4().hex.encode()
    client.redis.lpush(QUEUE, raw)
    first = settled(proc, client, raw)
    before = client.dead_letters.count()
    client.redis.lpush(QUEUE, raw)
    wait_until(lambda: client.redis.llen(QUEUE) == 0, 20, message="the repeat to be popped")
    run = client.start_run(f"poison:{uuid.uuid4().hex[:6]}", prompt="still here?", ttl=60)
    cb = run.submit("image_generate", prompt="a genuine picture", size="256x256")
    got = run.inbox.wait_for([cb], timeout=30)  # popped after the repeat: it was settled
    assert got[cb].kind == "result" and got[cb].artifacts
    assert client.dead_letters.count() == before and settled(proc, client, raw).id == first.id
    log = proc.log()
    assert "Unrecoverable error" not in log and "Connection to broker lost" not in log
    assert proc.process is not None and proc.process.poll() is None
