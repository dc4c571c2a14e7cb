"""``/v1/runs``: start, status, renew, park and release over HTTP, against a real ``leasegate
serve`` and Redis; every refusal is JSON naming its cause (lease lost: 409 with the reason)."""

from __future__ import annotations

import base64

import httpx

from tests.support.gateway import GatewayProcess
from tests.support.helpers import wait_until
from tests.support.runtime_api import session, start


def lost(reply: httpx.Response) -> str:
    assert reply.status_code == 409, reply.text
    error = reply.json()["error"]
    assert error["code"] == "lease_lost"
    return str(error["reason"])


def test_start_answers_the_run_ref_and_its_lease(gateway_server: GatewayProcess) -> None:
    key = session()
    with gateway_server.client("runtime") as http:
        body = start(http, key, prompt={"text": "Draw the header"}, ttl=30)
        assert set(body) >= {"run", "run_id", "fence", "session_key", "state"}
        assert (body["session_key"], body["state"], body["fence"]) == (key, "live", 1)
        status = http.get(f"/v1/runs/{body['run']}").json()
        entries = http.get(f"/v1/runs/{body['run']}/inbox").json()["entries"]
    assert status["state"] == "live" and status["pending"] == {}
    assert status["expires_at"] - status["server_time"] > 25  # the ttl, in server time
    assert [(e["seq"], e["role"], e["kind"], e["payload"]) for e in entries] == \
        [(1, "user", "prompt", {"text": "Draw the header"})]


def test_renew_park_and_release(gateway_server: GatewayProcess) -> None:
    with gateway_server.client("runtime") as http:
        ref = start(http, ttl=5)["run"]
        renewed = http.post(f"/v1/runs/{ref}/renew", json={"ttl": 40}).json()
        assert (renewed["state"], renewed["ttl"]) == ("live", 40)
        parked = http.post(f"/v1/runs/{ref}/park", json={"until": 120}).json()
        status = http.get(f"/v1/runs/{ref}").json()
        assert (parked["state"], status["state"]) == ("parked", "parked")
        assert status["parked_until"] == parked["expires_at"]
        assert status["parked_until"] - status["server_time"] > 100
        assert http.post(f"/v1/runs/{ref}/renew").json()["state"] == "live"  # no body: own ttl
        released = http.post(f"/v1/runs/{ref}/release", json={"outcome": "failed"})
        assert released.status_code == 200
        assert released.json() == {"run": ref, "state": "released", "outcome": "failed",
                                   "pending": {}, "cancelled": False}
        again = http.post(f"/v1/runs/{ref}/release", json={"outcome": "failed"})
        assert again.status_code == 200  # a retried release is answered, not refused
        assert lost(http.post(f"/v1/runs/{ref}/renew")) == "released"
        assert lost(http.post(f"/v1/runs/{ref}/park", json={"until": 5})) == "released"


def test_a_superseded_run_is_409_superseded(gateway_server: GatewayProcess) -> None:
    key = session("agent:")
    with gateway_server.client("runtime") as http:
        first = start(http, key)
        second = start(http, key)
        assert (second["fence"], second["previous_run_id"]) == (2, first["run_id"])
        assert lost(http.post(f"/v1/runs/{first['run']}/renew")) == "superseded"
        assert lost(http.post(f"/v1/runs/{first['run']}/release")) == "superseded"
        status = http.get(f"/v1/runs/{first['run']}").json()
        assert (status["state"], status["superseded_by"]) == ("superseded", second["run_id"])
        assert http.get(f"/v1/runs/{second['run']}").json()["state"] == "live"


def test_an_expired_run_is_409_expired(gateway_server: GatewayProcess) -> None:
    with gateway_server.client("runtime") as http:
        ref = start(http, ttl=0.2)["run"]
        wait_until(lambda: http.get(f"/v1/runs/{ref}").json()["state"] == "expired",
                   timeout=10, message="the run to expire")
        assert lost(http.post(f"/v1/runs/{ref}/renew")) == "expired"
        assert lost(http.post(f"/v1/runs/{ref}/tasks",
                              json={"tool": "image_generate", "args": {}})) == "expired"


def test_exclusive_while_held_is_409_lease_held(gateway_server: GatewayProcess) -> None:
    key = session()
    with gateway_server.client("runtime") as http:
        holder = start(http, key)
        reply = http.post("/v1/runs", json={"session_key": key, "prompt": "x", "ttl": 5,
                                            "policy": "exclusive"})
    assert reply.status_code == 409
    error = reply.json()["error"]
    assert (error["code"], error["field"]) == ("lease_held", "session_key")
    assert holder["run_id"] in error["message"]


def test_roles_and_session_prefixes_are_enforced(gateway_server: GatewayProcess) -> None:
    body = {"session_key": session(), "prompt": "x", "ttl": 5}
    for role in ("operator", "viewer"):
        with gateway_server.client(role) as http:
            reply = http.post("/v1/runs", json=body)
        assert (reply.status_code, reply.json()["error"]["code"]) == (403, "forbidden"), role
    with gateway_server.client(None) as http:
        assert http.post("/v1/runs", json=body).status_code == 401
    with gateway_server.client("runtime") as http:
        outside = http.post("/v1/runs", json={**body, "session_key": "other:job"})
        ref = start(http)["run"]
    assert outside.status_code == 403
    assert outside.json()["error"]["field"] == "session_key"
    assert "cron:, agent:" in outside.json()["error"]["message"]
    with gateway_server.client("other") as http:  # another token's run ref: 403, not served
        for reply in (http.get(f"/v1/runs/{ref}"), http.post(f"/v1/runs/{ref}/renew"),
                      http.get(f"/v1/runs/{ref}/inbox"),
                      http.post(f"/v1/runs/{ref}/release")):
            assert reply.status_code == 403, reply.text
            assert reply.json()["error"]["code"] == "session_forbidden"
    with gateway_server.client("operator") as http:
        assert http.get(f"/v1/runs/{ref}").status_code == 403


def test_a_tampered_or_foreign_ref_is_404(gateway_server: GatewayProcess) -> None:
    with gateway_server.client("runtime") as http:
        ref = start(http)["run"]
        body, mac = ref.split(".")
        # the same session, another run id: the MAC no longer matches
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(b'",', b'x",', 1)
        forged = base64.urlsafe_b64encode(raw).decode().rstrip("=") + "." + mac
        for bad in (forged, ref[:-2] + ("AA" if not ref.endswith("AA") else "BB"), "nonsense"):
            reply = http.get(f"/v1/runs/{bad}")
            assert reply.status_code == 404, bad
            assert reply.json()["error"]["code"] == "run_not_found"
            assert reply.json()["error"]["field"] == "run"
        assert http.get(f"/v1/runs/{ref}").status_code == 200


def test_bad_fields_are_422_naming_field_and_limit(gateway_server: GatewayProcess) -> None:
    good = {"session_key": session(), "prompt": "x", "ttl": 5}
    cases = [
        ({**good, "ttl": 7200}, "ttl", "3600"),
        ({**good, "ttl": 0}, "ttl", "greater than 0"),
        ({**good, "prompt": "p" * (300 * 1024)}, "prompt", "262144"),
        ({**good, "policy": "steal"}, "policy", "supersede"),
        ({k: v for k, v in good.items() if k != "ttl"}, "ttl", "required"),
        ({**good, "tll": 5}, "tll", "not permitted"),
        ({**good, "session_key": "cron:{x}"}, "session_key", "hash tag"),
        ({**good, "session_key": "cron:" + "k" * 600}, "session_key", "512"),
    ]
    with gateway_server.client("runtime") as http:
        for body, field, limit in cases:
            reply = http.post("/v1/runs", json=body)
            assert reply.status_code == 422, (field, reply.text)
            error = reply.json()["error"]
            assert error["field"] == field and limit in error["message"], error
        bad_json = http.post("/v1/runs", content=b'{"session_key": ',
                             headers={"content-type": "application/json"})
        assert bad_json.status_code == 422 and bad_json.json()["error"]["code"] == "bad_json"
        ref = start(http)["run"]
        for path, body, field in ((f"/v1/runs/{ref}/renew", {"ttl": 4000}, "ttl"),
                                  (f"/v1/runs/{ref}/park", {"until": 10**6}, "until"),
                                  (f"/v1/runs/{ref}/release", {"outcome": "done"}, "outcome")):
            reply = http.post(path, json=body)
            assert (reply.status_code, reply.json()["error"]["field"]) == (422, field), path
        too_big = http.post("/v1/runs", content=b"x" * (2 << 20),
                            headers={"content-type": "application/json"})
        assert too_big.status_code == 413


def test_openapi_names_every_runtime_operation(gateway_server: GatewayProcess) -> None:
    schema = httpx.get(f"{gateway_server.url}/openapi.json").json()
    ops = {op["operationId"]: (path, method, op) for path, item in schema["paths"].items()
           for method, op in item.items()}
    for name in ("startRun", "getRun", "renewRun", "parkRun", "releaseRun", "submitTask",
                 "readInbox", "streamEvents", "fetchArtifact"):
        path, _, op = ops[name]
        assert path.startswith(("/v1/runs", "/v1/artifacts")), name
        assert any(s.startswith("2") for s in op["responses"]), name
        errors = [r for s, r in op["responses"].items() if s[0] in "45"]
        assert errors and all(r["content"]["application/json"]["schema"]["$ref"] ==
                              "#/components/schemas/Error" for r in errors), name
    assert {"Error", "RunStarted", "RunStatus", "InboxEntry"} <= set(
        schema["components"]["schemas"])
    assert "text/event-stream" in ops["streamEvents"][2]["responses"]["200"]["content"]
    assert len(ops) == sum(len(item) for item in schema["paths"].values())  # ids are unique
