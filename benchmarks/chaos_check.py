"""The chaos drill's check (benchmarks/chaos.py): walk every inbox stream and every dead letter
and judge where each callback ended against the driver's record (benchmarks/chaos_record.py);
and the checker's own check, which plants violations and expects each to be reported."""

from __future__ import annotations

import itertools
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from leasegate.broker import Client
from leasegate.broker.inbox import Entry

from .chaos_record import CallbackRecord, Record, RunRecord

# -- the check ---------------------------------------------------------------------------------

INBOX_REST = re.compile(r"^run:(?P<run>[^:]+):inbox$")


def letter_pattern(namespace: str) -> str:
    """SCAN MATCH for every dead letter's hash, in every shard."""
    return f"{namespace}:{{*}}:dlq:letter:*"


@dataclass
class Findings:
    violations: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def bad(self, message: str) -> None:
        self.violations.append(message)


def exempt_after_loss(record: Record) -> set[str]:
    """Submitted callbacks whose records the loss (the AOF tail; on a cluster, what the killed
    primary had not replicated, on its shards only) could have erased: submitted in the
    window, or taken off the queue in it (the pop may survive the cut while the worker's
    record of the message as unacknowledged does not: then the message is gone)."""
    loss = record.loss
    if loss is None:
        return set()
    return {c.callback_id for c in record.callbacks.values()
            if c.outcome in ("submitted", "pending") and loss.covers(c.session_key) and (
                loss.may_have_lost(c.began_ms, c.ended_ms)
                or any(loss.may_have_lost(t, t) for t in record.received_ms.get(c.callback_id,
                                                                                ())))}


def next_starts(record: Record) -> dict[tuple[str, str], int]:
    """(session key, run id) -> when the next run of that session key was created."""
    found: dict[tuple[str, str], int] = {}
    by_session: dict[str, list[RunRecord]] = {}
    for rec in record.runs.values():
        by_session.setdefault(rec.session_key, []).append(rec)
    for runs in by_session.values():
        # two starts can share a millisecond: the fence (issued in order) breaks the tie
        runs.sort(key=lambda x: (x.created_ms or 0, x.fence))
        for older, newer in itertools.pairwise(runs):
            if newer.created_ms is not None:
                found[(older.session_key, older.run_id)] = newer.created_ms
    return found


def check(client: Client, record: Record) -> Findings:
    r, ns, out = client.redis, client.keys.namespace, Findings()
    exempt = exempt_after_loss(record)
    no_verdict: list[str] = []
    malformed: list[bytes] = []
    places: dict[str, list[str]] = {cb: [] for cb in record.callbacks}
    next_start = next_starts(record)

    for key in r.scan_iter(match=client.keys.session_pattern("*", "run:*:inbox"), count=1000):
        sk, rest = client.keys.split_session_key(key.decode())
        match = INBOX_REST.match(rest)
        if not match:
            continue
        run_id = match["run"]
        rec = record.runs.get((sk, run_id))
        entries = inbox_entries(r, key)
        out.counts["inboxes"] += 1
        if rec is None:
            out.bad(f"inbox of a run the driver never started: {key.decode()}")
            continue
        first = entries[0] if entries else None
        if first is None or (first.seq, first.role, first.kind, first.payload) != (
                1, "user", "prompt", rec.prompt):
            out.bad(f"entry 1 of {run_id} is not its prompt: {first}")
        for entry in entries[1:]:
            check_entry(entry, rec, record, next_start.get((sk, run_id)), places, out)

    for key in r.scan_iter(match=letter_pattern(ns), count=1000):
        letter = {k.decode(): v for k, v in r.hgetall(key).items()}
        cb = letter.get("cb", b"").decode()
        reason = letter.get("reason", b"").decode()
        out.counts[f"quarantined:{reason}"] += 1
        body = letter.get("body") or b""
        if reason == "malformed" and not cb:  # poison: no owner; checked against the pushes
            raw = letter.get("raw")
            malformed.append(raw if isinstance(raw, bytes) else b"")
            continue
        if reason == "no_verdict":
            no_verdict.append(cb)
        if b"skipped" in body:
            out.counts["quarantined_skipped_before_start"] += 1
        if not cb:
            out.bad(f"a dead letter without a callback id (reason {reason}): {key.decode()}")
            continue
        if cb not in places:
            out.bad(f"dead letter {key.decode()} holds callback {cb} the driver never made")
            continue
        places[cb].append(f"dlq:{key.decode().rsplit(':', 1)[1]}:{reason}")

    for problem in record.poison.check(malformed):
        out.bad(problem)
    for cb in no_verdict:  # the reaper's verdict: only where no other one could come
        tool = record.callbacks[cb].tool if cb in record.callbacks else "?"
        if tool == "hard_limit":
            out.counts["no_verdict_hard_limit"] += 1
        elif cb in exempt:
            out.counts["no_verdict_after_loss"] += 1
        elif cb in record.lost_with_worker:  # redelivery may outlast the grace (kill upon kill)
            out.counts["no_verdict_lost_worker"] += 1
        elif lost_in_transport(record, cb):
            out.counts["no_verdict_lost_in_transport"] += 1
        elif cb in record.ack_outlived_verdict:  # RabbitMQ kept the ack of a verdict lost
            out.counts["no_verdict_ack_outlived_verdict"] += 1
        elif record.callbacks[cb].outcome in ("unanswered", "uncertain"):  # maybe never sent
            out.counts["no_verdict_submit_failed"] += 1
        else:
            out.bad(f"callback {cb} ({tool}) got a no_verdict letter: its task could have "
                    "given a verdict")
    out.counts["exempt_after_loss"] = len(exempt)
    for cb, where in places.items():
        outcome = record.callbacks[cb].outcome
        out.counts[f"callbacks_{outcome}"] += 1
        if cb in exempt and len(where) <= 1:  # its records may be lost: 0 places or 1
            out.counts["exempt_without_verdict"] += not where
        elif outcome in ("submitted", "pending") and len(where) != 1:
            out.bad(f"callback {cb} ({outcome}) ended in {len(where)} places: {where}")
        elif outcome == "uncertain" and len(where) > 1:
            out.bad(f"callback {cb} (send failed) ended in {len(where)} places: {where}")
        elif outcome == "unanswered" and (len(where) > 1 or any(
                not w.endswith(":no_verdict") for w in where)):
            out.bad(f"callback {cb} (submit unanswered, never sent) ended in {where}")
        elif outcome == "refused" and where:
            out.bad(f"callback {cb} was never sent but ended in {where}")
    return out


def lost_in_transport(record: Record, cb: str) -> bool:
    """A message no worker ever received, sent before a SIGKILL: kombu's Redis transport pops
    it (BRPOP) before it records it as unacknowledged, so a kill in between loses it.
    RabbitMQ keeps a delivered message until it is acknowledged: nothing is excused there."""
    if record.amqp:
        return False
    began = record.callbacks[cb].began_ms if cb in record.callbacks else None
    return (cb not in record.taken_ever and began is not None
            and any(began <= kill for kill in record.kills_ms))


def check_entry(entry: Entry, rec: RunRecord, record: Record, next_start: int | None,
                places: dict[str, list[str]], out: Findings) -> None:
    cb = entry.callback_id or ""
    out.counts["delivered"] += 1
    if entry.role != "tool":
        out.bad(f"entry {entry.seq} of {rec.run_id} is role={entry.role}")
    owner = record.callbacks.get(cb)
    if owner is None:
        out.bad(f"inbox of {rec.run_id} holds callback {cb!r} the driver never made")
        return
    places[cb].append(f"inbox:{rec.run_id}")
    if owner.tool == "oversized":  # over the result limit: only an error can be delivered
        if entry.kind != "error" or "result_too_large" not in repr(entry.payload):
            out.bad(f"oversized callback {cb} was delivered as {entry.kind}, not "
                    "result_too_large")
        out.counts["oversized_delivered_as_error"] += 1
    if (owner.session_key, owner.run_id, owner.fence) != (rec.session_key, rec.run_id,
                                                          rec.fence):
        out.bad(f"callback {cb} of run {owner.run_id} is in the inbox of run {rec.run_id}")
    at = round((entry.provenance.get("delivered_at") or 0) * 1000)
    fence = entry.provenance.get("fence")
    if fence != rec.fence:
        out.bad(f"callback {cb} in {rec.run_id} carries fence {fence}, the run's is {rec.fence}")
    problems = []
    loss, exp_ms, released_after = record.loss, rec.exp_ms, rec.released_after_ms
    if loss is not None and loss.covers(rec.session_key):  # an erased lease change bounds nothing
        lost_start = next_start is not None and loss.may_have_lost(next_start, next_start)
        if any(loss.may_have_lost(t, t) for t in rec.touched_ms):
            exp_ms = rec.max_exp_ms
        if released_after is not None and loss.may_have_lost(rec.released_before_ms,
                                                             released_after):
            released_after = None
        next_start = None if lost_start else next_start
        if lost_start or (exp_ms, released_after) != (rec.exp_ms, rec.released_after_ms):
            out.counts["bounds_relaxed_after_loss"] += 1
    if rec.created_ms is None or at < rec.created_ms:
        problems.append(f"before the run was created ({rec.created_ms})")
    if at >= exp_ms:
        problems.append(f"at or after its lease expiry ({exp_ms})")
    if released_after is not None and at > released_after:
        problems.append(f"after its release returned ({released_after})")
    if next_start is not None and at > next_start:
        problems.append(f"after the next run of {rec.session_key} started ({next_start})")
    if at > owner.deadline_ms:
        problems.append(f"after its deadline ({owner.deadline_ms})")
    if problems:
        out.bad(f"callback {cb} reached run {rec.run_id} at {at}, " + ", ".join(problems))
    if rec.released_before_ms is not None and rec.released_after_ms is not None \
            and rec.released_before_ms < at <= rec.released_after_ms:
        out.counts["ambiguous_release_window"] += 1


# -- the checker's own check --------------------------------------------------------------------

SELF_TESTS = 6

def self_test(client: Client, record: Record) -> list[str]:
    """Corrupt the settled data six ways, one at a time, and confirm ``check`` reports each
    (then undo it). Returns what went undetected."""
    r, keys = client.redis, client.keys
    runs = [rec for rec in record.runs.values() if rec.created_ms is not None]
    placed: dict[str, str] = {}
    for rec in runs:
        for entry in inbox_entries(r, keys.inbox(rec.session_key, rec.run_id))[1:]:
            placed[entry.callback_id or ""] = rec.run_id
    released = [rec for rec in runs if rec.released_after_ms is not None]
    delivered = [cb for cb, run_id in placed.items() if cb in record.callbacks]
    exempt = exempt_after_loss(record)
    lettered = [k.decode() for k in r.scan_iter(match=letter_pattern(keys.namespace), count=1000)
                if (r.hget(k, "cb") or b"").decode() in record.callbacks.keys() - exempt]
    if not (runs and released and delivered and lettered):
        return ["not enough data to self-test"]
    missed = []

    def entry(rec: RunRecord, cb: str, at: int, role: str = "tool") -> dict[str, Any]:
        return {"seq": 99, "role": role, "kind": "result", "cb": cb, "body": b"\x80",
                "arts": b"\x90", "tool": "image_generate", "task": cb, "fence": rec.fence,
                "at": at, "sub": at}

    def expect(name: str, text: str) -> None:
        if not any(text in v for v in check(client, record).violations):
            missed.append(name)

    cb = delivered[0]
    owner = record.runs[(record.callbacks[cb].session_key, record.callbacks[cb].run_id)]
    other = next(rec for rec in runs if rec.run_id != owner.run_id)
    inbox = keys.inbox(other.session_key, other.run_id)
    added = r.xadd(inbox, entry(other, cb, (other.created_ms or 0) + 1))  # type: ignore[arg-type]
    expect("foreign inbox", "is in the inbox of run")
    r.xdel(inbox, added)

    own_inbox = keys.inbox(owner.session_key, owner.run_id)
    added = r.xadd(own_inbox, entry(owner, cb, (owner.created_ms or 0) + 1))  # type: ignore[arg-type]
    expect("duplicate", "ended in 2 places")
    r.xdel(own_inbox, added)

    added = r.xadd(own_inbox, entry(owner, "", (owner.created_ms or 0) + 1, role="user"))  # type: ignore[arg-type]
    expect("role=user", "is role=user")
    r.xdel(own_inbox, added)

    late = released[0]
    fake = uuid.uuid4().hex
    record.callbacks[fake] = CallbackRecord(fake, late.session_key, late.run_id, late.fence,
                                            2**62, "submitted")
    late_inbox = keys.inbox(late.session_key, late.run_id)
    added = r.xadd(late_inbox, entry(late, fake, (late.released_after_ms or 0) + 1000))  # type: ignore[arg-type]
    expect("delivered after release", "after its release returned")
    r.xdel(late_inbox, added)
    del record.callbacks[fake]

    hidden = lettered[0].replace(":letter:", ":selftest-hidden:")  # its slot: RENAME needs it
    r.rename(lettered[0], hidden)
    expect("lost", "ended in 0 places")
    r.rename(hidden, lettered[0])

    def reason(key: str) -> tuple[str, str]:
        cb = (r.hget(key, "cb") or b"").decode()
        return record.callbacks[cb].tool, (r.hget(key, "reason") or b"").decode()

    # a no_verdict letter for a callback whose task could have answered
    plain = next((k for k in lettered if reason(k)[0] != "hard_limit"
                  and reason(k)[1] != "no_verdict"
                  and (r.hget(k, "cb") or b"").decode() not in record.lost_with_worker
                  and not lost_in_transport(record, (r.hget(k, "cb") or b"").decode())
                  and (r.hget(k, "cb") or b"").decode() not in record.ack_outlived_verdict),
                 None)
    if plain is None:
        return [*missed, "no_verdict (no letter to plant it on)"]
    was = reason(plain)[1]
    r.hset(plain, "reason", "no_verdict")
    expect("no_verdict", "got a no_verdict letter")
    r.hset(plain, "reason", was)
    return missed


def inbox_entries(r: redis.Redis, key: str) -> list[Entry]:
    return [Entry.from_stream(i, f) for i, f in r.xrange(key)]



def verdicts_missing(client: Client, record: Record) -> list[str]:
    exempt = exempt_after_loss(record)  # their records may be lost: nothing to wait for
    wanted = [c for c in record.callbacks.values()
              if c.outcome in ("submitted", "pending") and c.callback_id not in exempt]
    pipe = client.redis.pipeline(transaction=False)
    for c in wanted:
        pipe.exists(client.keys.callback(c.session_key, c.run_id, c.callback_id))
    return [c.callback_id for c, found in zip(wanted, pipe.execute(), strict=True)
            if not found]

