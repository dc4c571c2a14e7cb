"""``/v1/dead-letters`` and ``/v1/stats`` against a real ``leasegate serve`` and Redis, with
letters the real gate quarantined and real PNGs in the server's artifact store."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from tests.support.console import Letters, noisy_png, session_key
from tests.support.gateway import GatewayProcess

# celery dlq show --json prints these; the API adds thumbnail_url
CLI_FIELDS = {"id", "reason", "state", "detail", "session_key", "run_id", "fence",
              "owner_run_id", "owner_fence", "tool", "task_id", "callback_id", "kind",
              "run_state", "submitted_at", "completed_at", "quarantined_at", "deadline_at",
              "age_seconds", "payload", "payload_truncated", "artifacts", "raw_base64",
              "raw_size", "claimed_session_key", "claimed_tool", "redelivered_to", "history"}


@pytest.fixture
def ops(gateway_server: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway_server.client("operator") as http:
        yield http


def listing(http: httpx.Client, **params: object) -> list[dict[str, object]]:
    """Every letter the filters select, page by page."""
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        reply = http.get("/v1/dead-letters", params={**params, "limit": 2,
                                                     **({"cursor": cursor} if cursor else {})})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        seen += body["letters"]
        cursor = body["cursor"]
        if cursor is None:
            return seen


def test_a_letter_has_the_cli_shape_and_a_thumbnail_url_only_with_an_image(
        ops: httpx.Client, letters: Letters) -> None:
    key = session_key()
    with_image, _ = letters.orphans(key, 1)
    without, _ = letters.orphans(key, 1, images=False)
    found = {x["id"]: x for x in listing(ops, session=key)}
    assert set(found) == {with_image[0], without[0]}
    image_letter, plain_letter = found[with_image[0]], found[without[0]]
    assert set(image_letter) == CLI_FIELDS | {"thumbnail_url"}
    digest = image_letter["artifacts"][0]["digest"]  # type: ignore[index]
    assert image_letter["thumbnail_url"] == \
        f"/v1/dead-letters/{with_image[0]}/thumbnail?digest={digest}"
    assert plain_letter["thumbnail_url"] is None and plain_letter["artifacts"] == []
    assert image_letter["reason"] == "superseded" and image_letter["kind"] == "result"
    shown = ops.get(f"/v1/dead-letters/{with_image[0]}").json()
    assert shown["history"][0]["state"] == "quarantined" and shown["id"] == with_image[0]


def test_each_filter_selects_and_pages_through_its_letters(ops: httpx.Client,
                                                           letters: Letters) -> None:
    key = session_key()
    results, _ = letters.orphans(key, 3, images=False)
    errors, _ = letters.orphans(key, 2, kind="error")
    other_tool, _ = letters.orphans(key, 1, images=False, tool="other_tool")
    assert {x["id"] for x in listing(ops, session=key)} == set(results + errors + other_tool)
    assert {x["id"] for x in listing(ops, session=key, kind="error")} == set(errors)
    assert {x["id"] for x in listing(ops, session=key, tool="other_tool")} == set(other_tool)
    assert {x["id"] for x in listing(ops, session=key, reason="superseded",
                                     state="quarantined", since="1h")} == \
        set(results + errors + other_tool)
    assert listing(ops, session=key, state="redelivered") == []
    ids = [x["id"] for x in listing(ops, session=key)]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, str(i).split("-"))), reverse=True)


@pytest.mark.parametrize(("params", "field"), [
    ({"reason": "late"}, "reason"), ({"kind": "image"}, "kind"),
    ({"state": "discarded"}, "state"), ({"since": "yesterday"}, "since"),
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"cursor": "q:1"}, "cursor"),
    ({"session": "x" * 513}, "session"),
])
def test_a_bad_filter_is_a_422_naming_it(ops: httpx.Client, params: dict[str, str],
                                         field: str) -> None:
    reply = ops.get("/v1/dead-letters", params=params)
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["field"] == field
    assert field in reply.json()["error"]["message"]


def test_who_may_read_and_who_may_act(gateway_server: GatewayProcess, letters: Letters) -> None:
    ids, _ = letters.orphans(session_key(), 1)
    letter = f"/v1/dead-letters/{ids[0]}"
    assert httpx.get(gateway_server.url + "/v1/dead-letters").status_code == 401
    with gateway_server.client("runtime") as runtime:
        assert runtime.get("/v1/dead-letters").status_code == 403
        assert runtime.get("/v1/stats").status_code == 403
    with gateway_server.client("viewer") as viewer:
        assert viewer.get("/v1/dead-letters").status_code == 200
        assert viewer.get(letter).status_code == 200
        assert viewer.get(f"{letter}/thumbnail").status_code == 200
        for action, body in (("replay", {"to_current": True}), ("discard", None)):
            reply = viewer.post(f"{letter}/{action}", json=body)
            assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden"
        assert viewer.post("/v1/redrives", json={"to_current": True}).status_code == 403
    assert letters.state(ids[0]) == "quarantined"


def test_an_unknown_letter_is_a_404(ops: httpx.Client) -> None:
    for path in ("/v1/dead-letters/1-0", "/v1/dead-letters/not-an-id",
                 "/v1/dead-letters/1-0/thumbnail", "/v1/dead-letters/1-0/image"):
        reply = ops.get(path)
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found", path
    assert ops.post("/v1/dead-letters/1-0/replay", json={"to_current": True}).status_code == 404
    assert ops.post("/v1/dead-letters/1-0/discard").status_code == 404


def test_replay_to_current_moves_the_letter_once(ops: httpx.Client, letters: Letters) -> None:
    key = session_key()
    ids, live = letters.orphans(key, 1)
    reply = ops.post(f"/v1/dead-letters/{ids[0]}/replay", json={"to_current": True})
    assert reply.status_code == 200, reply.text
    assert reply.json()["run_id"] == live.run_id and reply.json()["seq"] == 2
    again = ops.post(f"/v1/dead-letters/{ids[0]}/replay", json={"run_id": live.run_id})
    assert again.status_code == 409
    assert again.json()["error"]["reason"] == "already_redelivered"
    assert letters.recovered(live) == ids and letters.state(ids[0]) == "redelivered"
    assert [x["id"] for x in listing(ops, session=key, state="quarantined")] == []


def test_replay_refusals_leave_the_letter_a_dead_letter(ops: httpx.Client,
                                                        letters: Letters) -> None:
    key = session_key()
    ids, live = letters.orphans(key, 1)
    errors, _ = letters.orphans(session_key(), 1, kind="error")
    for body, field in (({}, "to_current"), ({"to_current": True, "run_id": live.run_id},
                                             "run_id"), ({"to_current": "maybe"}, "to_current"),
                        ({"to_current": True, "extra": 1}, "extra")):
        reply = ops.post(f"/v1/dead-letters/{ids[0]}/replay", json=body)
        assert reply.status_code == 422 and reply.json()["error"]["field"] == field, body
    refused = ops.post(f"/v1/dead-letters/{errors[0]}/replay", json={"to_current": True})
    assert refused.status_code == 409 and refused.json()["error"]["reason"] == "error_kind"
    assert refused.json()["error"]["field"] == "force"
    live.release("completed")
    gone = ops.post(f"/v1/dead-letters/{ids[0]}/replay", json={"to_current": True})
    assert gone.status_code == 409 and gone.json()["error"]["reason"] == "no_current_run"
    named = ops.post(f"/v1/dead-letters/{ids[0]}/replay", json={"run_id": live.run_id})
    assert named.status_code == 409 and named.json()["error"]["reason"] == "target_not_alive"
    assert letters.state(ids[0]) == "quarantined" and letters.state(errors[0]) == "quarantined"


def test_a_kind_error_letter_replays_with_force(ops: httpx.Client, letters: Letters) -> None:
    errors, live = letters.orphans(session_key(), 1, kind="error")
    reply = ops.post(f"/v1/dead-letters/{errors[0]}/replay",
                     json={"to_current": True, "force": True})
    assert reply.status_code == 200 and letters.recovered(live) == errors


def test_discard_then_discard_again_is_409(ops: httpx.Client, letters: Letters) -> None:
    ids, _ = letters.orphans(session_key(), 1)
    first = ops.post(f"/v1/dead-letters/{ids[0]}/discard")
    assert first.json() == {"id": ids[0], "previous_state": "quarantined", "state": "discarded"}
    second = ops.post(f"/v1/dead-letters/{ids[0]}/discard")
    assert second.status_code == 409 and second.json()["error"]["code"] == "gone"
    assert ops.get(f"/v1/dead-letters/{ids[0]}/thumbnail").status_code == 404  # no refs now


def test_a_cookie_session_must_echo_its_csrf_token(gateway_server: GatewayProcess,
                                                   letters: Letters) -> None:
    ids, _ = letters.orphans(session_key(), 1)
    with httpx.Client(base_url=gateway_server.url) as browser:
        login = browser.get("/login")
        csrf = login.text.split('name="csrf" value="')[1].split('"')[0]
        browser.post("/login", data={"token": "op-token-0123456789", "csrf": csrf})
        assert browser.get("/v1/whoami").json()["name"] == "ops"
        bare = browser.post(f"/v1/dead-letters/{ids[0]}/discard")
        assert bare.status_code == 403 and bare.json()["error"]["code"] == "csrf"
        page = browser.get("/dead-letters").text
        token = page.split('name="csrf-token" content="')[1].split('"')[0]
        ok = browser.post(f"/v1/dead-letters/{ids[0]}/discard", headers={"X-CSRF-Token": token})
        assert ok.status_code == 200


def test_the_thumbnail_is_made_once_small_and_cached(ops: httpx.Client,
                                                     letters: Letters) -> None:
    ids, _ = letters.orphans(session_key(), 1, files=[noisy_png(2048)])
    letter = ops.get(f"/v1/dead-letters/{ids[0]}").json()
    digest = letter["artifacts"][0]["digest"]
    first = ops.get(letter["thumbnail_url"])
    assert first.status_code == 200 and first.headers["content-type"] == "image/webp"
    assert len(first.content) <= 64 * 1024
    assert "max-age" in first.headers["cache-control"]
    with Image.open(io.BytesIO(first.content)) as thumb:
        assert max(thumb.size) <= 256 and thumb.format == "WEBP"
    cached = letters.thumbnail_file(digest)
    assert cached.read_bytes() == first.content
    made_at = cached.stat().st_mtime_ns
    assert ops.get(letter["thumbnail_url"]).content == first.content
    assert cached.stat().st_mtime_ns == made_at  # served from the file, not made again
    again = ops.get(letter["thumbnail_url"], headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def test_the_full_image_is_the_stored_png(ops: httpx.Client, letters: Letters) -> None:
    ids, _ = letters.orphans(session_key(), 1)
    letter = ops.get(f"/v1/dead-letters/{ids[0]}").json()
    art = letter["artifacts"][0]
    reply = ops.get(art["url"])
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    assert reply.content == letters.store.get(art["digest"])
    assert reply.headers["x-content-type-options"] == "nosniff"


def test_stats_count_held_letters(ops: httpx.Client, letters: Letters) -> None:
    letters.orphans(session_key(), 2, images=False, tool="stats_tool")
    body = ops.get("/v1/stats").json()
    assert body["by_tool"]["stats_tool"] == 2
    assert body["held"] >= 2 and body["by_reason"]["superseded"] >= 2


def test_openapi_lists_the_console_api(gateway_server: GatewayProcess) -> None:
    paths = httpx.get(gateway_server.url + "/openapi.json").json()["paths"]
    for path in ("/v1/dead-letters", "/v1/dead-letters/{letter_id}",
                 "/v1/dead-letters/{letter_id}/replay", "/v1/dead-letters/{letter_id}/discard",
                 "/v1/redrives", "/v1/redrives/{redrive_id}", "/v1/redrives/{redrive_id}/cancel",
                 "/v1/stats"):
        assert path in paths, path
    body = paths["/v1/dead-letters/{letter_id}/replay"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("ReplayBody")
