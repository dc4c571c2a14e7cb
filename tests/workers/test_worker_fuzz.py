"""Bad input through the whole worker path: raw bytes, malformed msgpack and forged envelopes
published straight into the ``media`` queue with kombu, to a real ``celery worker``.

After every message: the worker process is alive, the message is settled (not in the queue,
not unacknowledged), and its dead letter exists with reason ``malformed`` or
``bad_signature`` and its raw bytes. At the end no inbox was touched, and the worker still
serves a genuine image_generate.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from celery import Celery
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu import Connection, Producer

from leasegate.broker import (
    HEADER,
    Client,
    DeadLetter,
    Envelope,
    Run,
    header_value,
    wire_from_header,
)
from leasegate.broker.envelope import RAW_CAP, WIRE_KEYS
from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.helpers import wait_until

pytestmark = pytest.mark.e2e

QUEUE = "media"
TASK = "leasegate.image_generate"
OLD_SECRET = b"a-retired-secret-0123456789abcdef"
WRONG_SECRET = b"not-the-deployment-secret-0123456"
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@dataclass(frozen=True)
class Bad:
    """One bad message and what its dead letter must hold."""

    body: bytes
    content_type: str
    headers: dict[str, Any] | None
    raw: bytes                      # the raw bytes the letter keeps (capped at RAW_CAP)
    reasons: frozenset[str]
    via_celery: dict[str, Any] | None = None  # send_task kwargs instead of a raw publish


class Harness:
    def __init__(self, server: RedisServer, namespace: str, worker: WorkerProcess) -> None:
        self.server = server
        self.worker = worker
        self.client = Client.from_url(server.url, namespace, secret=SECRET.encode())
        self.redis = self.client.redis
        self.connection = Connection(server.url)
        self.producer = Producer(self.connection.channel())
        self.sender = Celery("fuzz-sender", broker=server.url, set_as_current=False)
        self.bystander = self.client.start_run("fuzz:bystander", prompt="bystander", ttl=600)
        self.sent = 0
        self.letters: set[str] = set()

    def close(self) -> None:
        self.connection.release()
        self.redis.close()

    def publish(self, bad: Bad) -> None:
        if bad.via_celery is not None:
            self.sender.send_task(TASK, queue=QUEUE, serializer="msgpack", **bad.via_celery)
        else:
            self.producer.publish(bad.body, exchange="", routing_key=QUEUE,
                                  content_type=bad.content_type, content_encoding="binary",
                                  headers=bad.headers, serializer=None)
        self.sent += 1

    def settled(self, bad: Bad) -> DeadLetter:
        """Wait until the message has left the queue, is acknowledged and has its letter."""
        memo = self.client.keys.raw_memo(hashlib.sha256(bad.raw).hexdigest())

        def done() -> bool:
            assert self.worker.process is not None and self.worker.process.poll() is None, \
                f"the worker died:\n{self.worker.log()[-3000:]}"
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(QUEUE)
            pipe.hlen("unacked")
            pipe.get(memo)
            queued, unacked, letter_id = pipe.execute()
            return queued == 0 and unacked == 0 and letter_id is not None

        wait_until(done, timeout=20, interval=0.01, message=f"the letter of {bad.raw[:40]!r}")
        letter = self.client.dead_letters.get(self.redis.get(memo).decode())
        self.letters.add(letter.id)
        return letter


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with RedisServer() as server:
        namespace = f"fz{uuid.uuid4().hex[:8]}"
        worker = WorkerProcess(server.url, namespace, tmp_path_factory.mktemp("fuzz"),
                               name="fuzz", queues=QUEUE, LEASEGATE_GENERATOR_LATENCY="0")
        worker.start()
        h = Harness(server, namespace, worker)
        try:
            yield h
        finally:
            h.close()
            worker.stop()


def check(h: Harness, bad: Bad) -> None:
    h.publish(bad)
    letter = h.settled(bad)
    assert letter.reason in bad.reasons, letter
    assert letter.raw == (bad.raw[:RAW_CAP] or None)
    assert letter.raw_size == len(bad.raw)
    assert letter.session_key is None and letter.run_id is None  # untrusted: no owner


# -- strategies -----------------------------------------------------------------------------

CONTENT_TYPES = ["application/x-msgpack", "application/json", "application/data",
                 "application/x-python-serialize", "text/plain", "application/x-yaml", ""]


def task_headers(task: str = TASK) -> dict[str, Any]:
    return {"task": task, "id": uuid.uuid4().hex, "lang": "py"}


header_sets = st.one_of(
    st.just({}),
    st.builds(task_headers),
    st.builds(task_headers, st.just("nobody.knows.this.task")),
    st.builds(lambda: {"task": TASK, "lang": "py"}),                        # no id
    st.builds(lambda n: {"task": n, "id": uuid.uuid4().hex}, st.integers()),  # task not a str
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63),
                                                           max_value=2**64 - 1),
                    st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20))
structures = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)


def celery_shape(value: Any) -> bool:
    """Would Celery take this decoded body for [args, kwargs, embed] (or a v1 map)?"""
    if isinstance(value, dict):
        return "args" in value
    return (isinstance(value, list) and len(value) == 3 and isinstance(value[0], list)
            and isinstance(value[1], dict) and (value[2] is None or isinstance(value[2], dict)))


raw_bytes = st.builds(
    lambda body, ctype, headers: Bad(body, ctype, headers, body, frozenset({"malformed"})),
    st.binary(max_size=400), st.sampled_from(CONTENT_TYPES), header_sets)


@st.composite
def malformed_msgpack(draw: st.DrawFn) -> Bad:
    value = draw(structures.filter(lambda v: not celery_shape(v)))
    body = msgpack.packb(value, use_bin_type=True)
    cut = draw(st.integers(min_value=0, max_value=len(body)))
    if draw(st.booleans()) and cut < len(body):
        body = body[:cut]                  # truncated: does not decode at all
    return Bad(body, "application/x-msgpack", draw(header_sets), body,
               frozenset({"malformed"}))


def _signed_fields(run: Run, secret: bytes) -> Envelope:
    return Envelope.create(secret, callback_id=uuid.uuid4().hex, session_key=run.session_key,
                          run_id=run.run_id, fence=run.fence,
                          incarnation=run.lease.incarnation, tool="image_generate",
                          task_args={"prompt": "forged", "size": "256x256"},
                          submitted_at_ms=1, deadline_at_ms=2**62)


def _forged(run: Run, kind: str, data: bytes) -> tuple[str, dict[str, Any], frozenset[str]]:
    """A header value aimed at the live bystander run, the kwargs sent, the reasons."""
    kwargs: dict[str, Any] = {"prompt": "forged", "size": "256x256"}
    bad_sig = frozenset({"bad_signature"})
    if kind == "wrong_secret":
        return header_value(_signed_fields(run, WRONG_SECRET)), kwargs, bad_sig
    if kind == "retired_secret":
        return header_value(_signed_fields(run, OLD_SECRET)), kwargs, bad_sig
    if kind == "tampered_fence":   # signed for another fence, then edited
        env = _signed_fields(run, SECRET.encode())
        wire = {WIRE_KEYS[n]: getattr(env, n) for n in WIRE_KEYS}
        wire["fence"] = run.fence + 1
        return base64.b64encode(msgpack.packb(wire, use_bin_type=True)).decode(), kwargs, \
            bad_sig
    if kind == "tampered_incarnation":   # signed for another incarnation, then edited
        env = _signed_fields(run, SECRET.encode())
        wire = {WIRE_KEYS[n]: getattr(env, n) for n in WIRE_KEYS}
        wire["inc"] = "0" * 32 if wire["inc"] != "0" * 32 else "1" * 32
        return base64.b64encode(msgpack.packb(wire, use_bin_type=True)).decode(), kwargs, \
            bad_sig
    if kind == "version_1":        # the format before incarnations: never trusted again
        env = _signed_fields(run, SECRET.encode())
        wire = {WIRE_KEYS[n]: getattr(env, n) for n in WIRE_KEYS if n != "incarnation"}
        wire["v"] = 1
        return base64.b64encode(msgpack.packb(wire, use_bin_type=True)).decode(), kwargs, \
            frozenset({"malformed"})
    if kind == "swapped_args":     # a genuine signature, other arguments
        env = _signed_fields(run, SECRET.encode())
        return header_value(env), {**kwargs, "prompt": data.hex() or "other"}, bad_sig
    if kind == "oversized":
        env = _signed_fields(run, SECRET.encode())
        wire = {WIRE_KEYS[n]: getattr(env, n) for n in WIRE_KEYS}
        wire["pad"] = data * (5000 // max(1, len(data)) + 1) if data else b"x" * 5000
        return base64.b64encode(msgpack.packb(wire, use_bin_type=True)).decode(), kwargs, \
            frozenset({"malformed"})
    if kind == "random_bytes":
        return base64.b64encode(data).decode(), kwargs, frozenset({"malformed"})
    # not base64 at all
    return "!" + data.hex(), kwargs, frozenset({"malformed"})


FORGERIES = ["wrong_secret", "retired_secret", "tampered_fence", "tampered_incarnation",
             "version_1", "swapped_args", "oversized", "random_bytes", "not_base64"]


# -- the tests ------------------------------------------------------------------------------

@SETTINGS
@given(bad=st.one_of(raw_bytes, malformed_msgpack()))
def test_raw_and_malformed_bodies_are_quarantined(harness: Harness, bad: Bad) -> None:
    check(harness, bad)


@SETTINGS
@given(kind=st.sampled_from(FORGERIES), data=st.binary(max_size=64))
def test_forged_envelopes_are_quarantined(harness: Harness, kind: str, data: bytes) -> None:
    value, kwargs, reasons = _forged(harness.bystander, kind, data)
    bad = Bad(b"", "", None, wire_from_header(value), reasons,
              via_celery={"kwargs": kwargs, "headers": {HEADER: value},
                          "task_id": uuid.uuid4().hex})
    check(harness, bad)


@pytest.mark.parametrize("size", [300 * 1024, 3 * 1024 * 1024])
def test_oversized_payloads_are_quarantined(harness: Harness, size: int) -> None:
    body = os.urandom(size)
    check(harness, Bad(body, "application/x-msgpack", task_headers(), body,
                       frozenset({"malformed"})))
    # a well-formed task message with an oversized argument and a forged envelope
    value, kwargs, _ = _forged(harness.bystander, "wrong_secret", b"")
    kwargs["prompt"] = "x" * size
    check(harness, Bad(b"", "", None, wire_from_header(value), frozenset({"bad_signature"}),
                       via_celery={"kwargs": kwargs, "headers": {HEADER: value}}))


def test_worker_survives_and_still_serves(harness: Harness) -> None:
    """After everything above (and a fixed batch of its own, so it also holds alone): the
    worker never died or reconnected, no inbox was touched, no generator ran for bad input,
    and the worker still does real work."""
    h = harness
    value, kwargs, _ = _forged(h.bystander, "wrong_secret", b"")
    for bad in [Bad(msgpack.packb(5), "application/x-msgpack", task_headers(), msgpack.packb(5),
                    frozenset({"malformed"})),
                Bad(b"\x93\x90\x80\x80", "application/x-msgpack", {"task": TASK},
                    b"\x93\x90\x80\x80", frozenset({"malformed"})),
                Bad(b"\xc1 not msgpack", "application/x-msgpack", task_headers(),
                    b"\xc1 not msgpack", frozenset({"malformed"})),
                Bad(b"[[], {}, {}]", "application/json", task_headers("nobody.knows"),
                    b"[[], {}, {}]", frozenset({"malformed"})),
                Bad(b"", "", None, wire_from_header(value), frozenset({"bad_signature"}),
                    via_celery={"kwargs": kwargs, "headers": {HEADER: value}})]:
        check(h, bad)
    log = h.worker.log()
    assert "Unrecoverable error" not in log and "Frequent restarts" not in log
    assert "Connection to broker lost" not in log
    assert [e.payload for e in h.bystander.inbox.entries()] == ["bystander"]
    namespace = h.client.keys.namespace
    assert [k.decode() for k in h.redis.scan_iter(f"{namespace}:*:inbox")] == \
        [h.client.keys.inbox(h.bystander.session_key, h.bystander.run_id)]
    reasons = {h.client.dead_letters.get(i).reason for i in h.letters}
    assert reasons == {"malformed", "bad_signature"}
    assert h.client.dead_letters.count() == len(h.letters)
    artifacts = h.worker.artifact_dir
    assert not artifacts.exists() or not [p for p in artifacts.rglob("*") if p.is_file()]

    run = h.client.start_run("fuzz:genuine", prompt="still here?", ttl=60)
    cb = run.submit("image_generate", prompt="a genuine picture", size="256x256")
    got = run.inbox.wait_for([cb], timeout=30)
    assert got[cb].kind == "result" and got[cb].artifacts
    assert h.worker.process is not None and h.worker.process.poll() is None
