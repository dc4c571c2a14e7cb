"""A real worker's image, end to end through the console: the worker draws it for a run that
is superseded while it works, the gate quarantines it, ``leasegate serve`` shows its
thumbnail, and a replay through the API hands it to the session's current run, once."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from leasegate.broker import Client
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.console import session_key
from tests.support.gateway import GatewayProcess
from tests.support.helpers import wait_until


@pytest.fixture(scope="module")
def worker(gateway_server: GatewayProcess, gateway_namespace: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """Images take 1.5 s; the owner is checked only every 60 s, so a superseded run's image
    is finished and handed to the gate (which quarantines it) rather than cancelled."""
    proc = WorkerProcess(gateway_server.env["LEASEGATE_REDIS_URL"], gateway_namespace,
                         tmp_path_factory.mktemp("worker"),
                         LEASEGATE_ARTIFACT_DIR=gateway_server.env["LEASEGATE_ARTIFACT_DIR"],
                         LEASEGATE_GENERATOR_LATENCY="1.5", LEASEGATE_CHECK_INTERVAL="60")
    yield proc.start()
    proc.stop()


@pytest.mark.e2e
def test_a_workers_orphaned_image_is_seen_and_replayed_once(
        gateway_server: GatewayProcess, gateway_namespace: str,
        worker: WorkerProcess) -> None:
    client = Client.from_url(gateway_server.env["LEASEGATE_REDIS_URL"], gateway_namespace,
                             secret=SECRET.encode())
    key = session_key("agent:banner")
    old = client.start_run(key, prompt="draw a banner", ttl=60)
    cb = old.submit("image_generate", prompt="a banner", size="1792x1024")
    worker.wait_log(f"working on leasegate.image_generate callback {cb}")
    current = client.start_run(key, prompt="draw it again", ttl=60)  # supersedes the old run
    with gateway_server.client("viewer") as viewer, gateway_server.client() as ops:
        def letters() -> list[dict[str, object]]:
            reply = viewer.get("/v1/dead-letters", params={"session": key})
            found: list[dict[str, object]] = reply.json()["letters"]
            return found

        wait_until(lambda: letters(), timeout=30, message="the orphaned image's letter")
        (letter,) = letters()
        assert (letter["reason"], letter["kind"], letter["callback_id"]) == \
            ("superseded", "result", cb)
        thumb = viewer.get(str(letter["thumbnail_url"]))
        assert thumb.status_code == 200 and len(thumb.content) <= 64 * 1024
        with Image.open(io.BytesIO(thumb.content)) as image:
            assert image.size == (256, 146)  # the 1792x1024 image, scaled to fit 256
        replayed = ops.post(f"/v1/dead-letters/{letter['id']}/replay",
                            json={"to_current": True})
        assert replayed.status_code == 200 and replayed.json()["run_id"] == current.run_id
        assert ops.post(f"/v1/dead-letters/{letter['id']}/replay",
                        json={"to_current": True}).status_code == 409
    entries = [e for e in current.inbox.entries() if e.kind == "recovered"]
    assert len(entries) == 1 and entries[0].callback_id == cb and entries[0].artifacts
    assert [e for e in old.inbox.entries() if e.role == "tool"] == []
    client.redis.close()
