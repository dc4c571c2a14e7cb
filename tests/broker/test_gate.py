"""The gate against a real redis-server: every verdict produced by a real scenario."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
import redis

from leasegate.broker import Client, Envelope, Run, Settings
from leasegate.ownership import RunState
from tests.conftest import SECRET
from tests.support.helpers import wait_until


def sk() -> str:
    return f"cron:job-{uuid.uuid4().hex[:8]}"


def inbox_roles(run: Run) -> list[tuple[int, str, str]]:
    return [(e.seq, e.role, e.kind) for e in run.inbox.entries()]


def test_start_run_writes_prompt_as_entry_one(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="Draw today's header", ttl=30)
    [entry] = run.inbox.entries()
    assert (entry.seq, entry.role, entry.kind) == (1, "user", "prompt")
    assert entry.payload == "Draw today's header"
    assert entry.callback_id is None
    assert entry.provenance["fence"] == run.fence == 1


def test_live_run_gets_its_result_with_provenance(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    env = run.envelope("image_generate", {"prompt": "a fox"}, deadline=60)
    verdict = broker_client.gate.deliver(env.encode(), result={"ok": True})
    assert verdict.delivered and verdict.reason is None and not verdict.repeat
    assert verdict.seq == 2
    entries = run.inbox.entries()
    assert [(e.seq, e.role, e.kind) for e in entries] == [(1, "user", "prompt"),
                                                         (2, "tool", "result")]
    got = entries[1]
    assert got.id == verdict.entry_id
    assert got.callback_id == env.callback_id
    assert got.payload == {"ok": True}
    assert got.provenance["source_tool"] == "image_generate"
    assert got.provenance["task_id"] == env.task_id
    assert got.provenance["fence"] == run.fence
    assert got.provenance["delivered_at"] >= got.provenance["submitted_at"]
    assert broker_client.dead_letters.count() == 0


def test_error_kind_is_delivered_as_tool_error(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    env = run.envelope("image_generate", {})
    verdict = broker_client.gate.deliver(env, result={"error": "boom"}, kind="error")
    assert verdict.delivered
    assert inbox_roles(run)[-1] == (2, "tool", "error")


def test_same_callback_three_times_one_entry_equal_verdicts(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    wire = run.envelope("image_generate", {"n": 1}).encode()
    verdicts = [broker_client.gate.deliver(wire, result={"i": i}) for i in range(3)]
    assert [v.repeat for v in verdicts] == [False, True, True]
    assert {(v.delivered, v.entry_id, v.seq) for v in verdicts} == {(True,
                                                                    verdicts[0].entry_id, 2)}
    assert len(run.inbox.entries()) == 2
    assert run.inbox.entries()[1].payload == {"i": 0}


def test_repeat_of_a_quarantined_callback_adds_no_letter(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    wire = run.envelope("image_generate", {}).encode()
    run.release("failed")
    verdicts = [broker_client.gate.deliver(wire, result={}) for _ in range(3)]
    assert {(v.delivered, v.reason, v.entry_id) for v in verdicts} == {
        (False, "run_released", verdicts[0].entry_id)}
    assert broker_client.dead_letters.count() == 1


def test_released_run_quarantines_with_outcome(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    env = run.envelope("image_generate", {"prompt": "x"})
    run.release("failed")
    verdict = broker_client.gate.deliver(env, result={"url": "file://x"})
    assert not verdict.delivered and verdict.reason == "run_released"
    assert "failed" in verdict.detail
    letter = broker_client.dead_letters.get(verdict.entry_id)
    assert (letter.reason, letter.state) == ("run_released", "quarantined")
    assert (letter.session_key, letter.run_id, letter.fence) == (run.session_key, run.run_id, 1)
    assert letter.callback_id == env.callback_id and letter.tool == "image_generate"
    assert letter.payload == {"url": "file://x"}
    assert letter.history[0]["state"] == "quarantined"
    assert letter.quarantined_at is not None and letter.submitted_at is not None
    assert inbox_roles(run) == [(1, "user", "prompt")]


def test_expired_lease_quarantines(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=0.2)
    env = run.envelope("image_generate", {})
    wait_until(lambda: run.status().state is RunState.EXPIRED, message="lease expiry")
    verdict = broker_client.gate.deliver(env, result={})
    assert (verdict.delivered, verdict.reason) == (False, "lease_expired")
    assert inbox_roles(run) == [(1, "user", "prompt")]


def test_superseded_run_quarantines_naming_the_new_owner(broker_client: Client) -> None:
    key = sk()
    old = broker_client.start_run(key, prompt="old", ttl=30)
    env = old.envelope("image_generate", {})
    new = broker_client.start_run(key, prompt="new", ttl=30)
    verdict = broker_client.gate.deliver(env, result={})
    assert (verdict.delivered, verdict.reason) == (False, "superseded")
    assert new.run_id in verdict.detail
    letter = broker_client.dead_letters.get(verdict.entry_id)
    assert (letter.owner_run_id, letter.owner_fence) == (new.run_id, 2)
    assert inbox_roles(new) == [(1, "user", "prompt")]


def test_unknown_run_quarantines(broker_client: Client) -> None:
    now = broker_client.server_time_ms()
    env = Envelope.create(SECRET, callback_id=uuid.uuid4().hex, session_key=sk(),
                          run_id=uuid.uuid4().hex, fence=7, incarnation=uuid.uuid4().hex,
                          tool="image_generate",
                          task_args={}, submitted_at_ms=now, deadline_at_ms=now + 60_000)
    verdict = broker_client.gate.deliver(env, result={})
    assert (verdict.delivered, verdict.reason) == (False, "unknown_run")


def test_deadline_passed_quarantines_even_for_a_live_run(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    env = run.envelope("image_generate", {}, deadline=0.05)
    wait_until(lambda: broker_client.server_time_ms() > env.deadline_at_ms,
               message="server time past the deadline")
    verdict = broker_client.gate.deliver(env, result={})
    assert (verdict.delivered, verdict.reason) == (False, "deadline_passed")
    assert run.status().state is RunState.LIVE
    assert inbox_roles(run) == [(1, "user", "prompt")]


def test_forged_signature_quarantined_with_raw_bytes(broker_client: Client,
                                                     redis_client: redis.Redis,
                                                     namespace: str) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    genuine = run.envelope("image_generate", {})
    forged = Envelope.create(b"not-the-deployment-secret!", callback_id=genuine.callback_id,
                             session_key=run.session_key, run_id=run.run_id, fence=run.fence,
                             incarnation=run.lease.incarnation, tool="image_generate",
                             task_args={},
                             submitted_at_ms=genuine.submitted_at_ms,
                             deadline_at_ms=genuine.deadline_at_ms)
    verdict = broker_client.gate.deliver(forged.encode(), result={"evil": True})
    assert (verdict.delivered, verdict.reason) == (False, "bad_signature")
    letter = broker_client.dead_letters.get(verdict.entry_id)
    assert letter.raw == forged.encode()
    assert letter.payload is None  # nothing of an untrusted delivery is kept but its bytes
    assert inbox_roles(run) == [(1, "user", "prompt")]
    # the genuine callback is still deliverable: the forgery did not consume its id
    assert broker_client.gate.deliver(genuine, result={}).delivered


def test_random_bytes_are_malformed_and_deduplicated(broker_client: Client) -> None:
    junk = os.urandom(5000)
    first = broker_client.gate.deliver(junk, result={})
    again = broker_client.gate.deliver(junk, result={})
    assert (first.delivered, first.reason) == (False, "malformed")
    assert again.repeat and again.entry_id == first.entry_id
    letter = broker_client.dead_letters.get(first.entry_id)
    assert letter.raw == junk[:2048] and letter.raw_size == 5000
    assert broker_client.dead_letters.count() == 1


def test_parked_run_gets_one_resume_signal_per_delivery(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    envs = [run.envelope("image_generate", {"i": i}) for i in range(2)]
    run.park(until=60)
    assert run.wait_resume(timeout=0.05) is None
    broker_client.gate.deliver(envs[0], result={})
    broker_client.gate.deliver(envs[0], result={})  # a redelivery: no second signal
    broker_client.gate.deliver(envs[1], result={})
    assert run.wait_resume(timeout=1) == envs[0].callback_id
    assert run.wait_resume(timeout=1) == envs[1].callback_id
    assert run.wait_resume(timeout=0.05) is None
    assert run.status().state is RunState.PARKED


def test_live_run_gets_a_resume_signal_too(broker_client: Client) -> None:
    """A runtime may block on resume signals while live as well (issue 11): one per delivery,
    none for a repeat."""
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    env = run.envelope("t", {})
    broker_client.gate.deliver(env, result={})
    broker_client.gate.deliver(env, result={})  # a redelivery: no second signal
    assert run.wait_resume(timeout=1) == env.callback_id
    assert run.wait_resume(timeout=0.05) is None


def test_blocked_reader_wakes_on_delivery(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    env = run.envelope("image_generate", {})
    got: list[list[object]] = []
    reader = threading.Thread(target=lambda: got.append(run.inbox.read(after=1, block=10)))
    reader.start()
    # deliver once the reader is blocked on the server (it shows in CLIENT LIST as xread)
    server: redis.Redis = broker_client.redis
    if isinstance(server, redis.RedisCluster):  # the primary of the inbox's slot
        inbox = broker_client.keys.inbox(run.session_key, run.run_id)
        server = server.get_redis_connection(server.get_node_from_key(inbox))
    wait_until(lambda: any(c.get("cmd") == "xread" for c in server.client_list()),
               message="reader blocked in XREAD")
    broker_client.gate.deliver(env, result={"x": 1})
    reader.join(10)
    assert not reader.is_alive()
    [[entry]] = got
    assert entry.callback_id == env.callback_id  # type: ignore[attr-defined]


def test_wait_for_returns_named_callbacks(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    envs = [run.envelope("t", {"i": i}) for i in range(3)]
    for env in envs:
        broker_client.gate.deliver(env, result={})
    got = run.inbox.wait_for([envs[0].callback_id, envs[2].callback_id], timeout=2)
    assert set(got) == {envs[0].callback_id, envs[2].callback_id}
    missing = run.inbox.wait_for(["nope"], timeout=0.1)
    assert missing == {}


def test_release_racing_deliveries_each_callback_in_one_place(broker_client: Client) -> None:
    for _ in range(5):
        run = broker_client.start_run(sk(), prompt="p", ttl=30)
        envs = [run.envelope("image_generate", {"i": i}) for i in range(8)]
        barrier = threading.Barrier(9)
        verdicts: list[object] = []

        def deliver(env: Envelope, barrier: threading.Barrier, verdicts: list[object]) -> None:
            barrier.wait()
            verdicts.append(broker_client.gate.deliver(env, result={}))

        threads = [threading.Thread(target=deliver, args=(e, barrier, verdicts)) for e in envs]
        for t in threads:
            t.start()
        barrier.wait()
        run.release("failed")
        for t in threads:
            t.join()
        inbox_cbs = [e.callback_id for e in run.inbox.entries()[1:]]
        letters = [broker_client.dead_letters.get(v.entry_id)  # type: ignore[attr-defined]
                   for v in verdicts if not v.delivered]  # type: ignore[attr-defined]
        letter_cbs = [letter.callback_id for letter in letters]
        assert sorted(inbox_cbs + letter_cbs) == sorted(e.callback_id for e in envs)
        assert len(set(inbox_cbs)) == len(inbox_cbs)
        assert all(letter.reason == "run_released" for letter in letters)


def test_superseding_run_while_callback_in_flight(broker_client: Client) -> None:
    key = sk()
    run1 = broker_client.start_run(key, prompt="first", ttl=30)
    envs = [run1.envelope("image_generate", {"i": i}) for i in range(20)]
    started = threading.Event()
    verdicts = []

    def worker() -> None:
        for i, env in enumerate(envs):
            if i == 5:
                started.set()
            verdicts.append(broker_client.gate.deliver(env, result={}))

    t = threading.Thread(target=worker)
    t.start()
    started.wait(5)
    run2 = broker_client.start_run(key, prompt="second", ttl=30)
    t.join()
    delivered = [v for v in verdicts if v.delivered]
    quarantined = [v for v in verdicts if not v.delivered]
    assert len(delivered) + len(quarantined) == 20
    assert all(v.reason == "superseded" for v in quarantined)
    assert len(run1.inbox.entries()) == 1 + len(delivered)
    assert inbox_roles(run2) == [(1, "user", "prompt")]
    # once superseded, nothing more was delivered: the delivered ones form a prefix
    flags = [v.delivered for v in verdicts]
    assert flags == sorted(flags, reverse=True)


def test_openclaw_86490_shape_five_of_five_clean(broker_client: Client) -> None:
    key = "cron:daily-digest"
    for attempt in range(5):
        run1 = broker_client.start_run(key, prompt=f"digest #{attempt} (run 1)", ttl=30)
        late = run1.envelope("image_generate", {"prompt": "header"})
        run1.release("failed")
        run2 = broker_client.start_run(key, prompt=f"digest #{attempt} (run 2)", ttl=30)
        verdict = broker_client.gate.deliver(late, result={"image": "late"})
        assert (verdict.delivered, verdict.reason) == (False, "run_released")
        entries = run2.inbox.entries()
        assert (entries[0].seq, entries[0].role, entries[0].kind) == (1, "user", "prompt")
        assert entries[0].payload == f"digest #{attempt} (run 2)"
        assert all(e.callback_id != late.callback_id for e in entries)
        own = run2.envelope("image_generate", {"prompt": "header"})
        assert broker_client.gate.deliver(own, result={"image": "mine"}).delivered
        assert [e.role for e in run2.inbox.entries()] == ["user", "tool"]
        run2.release("completed")


def test_dead_letters_overflow_into_counted_tombstones(redis_client: redis.Redis,
                                                       namespace: str) -> None:
    client = Client(redis_client, namespace, secret=SECRET, settings=Settings(dlq_max_len=3))
    run = client.start_run(sk(), prompt="p", ttl=30)
    envs = [run.envelope("image_generate", {"i": i}) for i in range(5)]
    run.release("failed")
    verdicts = [client.gate.deliver(e, result={"i": i}) for i, e in enumerate(envs)]
    assert client.dead_letters.count() == 3
    oldest = client.dead_letters.get(verdicts[0].entry_id)
    assert oldest.state == "expired" and oldest.payload is None
    assert [h["state"] for h in oldest.history] == ["quarantined", "expired"]
    assert client.dead_letters.stats()["expired:overflow"] == 2
    assert client.dead_letters.get(verdicts[4].entry_id).state == "quarantined"


def test_bad_input_names_the_field(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    with pytest.raises(ValueError, match="deadline"):
        run.envelope("t", {}, deadline=0)
    with pytest.raises(ValueError, match="result"):
        broker_client.gate.deliver(run.envelope("t", {}), result="x" * 300_000)
    with pytest.raises(ValueError, match="kind"):
        broker_client.gate.deliver(run.envelope("t", {}), result={}, kind="user")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompt"):
        broker_client.start_run(sk(), prompt="x" * 300_000)
    with pytest.raises(ValueError, match="secret"):
        Client(broker_client.redis, "x", secret=b"short")


def test_run_without_inbox_never_gets_a_callback_as_entry_one(broker_client: Client) -> None:
    """A lease taken straight from the registry has no prompt: the gate refuses to make a
    callback its entry 1."""
    lease = broker_client.registry.acquire(sk(), ttl=30)
    run = Run(broker_client, lease)
    verdict = broker_client.gate.deliver(run.envelope("image_generate", {}), result={})
    assert (verdict.delivered, verdict.reason) == (False, "unknown_run")
    assert "no inbox" in verdict.detail
    assert run.inbox.entries() == []


def test_forged_envelope_object_is_checked_like_bytes(broker_client: Client) -> None:
    """Only envelopes this gate opened itself skip the signature check."""
    import dataclasses

    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    genuine = run.envelope("image_generate", {})
    opened = broker_client.gate.open(genuine.encode())
    forged = dataclasses.replace(opened, sig=bytes(32))
    verdict = broker_client.gate.deliver(forged, result={})
    assert (verdict.delivered, verdict.reason) == (False, "bad_signature")
    assert broker_client.gate.deliver(opened, result={}).delivered
