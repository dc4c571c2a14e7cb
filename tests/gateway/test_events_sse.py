"""``GET /v1/runs/{run}/events``: pushed results over SSE, against a real ``leasegate serve``
(two of them behind one address), a real worker and Redis: resume without loss or duplicates,
a parked run resumed exactly once, the stream ending with the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import WorkerProcess
from tests.support.gateway import GatewayProcess
from tests.support.runtime_api import session, start, wait_entries
from tests.support.sse import EventReader

pytestmark = pytest.mark.e2e
IMAGE = {"tool": "image_generate", "args": {"prompt": "a heron", "size": "256x256"}}
FAST = {"LEASEGATE_SSE_POLL": "0.2", "LEASEGATE_SSE_HEARTBEAT": "0.3"}


@pytest.fixture(scope="module")
def gateway_server(tmp_path_factory: pytest.TempPathFactory, gateway_namespace: str,
                   gateway_redis: RedisServer) -> Iterator[GatewayProcess]:
    """This module's server polls run state every 0.2 s and beats every 0.3 s."""
    workdir: Path = tmp_path_factory.mktemp("gateway-sse")
    with GatewayProcess(gateway_redis.url, gateway_namespace, workdir, **FAST) as server:
        yield server


def events_url(ref: str) -> str:
    return f"/v1/runs/{ref}/events"


def test_entries_then_the_end_of_the_run(gateway_server: GatewayProcess,
                                         gateway_worker: WorkerProcess) -> None:
    with gateway_server.client("runtime") as http:
        ref = start(http, prompt="draw")["run"]
        with EventReader(http, events_url(ref)) as stream:
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            [prompt] = stream.take(1)
            callback = http.post(f"/v1/runs/{ref}/tasks", json=IMAGE).json()["callback_id"]
            got = stream.take(1, event="entry")
            http.post(f"/v1/runs/{ref}/release")
            tail = stream.rest()
    entries = [e for e in [prompt, *got, *tail] if e.event == "entry"]
    assert [(e.id, e.data["seq"], e.data["callback_id"]) for e in entries] == \
        [(1, 1, None), (2, 2, callback)]
    assert entries[1].data["artifacts"][0]["media_type"] == "image/png"
    assert tail[-1].event == "state" and tail[-1].data["state"] == "released"
    assert stream.ended and stream.heartbeats >= 1


def test_last_event_id_resumes_without_loss_or_duplicates(
        gateway_server: GatewayProcess, gateway_worker: WorkerProcess) -> None:
    with gateway_server.client("runtime") as http:
        ref = start(http)["run"]
        for i in range(3):
            http.post(f"/v1/runs/{ref}/tasks", json={**IMAGE, "callback_id": f"call_{i}"})
        with EventReader(http, events_url(ref)) as stream:
            first = [e for e in stream.take(2, event="entry") if e.event == "entry"]
        # disconnected mid-stream; the rest is delivered meanwhile
        wait_entries(http, ref, 4)
        with EventReader(http, events_url(ref),
                         headers={"Last-Event-ID": str(first[-1].id)}) as stream:
            second = [e for e in stream.take(2, event="entry") if e.event == "entry"]
        with EventReader(http, events_url(ref), params={"last_event_id": 3}) as stream:
            third = [e for e in stream.take(1, event="entry") if e.event == "entry"]
        http.post(f"/v1/runs/{ref}/release")
        with EventReader(http, events_url(ref), headers={"Last-Event-ID": "4"}) as stream:
            after_end = stream.rest()
    assert [e.id for e in first + second] == [1, 2, 3, 4]
    assert sorted(e.data["callback_id"] for e in first[1:] + second) == \
        ["call_0", "call_1", "call_2"]
    assert [e.id for e in third] == [4]
    assert [e.event for e in after_end] == ["state"]  # nothing again, then the end


def test_a_parked_run_resumes_exactly_once(gateway_server: GatewayProcess,
                                           gateway_worker: WorkerProcess) -> None:
    with gateway_server.client("runtime") as http:
        ref = start(http)["run"]
        callback = http.post(f"/v1/runs/{ref}/tasks", json=IMAGE).json()["callback_id"]
        assert http.post(f"/v1/runs/{ref}/park", json={"until": 60}).status_code == 200
        with EventReader(http, events_url(ref), headers={"Last-Event-ID": "1"}) as stream:
            woke = stream.take(1, event="entry")
            assert http.post(f"/v1/runs/{ref}/renew").json()["state"] == "live"
            http.post(f"/v1/runs/{ref}/release")
            rest = stream.rest()
    entries = [e for e in woke + rest if e.event == "entry"]
    assert [(e.id, e.data["callback_id"]) for e in entries] == [(2, callback)]
    states = [e.data["state"] for e in woke + rest if e.event == "state"]
    assert states[-1] == "released" and states.count("released") == 1


@pytest.mark.parametrize("ending", ["superseded", "expired"])
def test_a_lost_run_ends_its_stream_and_its_late_image_goes_nowhere(
        gateway_server: GatewayProcess, gateway_worker: WorkerProcess, ending: str) -> None:
    key = session("agent:")
    with gateway_server.client("runtime") as http:
        old = start(http, key, ttl=60 if ending == "superseded" else 0.3)
        late = http.post(f"/v1/runs/{old['run']}/tasks", json=IMAGE).json()["callback_id"]
        with EventReader(http, events_url(old["run"]), headers={"Last-Event-ID": "1"}) as s:
            if ending == "superseded":
                new = start(http, key)
            events = s.rest()
        if ending == "expired":
            new = start(http, key)
        own = http.post(f"/v1/runs/{new['run']}/tasks", json=IMAGE).json()["callback_id"]
        with EventReader(http, events_url(new["run"])) as stream:
            got = stream.take(2, event="entry")
            http.post(f"/v1/runs/{new['run']}/release")
            got += stream.rest()
    # an image is the old run's only while it was live (timing decides for an expiring run)
    assert [e.data["callback_id"] for e in events if e.event == "entry"] in ([], [late])
    assert events[-1].event == "state" and events[-1].data["state"] == ending
    if ending == "superseded":
        assert events[-1].data["superseded_by"] == new["run_id"]
    entries = [e.data["callback_id"] for e in got if e.event == "entry"]
    assert entries == [None, own] and late not in entries


def test_two_serve_processes_behave_as_one(gateway_server: GatewayProcess,
                                           gateway_worker: WorkerProcess,
                                           gateway_redis: RedisServer, gateway_namespace: str,
                                           tmp_path: Path) -> None:
    shared = {"LEASEGATE_ARTIFACT_DIR": gateway_server.env["LEASEGATE_ARTIFACT_DIR"]}
    with GatewayProcess(gateway_redis.url, gateway_namespace, tmp_path, **FAST,
                        **shared) as other, \
            gateway_server.client("runtime") as one, other.client("runtime") as two:
        ref = start(one)["run"]  # started on one process, streamed from the other
        with EventReader(two, events_url(ref), headers={"Last-Event-ID": "1"}) as stream:
            callback = one.post(f"/v1/runs/{ref}/tasks", json=IMAGE).json()["callback_id"]
            [entry] = [e for e in stream.take(1, event="entry") if e.event == "entry"]
            assert two.post(f"/v1/runs/{ref}/release").status_code == 200
            rest = stream.rest()
        assert one.get(f"/v1/runs/{ref}").json()["state"] == "released"
        image = two.get(entry.data["artifacts"][0]["url"])
    assert entry.data["callback_id"] == callback
    assert rest[-1].data["state"] == "released"
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_stream_refusals(gateway_server: GatewayProcess) -> None:
    with gateway_server.client("runtime") as http:
        ref = start(http)["run"]
        bad_id = http.get(events_url(ref), headers={"Last-Event-ID": "two"})
        tampered = http.get(events_url(ref + "A"))
    assert (bad_id.status_code, bad_id.json()["error"]["field"]) == (422, "Last-Event-ID")
    assert tampered.status_code == 404
    with gateway_server.client("other") as http:
        assert http.get(events_url(ref)).status_code == 403
    assert httpx.get(gateway_server.url + events_url(ref)).status_code == 401
