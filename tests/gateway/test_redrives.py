"""``/v1/redrives`` against two real ``leasegate serve`` processes on one Redis: a redrive one
process runs is read and cancelled through the other, and every letter reaches a live run's
inbox at most once, whichever process redrives it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.console import Letters, session_key
from tests.support.gateway import GatewayProcess
from tests.support.helpers import wait_until


@pytest.fixture(scope="module")
def second_server(gateway_server: GatewayProcess, gateway_namespace: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Another process behind the 'same address': same Redis, namespace and artifacts."""
    workdir: Path = tmp_path_factory.mktemp("second")
    with GatewayProcess(gateway_server.env["LEASEGATE_REDIS_URL"], gateway_namespace, workdir,
                        LEASEGATE_ARTIFACT_DIR=gateway_server.env["LEASEGATE_ARTIFACT_DIR"]
                        ) as server:
        yield server


def finished(http: httpx.Client, redrive_id: str) -> dict[str, object]:
    seen: list[dict[str, object]] = []

    def done() -> bool:
        seen.append(http.get(f"/v1/redrives/{redrive_id}").json())
        return seen[-1]["state"] != "running"

    wait_until(done, timeout=30, interval=0.05, message=f"redrive {redrive_id} to finish")
    return seen[-1]


def test_a_redrive_replays_every_match_into_its_sessions_current_run(
        gateway_server: GatewayProcess, letters: Letters) -> None:
    key = session_key()
    ids, _ = letters.orphans(key, 12)
    errors, live = letters.orphans(key, 2, kind="error")  # live: the session's current run
    with gateway_server.client() as http:
        reply = http.post("/v1/redrives", json={"session": key, "to_current": True})
        assert reply.status_code == 202, reply.text
        assert reply.headers["location"] == f"/v1/redrives/{reply.json()['id']}"
        final = finished(http, reply.json()["id"])
    assert final["state"] == "done"
    assert (final["total"], final["replayed"], final["skipped"]) == (12, 12, 2)
    assert sorted(letters.recovered(live)) == sorted(ids)
    assert {letters.state(i) for i in errors} == {"quarantined"}


def test_a_dry_run_answers_with_the_count_at_once(gateway_server: GatewayProcess,
                                                 letters: Letters) -> None:
    key = session_key()
    ids, _ = letters.orphans(key, 4, images=False)
    letters.orphans(key, 1, kind="error")
    with gateway_server.client() as http:
        reply = http.post("/v1/redrives", json={"session": key, "dry_run": True})
    assert reply.status_code == 200
    body = reply.json()
    assert (body["state"], body["total"], body["skipped"], body["done"]) == ("done", 4, 1, 0)
    assert {letters.state(i) for i in ids} == {"quarantined"}


def test_any_process_reads_and_cancels_a_redrive_another_runs(
        gateway_server: GatewayProcess, second_server: GatewayProcess,
        letters: Letters) -> None:
    key = session_key()
    ids, live = letters.orphans(key, 40, images=False)
    with gateway_server.client() as first, second_server.client() as second:
        started = first.post("/v1/redrives", json={"session": key, "to_current": True,
                                                   "rate": 4}).json()
        url = f"/v1/redrives/{started['id']}"
        wait_until(lambda: second.get(url).json()["done"] >= 1, timeout=15,
                   message="progress seen by the other process")
        cancel = second.post(url + "/cancel")
        assert cancel.status_code == 200 and cancel.json()["state"] == "running"
        final = finished(second, started["id"])
        assert final["state"] == "cancelled" and 1 <= final["done"] < 40  # type: ignore[operator]
        late = first.post(url + "/cancel")
        assert late.status_code == 409 and late.json()["error"]["state"] == "cancelled"
    assert len(letters.recovered(live)) == final["replayed"]
    assert {letters.state(i) for i in ids} == {"quarantined", "redelivered"}


def test_two_processes_redriving_the_same_letters_replay_each_once(
        gateway_server: GatewayProcess, second_server: GatewayProcess,
        letters: Letters) -> None:
    key = session_key()
    ids, live = letters.orphans(key, 60, images=False)
    results: list[dict[str, object]] = []
    barrier = threading.Barrier(2)

    def redrive(server: GatewayProcess) -> None:
        with server.client() as http:
            barrier.wait()
            started = http.post("/v1/redrives", json={"session": key, "to_current": True})
            results.append(finished(http, started.json()["id"]))

    threads = [threading.Thread(target=redrive, args=(s,))
               for s in (gateway_server, second_server)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(int(r["replayed"]) for r in results) == 60  # type: ignore[call-overload]
    recovered = letters.recovered(live)
    assert sorted(recovered) == sorted(ids) and len(set(recovered)) == 60


@pytest.mark.parametrize(("body", "field"), [
    ({"session": "cron:x"}, "to_current"), ({"to_current": True, "rate": 0}, "rate"),
    ({"to_current": True, "rate": "fast"}, "rate"), ({"to_current": True, "kind": "x"}, "kind"),
    ({"to_current": True, "run_id": "r1"}, "run_id"), ({"to_current": True, "since": "soon"},
                                                       "since"),
    ({"to_current": True, "state": "expired"}, "state"), ({"to_current": True, "x": 1}, "x"),
])
def test_a_bad_redrive_is_a_422_naming_the_field(gateway_server: GatewayProcess,
                                                 body: dict[str, object], field: str) -> None:
    with gateway_server.client() as http:
        reply = http.post("/v1/redrives", json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["field"] == field


def test_redrive_refusals(gateway_server: GatewayProcess) -> None:
    assert httpx.post(gateway_server.url + "/v1/redrives", json={"to_current": True}
                      ).status_code == 401
    with gateway_server.client("viewer") as viewer:
        assert viewer.post("/v1/redrives", json={"to_current": True}).status_code == 403
        assert viewer.get("/v1/redrives/" + "0" * 32).status_code == 404
        assert viewer.post("/v1/redrives/" + "0" * 32 + "/cancel").status_code == 403
    with gateway_server.client() as http:
        reply = http.post("/v1/redrives/" + "0" * 32 + "/cancel")
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"
