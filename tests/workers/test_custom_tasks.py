"""The custom-task path is first-class: ``Client(tasks=...)`` adds tools to the bundled ones,
``unix://`` Redis URLs work for sending (kombu's ``redis+socket://``) with a real redis-server
on a unix socket and a real worker, and a ``str`` secret is its UTF-8 bytes (or refused with
the reason)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from leasegate.broker import IMAGE_GENERATE, Client, Route, kombu_url
from leasegate.testing.redis_server import RedisServer
from leasegate.workers import WorkerConfig
from tests.support.celery_workers import SECRET, WorkerProcess


def test_tasks_add_to_the_bundled_tools(redis_server: RedisServer, namespace: str) -> None:
    client = Client(redis_server.client(), namespace, secret=SECRET,
                    tasks={"thumbnail": ("myapp.thumbnail", "thumbs")})
    assert client.tasks == {"image_generate": IMAGE_GENERATE,
                            "thumbnail": Route("myapp.thumbnail", "thumbs")}
    rerouted = Client(redis_server.client(), namespace, secret=SECRET,
                      tasks={"image_generate": Route("leasegate.image_generate", "gpu")})
    assert rerouted.tasks == {"image_generate": Route("leasegate.image_generate", "gpu")}


def test_a_str_secret_is_its_utf8_bytes_or_refused_with_the_reason(
        redis_server: RedisServer, namespace: str) -> None:
    text = "clé-secrète-0123456789abcdef"
    as_str = Client(redis_server.client(), namespace, secret=text)
    as_bytes = Client(redis_server.client(), namespace, secret=text.encode())
    assert as_str.secrets == as_bytes.secrets == [text.encode()]
    run = as_str.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    assert as_bytes.gate.open(run.envelope("image_generate", {}).encode()).run_id == run.run_id
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Client(redis_server.client(), namespace, secret="short")
    with pytest.raises(TypeError, match="bytes or str"):
        Client(redis_server.client(), namespace, secret=[12345])  # type: ignore[list-item]


def test_kombu_url_translates_unix_sockets() -> None:
    assert kombu_url("unix:///run/redis.sock") == "redis+socket:///run/redis.sock"
    assert kombu_url("unix:///run/r.sock?db=3") == "redis+socket:///run/r.sock?virtual_host=3"
    assert kombu_url("redis://h:6379/0") == "redis://h:6379/0"
    config = WorkerConfig.from_env({"LEASEGATE_REDIS_URL": "unix:///run/r.sock?db=1"})
    assert config.redis_url == "unix:///run/r.sock?db=1"
    assert config.broker_url == "redis+socket:///run/r.sock?virtual_host=1"


def test_a_runtime_sends_through_a_unix_socket_to_a_real_worker(tmp_path: Path) -> None:
    namespace = f"unix{uuid.uuid4().hex[:6]}"
    with RedisServer(unix_socket=True) as server:
        assert server.url.startswith("unix://")
        worker = WorkerProcess(server.url, namespace, tmp_path)
        worker.start()
        try:
            client = Client.from_url(server.url, namespace, secret=SECRET)
            run = client.start_run("cron:unix", prompt="p", ttl=30)
            callback = run.submit("image_generate", prompt="over a socket", size="256x256")
            got = run.inbox.wait_for([callback], timeout=60)
            assert got[callback].kind == "result" and got[callback].artifacts
            client.redis.close()
        finally:
            worker.stop()
