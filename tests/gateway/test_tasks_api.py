"""``POST /v1/runs/{run}/tasks`` and the inbox, end to end: a real ``celery worker`` makes real
images; a late image of a run that lost its lease is quarantined, never in the next run's
inbox (the promise, over HTTP)."""

from __future__ import annotations

import httpx
import pytest

from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import WorkerProcess
from tests.support.gateway import GatewayProcess
from tests.support.runtime_api import (
    python_client,
    session,
    start,
    wait_entries,
    wait_settled,
)

pytestmark = pytest.mark.e2e
IMAGE = {"tool": "image_generate", "args": {"prompt": "a fox at dawn", "size": "256x256"}}


def test_a_submitted_image_lands_as_entry_2(gateway_server: GatewayProcess,
                                            gateway_worker: WorkerProcess) -> None:
    with gateway_server.client("runtime") as http:
        started = start(http)
        ref = started["run"]
        reply = http.post(f"/v1/runs/{ref}/tasks", json={**IMAGE, "callback_id": "call_0"})
        assert (reply.status_code, reply.json()) == (202, {"callback_id": "call_0"})
        assert http.get(f"/v1/runs/{ref}").json()["pending"] == {"call_0": "image_generate"}
        prompt, image = wait_entries(http, ref, 2)
        assert wait_settled(http, ref)["pending"] == {}
        page = http.get(f"/v1/runs/{ref}/inbox", params={"after": 1, "limit": 1}).json()
    assert (prompt["seq"], image["seq"]) == (1, 2)
    assert (image["role"], image["kind"], image["callback_id"]) == ("tool", "result", "call_0")
    assert image["payload"]["images"][0]["width"] == 256
    [art] = image["artifacts"]
    assert art["media_type"] == "image/png" and art["size"] > 0
    assert art["url"] == f"/v1/artifacts/{art['digest']}?run={ref}"
    assert image["provenance"]["fence"] == started["fence"]
    assert image["provenance"]["delivered_at"] >= image["provenance"]["submitted_at"]
    assert page == {"entries": [image], "next_after": 2}


def test_a_callback_id_is_used_once_per_run(gateway_server: GatewayProcess,
                                            gateway_worker: WorkerProcess) -> None:
    with gateway_server.client("runtime") as http:
        ref = start(http)["run"]
        first = http.post(f"/v1/runs/{ref}/tasks", json={**IMAGE, "callback_id": "same"})
        again = http.post(f"/v1/runs/{ref}/tasks", json={**IMAGE, "callback_id": "same"})
        fresh = http.post(f"/v1/runs/{ref}/tasks", json=IMAGE).json()["callback_id"]
        entries = wait_entries(http, ref, 3)
    assert first.status_code == 202
    assert (again.status_code, again.json()["error"]["code"]) == (409, "callback_id_used")
    assert again.json()["error"]["field"] == "callback_id"
    assert sorted(e["callback_id"] for e in entries[1:]) == sorted(["same", fresh])


def test_task_refusals_name_field_and_limit(gateway_server: GatewayProcess) -> None:
    cases = [
        ({**IMAGE, "tool": "video_generate"}, 422, "tool", "image_generate"),
        ({**IMAGE, "deadline": 4000}, 422, "deadline", "LEASEGATE_MAX_DEADLINE"),
        ({**IMAGE, "deadline": -1}, 422, "deadline", "greater than 0"),
        ({**IMAGE, "args": {"prompt": "x" * 70_000}}, 422, "args", "65536"),
        ({**IMAGE, "args": {"deadline": 5}}, 422, "args.deadline", "reserved"),
        ({**IMAGE, "callback_id": "a:b"}, 422, "callback_id", "':'"),
        ({**IMAGE, "args": ["not", "an", "object"]}, 422, "args", "dictionary"),
        ({"args": {}}, 422, "tool", "required"),
    ]
    with gateway_server.client("runtime") as http:
        ref = start(http)["run"]
        for body, status, field, words in cases:
            reply = http.post(f"/v1/runs/{ref}/tasks", json=body)
            assert reply.status_code == status, (field, reply.text)
            error = reply.json()["error"]
            assert error["field"] == field and words in error["message"], error
        assert http.get(f"/v1/runs/{ref}").json()["pending"] == {}  # nothing was submitted
        http.post(f"/v1/runs/{ref}/release")
        reply = http.post(f"/v1/runs/{ref}/tasks", json=IMAGE)
    assert reply.status_code == 409 and reply.json()["error"]["reason"] == "released"
    with gateway_server.client("other") as http:
        assert http.post(f"/v1/runs/{ref}/tasks", json=IMAGE).status_code == 403


@pytest.mark.parametrize("ending", ["superseded", "released"])
def test_a_late_image_never_reaches_the_next_run(gateway_server: GatewayProcess,
                                                 gateway_worker: WorkerProcess,
                                                 gateway_redis: RedisServer,
                                                 gateway_namespace: str, ending: str) -> None:
    key = session()
    with gateway_server.client("runtime") as http:
        old = start(http, key, prompt="run 1")
        late = http.post(f"/v1/runs/{old['run']}/tasks", json=IMAGE).json()["callback_id"]
        if ending == "released":
            http.post(f"/v1/runs/{old['run']}/release")
        new = start(http, key, prompt="run 2")  # supersedes the old run if still live
        own = http.post(f"/v1/runs/{new['run']}/tasks", json=IMAGE).json()["callback_id"]
        entries = wait_entries(http, new["run"], 2)
        wait_settled(http, old["run"])  # the late image has its verdict
        old_entries = wait_entries(http, old["run"], 1)
        entries = wait_entries(http, new["run"], 2)
    assert [(e["seq"], e["callback_id"]) for e in entries] == [(1, None), (2, own)]
    assert [e["seq"] for e in old_entries] == [1]
    client = python_client(gateway_redis.url, gateway_namespace)
    letters = client.dead_letters.list(session_key=key).letters
    assert [(d.callback_id, d.run_id) for d in letters] == [(late, old["run_id"])]
    assert letters[0].reason in (ending, f"run_{ending}")
    client.redis.close()


def test_a_ref_reaches_only_its_own_incarnation(gateway_server: GatewayProcess,
                                                gateway_redis: RedisServer) -> None:
    with gateway_server.client("runtime") as http:
        ref = start(http)["run"]
        reply = http.get(f"/v1/runs/{ref}/inbox", params={"limit": 0})
        assert reply.status_code == 422 and reply.json()["error"]["field"] == "limit"
        assert isinstance(httpx.get(f"{gateway_server.url}/v1/runs/{ref}/inbox").json()
                          ["error"]["code"], str)  # no token: 401 JSON
