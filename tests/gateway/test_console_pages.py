"""The console's pages over HTTP, as a browser without JavaScript sees them: login, the list
with thumbnails and filters, a letter, the replay and discard buttons (CSRF-checked), the
bulk redrive form, the runs page. The browser tests (test_console_browser.py) add a real
Chromium on top."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.console import Letters, session_key
from tests.support.gateway import TOKENS, GatewayProcess
from tests.support.helpers import wait_until


@contextmanager
def log_in(server: GatewayProcess, role: str = "operator",
           next_page: str = "/dead-letters") -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as browser:
        form = browser.get("/login", params={"next": next_page})
        nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert nonce, form.text
        done = browser.post("/login", data={"token": TOKENS[role], "csrf": nonce.group(1),
                                            "next": next_page})
        assert done.status_code == 303, done.text
        assert done.headers["location"] == next_page
        yield browser


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found
    return found.group(1)


def row_ids(page: str) -> list[str]:
    return re.findall(r'<tr data-letter="([^"]+)"', page)


@pytest.fixture
def operator_browser(gateway_server: GatewayProcess) -> Iterator[httpx.Client]:
    with log_in(gateway_server) as browser:
        yield browser


def test_a_visitor_is_sent_to_the_login_form_and_back(gateway_server: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway_server.url) as anonymous:
        reply = anonymous.get("/dead-letters?kind=result")
        assert reply.status_code == 303
        assert reply.headers["location"] == "/login?next=%2Fdead-letters%3Fkind%3Dresult"
    with log_in(gateway_server, next_page="/runs") as browser:
        assert browser.get("/runs").status_code == 200
        page = browser.get("/dead-letters")
        logout = browser.post("/logout", data={"csrf": csrf_of(page.text)})
        assert logout.status_code == 303
        assert browser.get("/dead-letters").status_code == 303


def test_login_refuses_bad_tokens_runtime_tokens_and_stale_forms(
        gateway_server: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway_server.url) as browser:
        nonce = re.search(r'name="csrf" value="([^"]+)"', browser.get("/login").text)
        assert nonce
        wrong = browser.post("/login", data={"token": "nope", "csrf": nonce.group(1)})
        assert wrong.status_code == 401 and "Unknown token" in wrong.text
        runtime = browser.post("/login", data={"token": TOKENS["runtime"],
                                               "csrf": nonce.group(1)})
        assert runtime.status_code == 403 and "runtime token" in runtime.text
        stale = browser.post("/login", data={"token": TOKENS["operator"], "csrf": "forged"})
        assert stale.status_code == 403
        assert "leasegate_console" not in browser.cookies


def test_login_never_redirects_off_site(gateway_server: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway_server.url) as browser:
        nonce = re.search(r'name="csrf" value="([^"]+)"', browser.get("/login").text)
        assert nonce
        reply = browser.post("/login", data={"token": TOKENS["operator"],
                                             "csrf": nonce.group(1),
                                             "next": "//evil.example/x"})
        assert reply.headers["location"] == "/dead-letters"


def test_the_list_shows_thumbnails_kind_reason_session_and_owning_run(
        operator_browser: httpx.Client, letters: Letters) -> None:
    key = session_key()
    ids, _ = letters.orphans(key, 2)
    page = operator_browser.get("/dead-letters", params={"session": key}).text
    assert row_ids(page) == sorted(ids, reverse=True)
    for letter_id in ids:
        assert f'src="/v1/dead-letters/{letter_id}/thumbnail?digest=' in page
    assert "superseded" in page and key in page and "kind-result" in page
    thumb = re.search(r'src="(/v1/dead-letters/[^"]+/thumbnail[^"]+)"', page)
    assert thumb and operator_browser.get(thumb.group(1).replace("&amp;", "&")
                                          ).headers["content-type"] == "image/webp"


def test_the_list_filters_and_pages(operator_browser: httpx.Client, letters: Letters) -> None:
    key = session_key()
    ids, _ = letters.orphans(key, 55, images=False)
    errors, _ = letters.orphans(key, 1, kind="error")
    first = operator_browser.get("/dead-letters", params={"session": key}).text
    assert len(row_ids(first)) == 50
    more = re.search(r'href="([^"]+)" id="next"', first)
    assert more
    second = operator_browser.get(more.group(1).replace("&amp;", "&")).text
    assert set(row_ids(first)) | set(row_ids(second)) == set(ids + errors)
    only_errors = operator_browser.get("/dead-letters", params={"session": key,
                                                                "kind": "error"}).text
    assert row_ids(only_errors) == errors
    bad = operator_browser.get("/dead-letters", params={"kind": "picture"})
    assert bad.status_code == 422 and "kind must be one of" in bad.text


def test_the_letter_page_shows_history_image_payload(operator_browser: httpx.Client,
                                                     letters: Letters) -> None:
    key = session_key()
    ids, live = letters.orphans(key, 1)
    page = operator_browser.get(f"/dead-letters/{ids[0]}").text
    history = page.split('id="history"')[1]
    assert "<td>quarantined</td>" in history and "superseded" in page
    assert f'src="/v1/dead-letters/{ids[0]}/image?digest=' in page
    assert f'"prompt": "{key} #0"' in page.split('id="payload"')[1].replace("&#34;", '"')
    assert live.run_id in page  # the current run a replay would go to


def test_the_letter_page_shows_raw_bytes_of_undecodable_input(
        operator_browser: httpx.Client, letters: Letters) -> None:
    letter_id = letters.malformed()
    page = operator_browser.get(f"/dead-letters/{letter_id}").text
    raw = letters.client.dead_letters.get(letter_id).raw
    assert raw and 'id="raw"' in page and raw[:16].hex(" ") in page


def test_the_replay_button_moves_the_letter_out_of_the_list(operator_browser: httpx.Client,
                                                            letters: Letters) -> None:
    key = session_key()
    ids, live = letters.orphans(key, 2)
    page = operator_browser.get("/dead-letters", params={"session": key}).text
    back = f"/dead-letters?session={key}"
    reply = operator_browser.post(f"/dead-letters/{ids[0]}/replay",
                                  data={"csrf": csrf_of(page), "back": back})
    assert reply.status_code == 303
    after = operator_browser.get(reply.headers["location"]).text
    assert "replayed " + ids[0] in after
    assert row_ids(after) == [ids[1]]
    assert letters.recovered(live) == [ids[0]]
    discard = operator_browser.post(f"/dead-letters/{ids[1]}/discard",
                                    data={"csrf": csrf_of(page), "back": back})
    assert row_ids(operator_browser.get(discard.headers["location"]).text) == []


def test_buttons_need_the_csrf_token_and_an_operator(gateway_server: GatewayProcess,
                                                     operator_browser: httpx.Client,
                                                     letters: Letters) -> None:
    ids, _ = letters.orphans(session_key(), 1)
    forged = operator_browser.post(f"/dead-letters/{ids[0]}/replay", data={"csrf": "x"})
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf"
    with log_in(gateway_server, "viewer") as viewer:
        page = viewer.get(f"/dead-letters/{ids[0]}").text
        assert 'id="replay"' not in page and 'id="discard"' not in page
        acted = viewer.post(f"/dead-letters/{ids[0]}/discard", data={"csrf": csrf_of(page)})
        assert acted.status_code == 403
    assert letters.state(ids[0]) == "quarantined"


def test_the_redrive_form_counts_then_starts(operator_browser: httpx.Client,
                                            letters: Letters) -> None:
    key = session_key()
    ids, live = letters.orphans(key, 3, images=False)
    csrf = csrf_of(operator_browser.get("/redrive").text)
    count = operator_browser.post("/redrive", data={"csrf": csrf, "session": key,
                                                    "action": "count"})
    assert "3 letters would be replayed" in count.text
    bad = operator_browser.post("/redrive", data={"csrf": csrf, "session": key,
                                                  "rate": "fast", "action": "start"})
    assert bad.status_code == 422 and "rate" in bad.text
    started = operator_browser.post("/redrive", data={"csrf": csrf, "session": key,
                                                      "rate": "100", "action": "start"})
    assert started.status_code == 303 and started.headers["location"].startswith("/redrives/")
    progress = operator_browser.get(started.headers["location"]).text
    assert "<progress" in progress and 'id="cancel"' in progress
    url = "/v1" + started.headers["location"]
    wait_until(lambda: operator_browser.get(url).json()["state"] == "done", timeout=30,
               message="the redrive to finish")
    assert sorted(letters.recovered(live)) == sorted(ids)


def test_the_runs_page_lists_live_runs_with_their_inbox(operator_browser: httpx.Client,
                                                        letters: Letters) -> None:
    key = session_key()
    ids, live = letters.orphans(key, 1)
    letters.client.dead_letters.replay(ids[0], live.lease, by="test")
    page = operator_browser.get("/runs").text
    live_table = page.split('id="runs-live"')[1].split("</table>\n</td>")[0]
    assert live.run_id in page and key in live_table
    assert f'href="/dead-letters/{ids[0]}"' in page  # the recovered entry names its letter


def test_static_files_and_nothing_else(gateway_server: GatewayProcess) -> None:
    assert httpx.get(gateway_server.url + "/static/console.css").status_code == 200
    assert httpx.get(gateway_server.url + "/static/console.js").headers[
        "content-type"].startswith("text/javascript")
    for name in ("..%2Fletters.py", "missing.css", "__init__.py"):
        assert httpx.get(f"{gateway_server.url}/static/{name}").status_code == 404


def test_buttons_never_redirect_off_site(operator_browser: httpx.Client,
                                         letters: Letters) -> None:
    ids, _ = letters.orphans(session_key(), 1)
    csrf = csrf_of(operator_browser.get("/dead-letters").text)
    reply = operator_browser.post(f"/dead-letters/{ids[0]}/discard",
                                  data={"csrf": csrf, "back": "/\\evil.example/x"})
    assert reply.status_code == 303 and reply.headers["location"].startswith("/dead-letters?")


def test_insecure_local_needs_no_login_and_its_forms_work(
        gateway_server: GatewayProcess, gateway_namespace: str, tmp_path: Path,
        letters: Letters) -> None:
    key = session_key()
    ids, live = letters.orphans(key, 1)
    with GatewayProcess(gateway_server.env["LEASEGATE_REDIS_URL"], gateway_namespace, tmp_path,
                        tokens=False, args=("--insecure-local",)) as local, \
            httpx.Client(base_url=local.url) as browser:
        page = browser.get("/dead-letters", params={"session": key})
        assert page.status_code == 200 and row_ids(page.text) == ids
        reply = browser.post(f"/dead-letters/{ids[0]}/replay",
                             data={"csrf": csrf_of(page.text), "back": "/dead-letters"})
        assert reply.status_code == 303 and "replayed" in reply.headers["location"]
    assert letters.recovered(live) == ids
