"""Version 3 (Ed25519) envelopes forged and mutated through the whole worker path, to a real
``celery worker`` holding only public keys (one of them revoked) and no secret: every message
is settled with its dead letter under its own reason (``unknown_key``, ``revoked_key``,
``bad_signature``, ``malformed``) and its raw bytes, the worker never dies, no inbox is
touched, and a genuine envelope still delivers."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leasegate.broker import (
    HEADER,
    Client,
    Envelope,
    Run,
    generate_pems,
    header_value,
    key_id,
    load_signing_key,
    load_verify_key,
    wire_from_header,
)
from leasegate.broker.envelope import WIRE_KEYS_V3
from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import WorkerProcess
from tests.workers.test_worker_fuzz import SETTINGS, Bad, Harness, check, structures

pytestmark = pytest.mark.e2e

GOOD_PRIVATE, GOOD_PUBLIC = generate_pems()
REVOKED_PRIVATE, REVOKED_PUBLIC = generate_pems()
REVOKED_KID = key_id(load_verify_key(REVOKED_PUBLIC))
REFUSALS = frozenset({"malformed", "bad_signature", "unknown_key", "revoked_key"})
KWARGS = {"prompt": "forged", "size": "256x256"}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    folder = tmp_path_factory.mktemp("v3")
    good, revoked = folder / "good.pem", folder / "revoked.pem"
    good.write_bytes(GOOD_PUBLIC)
    revoked.write_bytes(REVOKED_PUBLIC)
    with RedisServer() as server:
        worker = WorkerProcess(server.url, f"f3{uuid.uuid4().hex[:8]}", folder, name="fuzz3",
                               queues="media", LEASEGATE_GENERATOR_LATENCY="0",
                               LEASEGATE_VERIFY_KEYS=f"{good},{revoked}",
                               LEASEGATE_REVOKED_KEYS=REVOKED_KID)
        del worker.env["LEASEGATE_SECRET"]  # public keys only
        worker.start()
        h = Harness(server, worker.env["LEASEGATE_NAMESPACE"], worker)
        try:
            yield h
        finally:
            h.close()
            worker.stop()


def signed(run: Run, private_pem: bytes, task_id: str) -> Envelope:
    return Envelope.create(load_signing_key(private_pem), callback_id=uuid.uuid4().hex,
                           session_key=run.session_key, run_id=run.run_id, fence=run.fence,
                           incarnation=run.lease.incarnation, tool="image_generate",
                           task_args=KWARGS, submitted_at_ms=1, deadline_at_ms=2**62,
                           task_id=task_id)


def send(h: Harness, value: str, reasons: frozenset[str], task_id: str,
         kwargs: dict[str, Any] | None = None) -> None:
    check(h, Bad(b"", "", None, wire_from_header(value), reasons,
                 via_celery={"kwargs": kwargs or KWARGS, "headers": {HEADER: value},
                             "task_id": task_id}))


def b64(data: dict[str, Any]) -> str:
    return base64.b64encode(msgpack.packb(data, use_bin_type=True)).decode()


def test_each_forgery_gets_its_own_reason(harness: Harness) -> None:
    run, task_id = harness.bystander, uuid.uuid4().hex
    send(harness, header_value(signed(run, generate_pems()[0], task_id)),
         frozenset({"unknown_key"}), task_id)
    task_id = uuid.uuid4().hex
    send(harness, header_value(signed(run, REVOKED_PRIVATE, task_id)),
         frozenset({"revoked_key"}), task_id)
    task_id = uuid.uuid4().hex
    tampered = msgpack.unpackb(signed(run, GOOD_PRIVATE, task_id).encode(), raw=False)
    tampered["fence"] = run.fence + 1
    send(harness, b64(tampered), frozenset({"bad_signature"}), task_id)
    # a genuine signature, other arguments
    task_id = uuid.uuid4().hex
    send(harness, header_value(signed(run, GOOD_PRIVATE, task_id)),
         frozenset({"bad_signature"}), task_id, {**KWARGS, "prompt": "other"})
    # the old format, signed with a secret this worker does not hold
    task_id = uuid.uuid4().hex
    old = Envelope.create(b"an-old-shared-secret-0123456789", callback_id=uuid.uuid4().hex,
                          session_key=run.session_key, run_id=run.run_id, fence=run.fence,
                          incarnation=run.lease.incarnation, tool="image_generate",
                          task_args=KWARGS, submitted_at_ms=1, deadline_at_ms=2**62,
                          task_id=task_id)
    send(harness, header_value(old), frozenset({"unknown_key"}), task_id)


@settings(SETTINGS, max_examples=40)
@given(key=st.sampled_from(sorted(WIRE_KEYS_V3.values())),
       value=st.one_of(structures, st.sampled_from([REVOKED_KID, "0" * 16, "ed25519", 3])))
def test_mutated_v3_envelopes_are_quarantined(harness: Harness, key: str, value: Any) -> None:
    task_id = uuid.uuid4().hex
    data = msgpack.unpackb(signed(harness.bystander, GOOD_PRIVATE, task_id).encode(),
                           raw=False)
    if data.get(key) == value and type(data.get(key)) is type(value):
        value = [value]  # a mutation, never the genuine envelope
    data[key] = value
    send(harness, b64(data), REFUSALS, task_id)


def test_the_worker_survives_and_a_genuine_envelope_delivers(harness: Harness) -> None:
    h = harness
    log = h.worker.log()
    assert "Unrecoverable error" not in log and "Frequent restarts" not in log
    assert [e.payload for e in h.bystander.inbox.entries()] == ["bystander"]
    assert h.client.dead_letters.count() == len(h.letters)
    runtime = Client.from_url(h.server.url, h.client.keys.namespace, signing_key=GOOD_PRIVATE)
    run = runtime.start_run("fuzz:genuine", prompt="still here?", ttl=60)
    cb = run.submit("image_generate", prompt="a genuine picture", size="256x256")
    got = run.inbox.wait_for([cb], timeout=30)
    assert got[cb].kind == "result" and got[cb].artifacts
    assert h.worker.process is not None and h.worker.process.poll() is None


def test_the_worker_logs_the_key_ids_it_accepts(harness: Harness) -> None:
    good = key_id(load_verify_key(GOOD_PUBLIC))
    line = harness.worker.wait_log("secret fingerprint")
    logged = line.split("secret fingerprint", 1)[1].splitlines()[0]
    assert good in logged and REVOKED_KID not in logged
