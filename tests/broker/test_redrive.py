"""Bulk redrive and the kind/state filters against a real redis-server: every letter reaches a
live run's inbox at most once, whoever redrives it and however often; the rest stay dead
letters, counted by reason."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid

import pytest

from leasegate.broker import (
    Client,
    FilterError,
    LetterFilter,
    RedriveNotFound,
    RedriveRequest,
    Redrives,
    Run,
    select_letters,
)
from leasegate.testing.redis_server import RedisServer
from tests.support.helpers import wait_until


def sk() -> str:
    return f"cron:redrive-{uuid.uuid4().hex[:8]}"


def orphans(client: Client, key: str, n: int, kind: str = "result",
            tool: str = "image_generate") -> tuple[list[str], Run]:
    """``n`` letters of a superseded run of ``key``, and the live run that superseded it."""
    old = client.start_run(key, prompt="old", ttl=30)
    envs = [old.envelope(tool, {"i": i}) for i in range(n)]
    new = client.start_run(key, prompt="new", ttl=30)
    body = (lambda i: {"error": "cancelled"}) if kind == "error" else (lambda i: {"i": i})
    ids = [client.gate.deliver(env, result=body(i), kind=kind).entry_id  # type: ignore[arg-type]
           for i, env in enumerate(envs)]
    return ids, new


def recovered(run: Run) -> list[str]:
    return [str(e.provenance["dead_letter_id"]) for e in run.inbox.entries()
            if e.kind == "recovered"]


def states(client: Client, ids: list[str]) -> set[str]:
    return {client.dead_letters.get(i).state for i in ids}


def test_to_current_moves_each_letter_into_its_sessions_live_run_once(
        broker_client: Client) -> None:
    ids_a, run_a = orphans(broker_client, sk(), 3)
    ids_b, run_b = orphans(broker_client, sk(), 2)
    redrives = Redrives(broker_client.dead_letters)
    done = redrives.run(RedriveRequest(to_current=True), by="test")
    assert (done.state, done.total, done.done, done.replayed, done.refused) == \
        ("done", 5, 5, 5, 0)
    assert sorted(recovered(run_a)) == sorted(ids_a)
    assert sorted(recovered(run_b)) == sorted(ids_b)
    assert states(broker_client, ids_a + ids_b) == {"redelivered"}
    again = redrives.run(RedriveRequest(to_current=True, where=LetterFilter(
        state="redelivered")), by="test")
    assert again.replayed == 0 and again.refusals == {"already_redelivered": 5}
    assert sorted(recovered(run_a)) == sorted(ids_a)  # still once each
    assert redrives.get(done.id).replayed == 5


def test_a_letter_whose_session_has_no_live_run_stays_a_dead_letter(
        broker_client: Client) -> None:
    key = sk()
    ids, live = orphans(broker_client, key, 2)
    live.release("completed")  # the session has no owner now
    redrives = Redrives(broker_client.dead_letters)
    where = LetterFilter(session_key=key)
    progress = redrives.run(RedriveRequest(to_current=True, where=where), by="test")
    assert progress.refusals == {"no_current_run": 2} and progress.replayed == 0
    named = redrives.run(RedriveRequest(run_id=live.run_id, where=where), by="test")
    assert named.refusals == {"target_not_alive": 2} and named.replayed == 0
    assert states(broker_client, ids) == {"quarantined"}


def test_kind_error_letters_are_skipped_unless_forced(broker_client: Client) -> None:
    key = sk()
    results, _ = orphans(broker_client, key, 1)
    errors, run = orphans(broker_client, key, 2, kind="error")  # run: the session's live run
    redrives = Redrives(broker_client.dead_letters)
    where = LetterFilter(session_key=key)
    plain = redrives.run(RedriveRequest(to_current=True, where=where), by="test")
    assert (plain.total, plain.skipped, plain.replayed) == (1, 2, 1)
    assert recovered(run) == results
    assert states(broker_client, errors) == {"quarantined"}
    forced = redrives.run(RedriveRequest(to_current=True, where=where, force=True), by="t")
    assert forced.replayed == 2 and sorted(recovered(run)) == sorted(results + errors)


def test_two_redrives_at_once_replay_each_letter_exactly_once(broker_client: Client) -> None:
    key = sk()
    ids, run = orphans(broker_client, key, 40)
    redrives = Redrives(broker_client.dead_letters)
    request = RedriveRequest(to_current=True, where=LetterFilter(session_key=key))
    outcomes = []
    start = threading.Barrier(2)

    def redrive() -> None:
        start.wait()
        outcomes.append(redrives.run(request, by="racer"))

    threads = [threading.Thread(target=redrive) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(p.replayed for p in outcomes) == 40
    assert all(set(p.refusals) <= {"already_redelivered"} for p in outcomes)
    assert sorted(recovered(run)) == sorted(ids)  # no letter twice, none lost


def test_dry_run_counts_and_changes_nothing(broker_client: Client) -> None:
    key = sk()
    ids, _ = orphans(broker_client, key, 3)
    orphans(broker_client, key, 1, kind="error")
    progress = Redrives(broker_client.dead_letters).run(
        RedriveRequest(dry_run=True, where=LetterFilter(session_key=key)), by="test")
    assert (progress.state, progress.total, progress.skipped, progress.done) == \
        ("done", 3, 1, 0)
    assert states(broker_client, ids) == {"quarantined"}


def test_cancel_from_anywhere_stops_a_started_redrive(broker_client: Client) -> None:
    key = sk()
    ids, run = orphans(broker_client, key, 30)
    redrives = Redrives(broker_client.dead_letters)
    started = redrives.start(RedriveRequest(to_current=True, rate=5,
                                            where=LetterFilter(session_key=key)), by="test")
    wait_until(lambda: redrives.get(started.id).done >= 1, timeout=10, message="progress")
    # another process's view: a Redrives of its own over the same Redis
    other = Redrives(broker_client.dead_letters)
    assert other.cancel(started.id).state == "running"
    wait_until(lambda: other.get(started.id).finished, timeout=10, message="the cancel")
    final = other.get(started.id)
    assert final.state == "cancelled" and 1 <= final.done < 30
    assert len(recovered(run)) == final.replayed
    assert states(broker_client, ids) == {"quarantined", "redelivered"}


CHILD = """
import sys
from leasegate.ownership import connect
from leasegate.broker import Client, LetterFilter, RedriveRequest, Redrives
url, ns, key = sys.argv[1:4]
client = Client(connect(url), ns, secret=b"child-secret-0123456789")
Redrives(client.dead_letters, alive_ms=500).run(
    RedriveRequest(to_current=True, rate=2, where=LetterFilter(session_key=key)), by="child",
    on_progress=lambda p: print(p.id, p.done, flush=True))
"""


def test_a_redrive_whose_process_died_is_abandoned_and_a_new_one_finishes_it(
        broker_client: Client, redis_server: RedisServer, namespace: str) -> None:
    key = sk()
    ids, run = orphans(broker_client, key, 20)
    child = subprocess.Popen([sys.executable, "-c", CHILD, redis_server.url, namespace, key],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        redrive_id = child.stdout.readline().split()[0]  # its first progress: it is running
    finally:
        child.kill()
        child.wait()
        child.stdout.close()  # type: ignore[union-attr]
    redrives = Redrives(broker_client.dead_letters)
    wait_until(lambda: redrives.get(redrive_id).state == "abandoned", timeout=10,
               message="the dead process's redrive to be abandoned")
    before = len(recovered(run))
    assert before < 20
    again = redrives.run(RedriveRequest(to_current=True, where=LetterFilter(session_key=key)),
                         by="test")
    assert again.replayed == 20 - before  # the rest; those already done are refused
    assert again.refusals == ({"already_redelivered": before} if before else {})
    assert sorted(recovered(run)) == sorted(ids)  # each once: none lost, none twice


def test_the_filters_name_the_field_they_refuse() -> None:
    for field, kwargs in (("kind", {"kind": "image"}), ("state", {"state": "discarded"}),
                          ("reason", {"reason": "late"}), ("since", {"since": -1.0}),
                          ("session_key", {"session_key": ""})):
        with pytest.raises(FilterError) as caught:
            LetterFilter(**kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field and field.split("_")[0] in str(caught.value)
    with pytest.raises(FilterError) as caught:
        RedriveRequest()
    assert caught.value.field == "to_current"
    with pytest.raises(FilterError) as caught:
        RedriveRequest(to_current=True, rate=0)
    assert caught.value.field == "rate"


def test_kind_and_state_filters_page_through_every_match(broker_client: Client) -> None:
    key = sk()
    orphans(broker_client, key, 7)
    errors, _ = orphans(broker_client, key, 5, kind="error")
    seen: list[str] = []
    cursor = None
    while True:
        page = select_letters(broker_client.dead_letters,
                              LetterFilter(session_key=key, kind="error"), 2, cursor)
        seen += [letter.id for letter in page.letters]
        assert all(letter.kind == "error" for letter in page.letters)
        cursor = page.cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(errors)
    quarantined = select_letters(broker_client.dead_letters,
                                 LetterFilter(session_key=key, state="quarantined"), 100)
    assert len(quarantined.letters) == 12


def test_an_unknown_redrive_is_not_found(broker_client: Client) -> None:
    with pytest.raises(RedriveNotFound):
        Redrives(broker_client.dead_letters).get("0" * 32)
    with pytest.raises(RedriveNotFound):
        Redrives(broker_client.dead_letters).get("../x")
