"""End to end on RabbitMQ as the Celery broker: real ``celery worker`` processes consuming
from a fresh vhost (quorum queues), Redis as the ownership and verdict store, results
through the real gate into Redis inboxes; worker kills, a superseded run's late image, and
raw poison published straight onto the queue."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leasegate.broker import Client, DeadLetter
from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.helpers import wait_until
from tests.support.rabbitmq import RabbitVhost
from tests.workers.test_e2e_workers import (
    ImagesAPI,
    assert_clean_inbox,
    five_failed_runs_then_a_live_one,
    job,
    letter_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]

DEADLINE = "600"  # LEASEGATE_MAX_DEADLINE within the server's default consumer_timeout (30 min)


@pytest.fixture(scope="module")
def redis_store() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def namespace() -> str:
    return f"rmq{uuid.uuid4().hex[:8]}"


def rabbit_worker(redis_store: RedisServer, vhost: RabbitVhost, namespace: str, workdir: Path,
                  name: str = "w1", queues: str = "media,celery", concurrency: int = 1,
                  **env: str) -> WorkerProcess:
    return WorkerProcess(redis_store.url, namespace, workdir, name=name, queues=queues,
                         concurrency=concurrency, LEASEGATE_BROKER_URL=vhost.url,
                         LEASEGATE_MAX_DEADLINE=DEADLINE, **env)


@pytest.fixture(scope="module")
def worker(redis_store: RedisServer, vhost: RabbitVhost, namespace: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    proc = rabbit_worker(redis_store, vhost, namespace, tmp_path_factory.mktemp("rmq"),
                         concurrency=2, LEASEGATE_GENERATOR_LATENCY="0.6")
    yield proc.start()
    proc.stop()


@pytest.fixture
def client(redis_store: RedisServer, vhost: RabbitVhost, namespace: str) -> Iterator[Client]:
    made = Client.from_url(redis_store.url, namespace, secret=SECRET.encode(),
                           broker_url=vhost.url)
    yield made
    made.redis.close()


def test_queues_are_quorum_queues_and_prefetch_is_per_consumer(
        worker: WorkerProcess, vhost: RabbitVhost) -> None:
    types = vhost.queue_types()
    assert types["media"] == "quorum" and types["celery"] == "quorum"
    assert "Global QoS is disabled" in worker.log()  # Celery saw the quorum queues


def test_a_retry_on_a_quorum_queue_arrives(
        redis_store: RedisServer, vhost: RabbitVhost, namespace: str, tmp_path: Path,
        client: Client) -> None:
    """A provider's 429: the retry (a countdown, which a quorum queue cannot delay) is held by
    the worker until it is due, then runs under the same callback id: one image."""
    api = ImagesAPI(["429", "ok"])
    proc = rabbit_worker(redis_store, vhost, namespace, tmp_path, name="retry",
                         queues="media-retry", LEASEGATE_GENERATOR="openai",
                         LEASEGATE_OPENAI_BASE_URL=api.url, LEASEGATE_OPENAI_API_KEY="sk-e2e",
                         LEASEGATE_OPENAI_MAX_RETRIES="0", LEASEGATE_MAX_RETRIES="1").start()
    client.tasks["image_generate"] = ("leasegate.image_generate", "media-retry")
    try:
        run = client.start_run(job(), prompt="retry once", ttl=60)
        cb = run.submit("image_generate", prompt="a blue square", size="256x256")
        got = run.inbox.wait_for([cb], timeout=30)[cb]
        assert got.kind == "result" and [r["prompt"] for r in api.requests] == [
            "a blue square"] * 2
        assert proc.log().count(f"callback {cb} (attempt 2") == 1
        assert [e.callback_id for e in run.inbox.entries()].count(cb) == 1
    finally:
        proc.stop()
        api.close()


def test_released_runs_five_of_five_clean(worker: WorkerProcess, client: Client) -> None:
    five_failed_runs_then_a_live_one(client)


def test_a_superseded_runs_late_image_is_quarantined(worker: WorkerProcess,
                                                     client: Client) -> None:
    key = job()
    old = client.start_run(key, prompt="the old run", ttl=30)
    late = old.submit("image_generate", prompt="late", size="256x256")
    new = client.start_run(key, prompt="the new run", ttl=30)  # policy supersede
    own = new.submit("image_generate", prompt="mine", size="256x256")
    letter = letter_for(client, old, late)
    assert letter.reason == "superseded" and letter.run_id == old.run_id
    assert new.inbox.wait_for([own], timeout=30)[own].kind == "result"
    assert_clean_inbox(new, "the new run", {own})


def test_a_runtime_declares_the_queue_before_any_worker(
        redis_store: RedisServer, vhost: RabbitVhost, namespace: str, tmp_path: Path,
        client: Client) -> None:
    """The runtime's producer is the first to declare a queue, and declares it as the workers
    do (RabbitMQ would refuse a worker's quorum declaration of a classic queue); a worker
    that starts after the run was released skips the work."""
    client.tasks["image_generate"] = ("leasegate.image_generate", "media-late")
    run = client.start_run(job(), prompt="never mind", ttl=30)
    cb = run.submit("image_generate", prompt="expensive", size="256x256")
    assert vhost.queue_types()["media-late"] == "quorum" and vhost.ready("media-late") == 1
    assert run.release("failed").pending == {cb: "image_generate"}
    proc = rabbit_worker(redis_store, vhost, namespace, tmp_path, name="late",
                         queues="media-late").start()
    try:
        letter = letter_for(client, run, cb)
        assert letter.reason == "run_released"
        assert letter.payload == {"error": "skipped", "reason": "run_released"}
        assert f"callback {cb} (attempt" not in proc.log()  # the generator never ran
    finally:
        proc.stop()


def test_worker_sigkilled_mid_task_rabbitmq_redelivers_one_verdict(
        redis_store: RedisServer, vhost: RabbitVhost, namespace: str, tmp_path: Path,
        client: Client) -> None:
    """The whole worker (main process and child) dies mid-generation: its connection drops,
    RabbitMQ puts the unacknowledged message back at once, a second worker runs it again,
    and the gate's memo gives exactly one verdict."""
    client.tasks["image_generate"] = ("leasegate.image_generate", "media-kill")
    first = rabbit_worker(redis_store, vhost, namespace, tmp_path, name="victim",
                          queues="media-kill", LEASEGATE_GENERATOR_LATENCY="2").start()
    second = rabbit_worker(redis_store, vhost, namespace, tmp_path, name="heir",
                           queues="media-kill", LEASEGATE_GENERATOR_LATENCY="0.3")
    try:
        run = client.start_run(job(), prompt="survive a crash", ttl=60)
        cb = run.submit("image_generate", prompt="crash test", size="256x256")
        first.wait_log(f"callback {cb} (attempt 1")
        assert first.process is not None
        for pid in [*first.children(), first.process.pid]:
            os.kill(pid, signal.SIGKILL)
        first.process.wait()
        second.start()
        got = run.inbox.wait_for([cb], timeout=60)
        assert got[cb].kind == "result"
        assert [e.callback_id for e in run.inbox.entries()].count(cb) == 1
        second.wait_log(f"callback {cb} (attempt 1")  # redelivered to the heir
        memo = client.keys.callback(run.session_key, run.run_id, cb)
        assert client.redis.hget(memo, "d") == b"1"  # its one verdict is the delivery
        second.stop()  # anything it left unacknowledged would be ready again now
        assert vhost.ready("media-kill") == 0
    finally:
        first.stop()
        second.stop()


def test_worker_child_killed_mid_generation_one_entry(
        redis_store: RedisServer, vhost: RabbitVhost, namespace: str, tmp_path: Path,
        client: Client) -> None:
    proc = rabbit_worker(redis_store, vhost, namespace, tmp_path, name="child",
                         queues="media-child", LEASEGATE_GENERATOR_LATENCY="2").start()
    client.tasks["image_generate"] = ("leasegate.image_generate", "media-child")
    try:
        run = client.start_run(job(), prompt="child dies", ttl=60)
        cb = run.submit("image_generate", prompt="crash test", size="256x256")
        proc.wait_log(f"callback {cb} (attempt 1")
        [child] = proc.children()
        os.kill(child, signal.SIGKILL)
        assert run.inbox.wait_for([cb], timeout=60)[cb].kind == "result"
        assert [e.callback_id for e in run.inbox.entries()].count(cb) == 1
        assert proc.log().count(f"callback {cb} (attempt 1") == 2  # ran again, new process
    finally:
        proc.stop()


POISON = [
    (b"garbage", {}),                                          # no properties at all
    (b"\xff\xfe\x00 not even utf-8", {"content_type": "application/json"}),
    (b"not json", {"content_type": "application/json",
                   "application_headers": {"task": "leasegate.image_generate", "id": "x"}}),
    (b"5", {"content_type": "application/json", "content_encoding": "utf-8",
            "application_headers": {"task": "leasegate.image_generate", "id": "y"}}),
    (b"[1, 2, 3]", {"content_type": "application/json", "content_encoding": "utf-8",
                    "application_headers": {"task": "leasegate.image_generate"}}),
]


def settled(worker: WorkerProcess, client: Client, raw: bytes) -> DeadLetter:
    memo = client.keys.raw_memo(hashlib.sha256(raw).hexdigest())

    def done() -> bool:
        assert worker.process is not None and worker.process.poll() is None, \
            f"the worker died:\n{worker.log()[-3000:]}"
        return client.redis.get(memo) is not None

    wait_until(done, timeout=20, message=f"the letter of {raw!r}")
    return client.dead_letters.get(client.redis.get(memo).decode())


@pytest.mark.parametrize(("raw", "properties"), POISON, ids=[repr(p[0])[:20] for p in POISON])
def test_raw_poison_on_the_queue_is_quarantined(worker: WorkerProcess, vhost: RabbitVhost,
                                                client: Client, raw: bytes,
                                                properties: dict[str, object]) -> None:
    vhost.publish_raw("media", raw, **properties)
    letter = settled(worker, client, raw)
    assert letter.reason == "malformed" and letter.raw == raw
    assert letter.session_key is None and letter.run_id is None  # untrusted: no owner
    assert vhost.ready("media") == 0  # acknowledged once lettered: nothing to redeliver


def test_same_poison_twice_is_one_letter_and_the_next_task_runs(
        worker: WorkerProcess, vhost: RabbitVhost, client: Client) -> None:
    raw = b"twice " + uuid.uuid4().hex.encode()
    vhost.publish_raw("media", raw)
    first = settled(worker, client, raw)
    before = client.dead_letters.count()
    vhost.publish_raw("media", raw)
    run = client.start_run(job(), prompt="still here?", ttl=60)
    cb = run.submit("image_generate", prompt="a genuine picture", size="256x256")
    assert run.inbox.wait_for([cb], timeout=30)[cb].kind == "result"  # queued after the repeat
    assert vhost.ready("media") == 0
    assert client.dead_letters.count() == before and settled(worker, client, raw).id == first.id
    assert worker.process is not None and worker.process.poll() is None


def test_refuses_a_max_deadline_longer_than_consumer_timeout(
        redis_store: RedisServer, vhost: RabbitVhost, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEGATE_")}
    env.update(LEASEGATE_REDIS_URL=redis_store.url, LEASEGATE_BROKER_URL=vhost.url,
               LEASEGATE_SECRET=SECRET, LEASEGATE_ARTIFACT_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers", "worker",
                          "-P", "solo", "--without-gossip", "--without-mingle",
                          "--without-heartbeat"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT=1800 s" in out.stderr
    assert "consumer_timeout = 1920000" in out.stderr and "LEASEGATE_MAX_DEADLINE" in out.stderr


def test_doctor_checks_the_consumer_timeout(redis_store: RedisServer, vhost: RabbitVhost,
                                            tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEGATE_")}
    env.update(LEASEGATE_REDIS_URL=redis_store.url, LEASEGATE_BROKER_URL=vhost.url,
               LEASEGATE_SECRET=SECRET, LEASEGATE_ARTIFACT_DIR=str(tmp_path))

    def doctor(**more: str) -> str:
        done = subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers",
                               "leasegate", "doctor"], env={**env, **more},
                              capture_output=True, text=True, timeout=60, check=False)
        return done.stdout

    refused = [line for line in doctor().splitlines() if "broker:" in line]
    assert refused and refused[0].startswith("FAIL") and \
        "LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT=1800 s" in refused[0]
    fine = [line for line in doctor(LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT="7200").splitlines()
            if "broker:" in line]
    assert fine and fine[0].startswith("ok") and "consumer_timeout 7200 s" in fine[0]
