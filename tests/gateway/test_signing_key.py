"""A gateway given ``LEASEGATE_SIGNING_KEY`` signs version 3 (Ed25519) envelopes: a real
``celery worker`` holding only the public key (no secret) delivers the image it submits."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leasegate.broker import generate_pems
from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import WorkerProcess
from tests.support.gateway import GatewayProcess
from tests.support.runtime_api import start, wait_entries

pytestmark = pytest.mark.e2e
IMAGE = {"tool": "image_generate", "args": {"prompt": "a fox at dawn", "size": "256x256"}}


@pytest.fixture(scope="module")
def signing_gateway(tmp_path_factory: pytest.TempPathFactory,
                    gateway_redis: RedisServer) -> Iterator[tuple[GatewayProcess, WorkerProcess]]:
    workdir: Path = tmp_path_factory.mktemp("signing-gateway")
    private_pem, public_pem = generate_pems()
    (workdir / "signing.pem").write_bytes(private_pem)
    (workdir / "verify.pem").write_bytes(public_pem)
    namespace = f"gk{uuid.uuid4().hex[:8]}"
    with GatewayProcess(gateway_redis.url, namespace, workdir,
                        LEASEGATE_SIGNING_KEY=str(workdir / "signing.pem")) as server:
        worker = WorkerProcess(gateway_redis.url, namespace, workdir,
                               LEASEGATE_VERIFY_KEYS=str(workdir / "verify.pem"),
                               LEASEGATE_ARTIFACT_DIR=str(workdir / "artifacts"))
        del worker.env["LEASEGATE_SECRET"]  # the worker holds the public key only
        worker.start()
        try:
            yield server, worker
        finally:
            worker.stop()


def test_the_gateway_signs_with_the_signing_key(
        signing_gateway: tuple[GatewayProcess, WorkerProcess]) -> None:
    server, worker = signing_gateway
    with server.client("runtime") as http:
        ref = start(http)["run"]
        reply = http.post(f"/v1/runs/{ref}/tasks", json={**IMAGE, "callback_id": "call_0"})
        assert reply.status_code == 202, reply.text
        prompt, image = wait_entries(http, ref, 2)
    assert prompt["kind"] == "prompt"
    assert (image["kind"], image["callback_id"]) == ("result", "call_0")
    assert image["payload"]["images"][0]["width"] == 256
    assert "unknown_key" not in worker.log() and "bad_signature" not in worker.log()
