"""End to end, the README's pattern (submit, park, wait_resume) with a real ``celery worker``
fast enough to deliver before the run parks: the wait must still see that delivery.

Before issue 11 a delivery to a live run left no resume signal, so the runtime waited out
its timeout and released without reading its image (the lost wake-up).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from leasegate.broker import Client
from leasegate.ownership import RunState
from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import SECRET, WorkerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wake_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def wake_namespace() -> str:
    return f"wake{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def fast_worker(wake_redis: RedisServer, wake_namespace: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(wake_redis.url, wake_namespace, tmp_path_factory.mktemp("wake"),
                         LEASEGATE_GENERATOR_LATENCY="0")
    yield proc.start()
    proc.stop()


@pytest.fixture
def client(wake_redis: RedisServer, wake_namespace: str) -> Iterator[Client]:
    client = Client.from_url(wake_redis.url, wake_namespace, secret=SECRET.encode())
    yield client
    client.redis.close()


def test_a_result_delivered_before_park_wakes_the_wait(fast_worker: WorkerProcess,
                                                       client: Client) -> None:
    run = client.start_run(f"cron:wake-{uuid.uuid4().hex[:6]}", prompt="Draw the header",
                           ttl=60)
    callback = run.submit("image_generate", prompt="a fox at dawn", size="256x256")
    # the worker delivers while the run is still live: the race the README pattern loses
    [image] = run.inbox.read(after=1, block=30)
    assert (image.callback_id, run.status().state) == (callback, RunState.LIVE)

    run.park(until=60)
    assert run.wait_resume(timeout=10) == callback
    run.renew()
    [prompt, got] = run.inbox.read(block=1.0)[:2]
    assert (prompt.role, got.role, got.callback_id) == ("user", "tool", callback)
    assert got.kind == "result" and got.artifacts
    assert run.wait_resume(timeout=0) is None  # one signal per delivery, not more
    run.release("completed")
