"""``GET /v1/artifacts/{digest}``: real images from a real worker, served to the tokens that
may see an entry (or dead letter) referencing them, with byte ranges; 404 for everything
else, and never a path on disk in a response."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from leasegate.broker import ArtifactRef
from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import WorkerProcess
from tests.support.gateway import GatewayProcess
from tests.support.runtime_api import python_client, session, start, wait_entries

pytestmark = pytest.mark.e2e
IMAGE = {"tool": "image_generate", "args": {"prompt": "a lighthouse", "size": "256x256"}}


@pytest.fixture(scope="module")
def image(gateway_server: GatewayProcess, gateway_worker: WorkerProcess) -> dict[str, Any]:
    """A run with one delivered image: its ref and the image's artifact link."""
    with gateway_server.client("runtime") as http:
        ref = start(http)["run"]
        http.post(f"/v1/runs/{ref}/tasks", json=IMAGE)
        [art] = wait_entries(http, ref, 2)[1]["artifacts"]
    return {"ref": ref, **art}


def no_path(reply: httpx.Response, server: GatewayProcess) -> bool:
    where = server.env["LEASEGATE_ARTIFACT_DIR"]
    return where not in reply.text[:10_000] and not any(
        where in v for v in reply.headers.values())


def test_the_run_owner_gets_the_image(gateway_server: GatewayProcess,
                                      image: dict[str, Any]) -> None:
    with gateway_server.client("runtime") as http:
        reply = http.get(image["url"])
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "image/png"
    assert hashlib.sha256(reply.content).hexdigest() == image["digest"]
    assert len(reply.content) == image["size"] and reply.headers["accept-ranges"] == "bytes"
    assert no_path(reply, gateway_server)


def test_byte_ranges(gateway_server: GatewayProcess, image: dict[str, Any]) -> None:
    with gateway_server.client("runtime") as http:
        whole = http.get(image["url"]).content
        head = http.get(image["url"], headers={"Range": "bytes=0-7"})
        tail = http.get(image["url"], headers={"Range": "bytes=-10"})
        past = http.get(image["url"], headers={"Range": f"bytes={len(whole) + 5}-"})
    assert (head.status_code, head.content) == (206, b"\x89PNG\r\n\x1a\n")
    assert head.headers["content-range"] == f"bytes 0-7/{len(whole)}"
    assert (tail.status_code, tail.content) == (206, whole[-10:])
    assert past.status_code == 416


def test_who_may_not_see_it(gateway_server: GatewayProcess, image: dict[str, Any]) -> None:
    digest, ref = image["digest"], image["ref"]
    with gateway_server.client("runtime") as http:
        elsewhere = start(http)["run"]  # a run of the same token that does not reference it
        replies = {
            "no run": http.get(f"/v1/artifacts/{digest}"),
            "other run": http.get(f"/v1/artifacts/{digest}", params={"run": elsewhere}),
            "unknown digest": http.get(f"/v1/artifacts/{'0' * 64}", params={"run": ref}),
            "tampered ref": http.get(f"/v1/artifacts/{digest}", params={"run": ref + "x"}),
        }
        malformed = http.get("/v1/artifacts/..%2F..%2Fetc%2Fpasswd", params={"run": ref})
    for what, reply in replies.items():
        assert reply.status_code == 404, what
        assert no_path(reply, gateway_server), what
    assert replies["no run"].json()["error"]["code"] == "artifact_not_found"
    assert malformed.status_code in (404, 422) and no_path(malformed, gateway_server)
    with gateway_server.client("other") as http:  # another token's run: its prefixes say no
        assert http.get(image["url"]).status_code == 403
    assert httpx.get(gateway_server.url + image["url"]).status_code == 401


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_console_roles_see_any_stored_artifact(gateway_server: GatewayProcess,
                                               image: dict[str, Any], role: str) -> None:
    with gateway_server.client(role) as http:
        reply = http.get(f"/v1/artifacts/{image['digest']}")
        missing = http.get(f"/v1/artifacts/{'1' * 64}")
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    assert missing.status_code == 404


def test_a_late_image_is_the_dead_letters_not_the_next_runs(
        gateway_server: GatewayProcess, gateway_redis: RedisServer, gateway_namespace: str,
        image: dict[str, Any]) -> None:
    key = session()
    with gateway_server.client("runtime") as http:
        old = start(http, key)
        new = start(http, key)  # supersedes the old run
    client = python_client(gateway_redis.url, gateway_namespace)
    # the old run's worker finishing late: a real image, judged by the real gate
    late = client.attach(key, old["run_id"]).envelope("image_generate", {"prompt": "x"})
    ref = ArtifactRef(image["digest"], image["size"], image["media_type"])
    verdict = client.gate.deliver(late, {"images": 1}, [ref])
    [letter] = client.dead_letters.list(session_key=key).letters
    client.redis.close()
    assert verdict.dead_letter_id == letter.id and letter.artifacts == [ref]
    with gateway_server.client("runtime") as http:
        assert [e["callback_id"] for e in wait_entries(http, new["run"], 1)] == [None]
        for run in (new["run"], old["run"]):  # in neither inbox: no runtime sees it there
            reply = http.get(f"/v1/artifacts/{ref.digest}", params={"run": run})
            assert reply.status_code == 404
    with gateway_server.client("viewer") as http:
        by_letter = http.get(f"/v1/artifacts/{ref.digest}", params={"letter": letter.id})
        wrong_letter = http.get(f"/v1/artifacts/{'2' * 64}", params={"letter": letter.id})
        no_letter = http.get(f"/v1/artifacts/{ref.digest}", params={"letter": "0-1"})
    assert by_letter.status_code == 200
    assert hashlib.sha256(by_letter.content).hexdigest() == ref.digest
    assert (wrong_letter.status_code, no_letter.status_code) == (404, 404)
