"""Where a callback ended, for tests (``leasegate_verdicts``): wait for its verdict, and
assert it was delivered or quarantined with a message that says where it went instead."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..broker import Client, DeadLetter, Entry, Inbox
from ..ownership import as_text, glob_escape

DEFAULT_TIMEOUT = 30.0
POLL = 0.02  # seconds between looks: a verdict is a memo key, which gives no event to block on


@dataclass(frozen=True)
class Placement:
    """Where one callback is: ``delivered`` to its run's inbox, ``quarantined`` as a dead
    letter, ``pending`` (submitted, no verdict yet), or ``unknown`` (never submitted here)."""

    callback_id: str
    where: str
    session_key: str | None = None
    run_id: str | None = None
    entry: Entry | None = None
    letter: DeadLetter | None = None

    def describe(self) -> str:
        run = f"run {self.run_id} of session {self.session_key!r}"
        if self.entry is not None:
            return (f"delivered to the inbox of {run} as entry {self.entry.seq} "
                    f"(kind {self.entry.kind})")
        if self.letter is not None:
            detail = f", detail {self.letter.detail!r}" if self.letter.detail else ""
            return (f"quarantined as dead letter {self.letter.id} with reason "
                    f"{self.letter.reason!r}{detail} (from {run}, kind {self.letter.kind})")
        if self.where == "pending":
            return f"still pending in {run}: no verdict yet"
        return "unknown: never submitted in this namespace (or its memo has expired)"


class Verdicts:
    """Looks callbacks up in one Client's namespace."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def find(self, callback_id: str) -> Placement:
        """Where ``callback_id`` is now (one look, no wait)."""
        redis, keys = self.client.redis, self.client.keys
        pattern = keys.session_pattern("*", f"run:*:cb:{glob_escape(callback_id)}")
        for raw_key in redis.scan_iter(match=pattern, count=1000):
            key = as_text(raw_key)
            session_key, rest = keys.split_session_key(key)
            run_id = rest[len("run:"):rest.rindex(":cb:")]
            memo = {as_text(k): as_text(v) for k, v in redis.hgetall(key).items()}
            if memo.get("d") == "1":
                inbox = Inbox(redis, keys.inbox(session_key, run_id))
                entries = [e for e in inbox.entries() if e.id == memo.get("entry")]
                return Placement(callback_id, "delivered", session_key, run_id,
                                 entry=entries[0] if entries else None)
            if memo.get("d") == "0":
                return Placement(callback_id, "quarantined", session_key, run_id,
                                 letter=self.client.dead_letters.get(memo["entry"]))
        for shard in keys.shards:  # the callback's session key is not known: every shard
            for member, _ in redis.zscan_iter(keys.pending_index(shard),
                                              match=f"*\n{glob_escape(callback_id)}"):
                session_key, run_id, _cb = as_text(member).split("\n")
                return Placement(callback_id, "pending", session_key, run_id)
        return Placement(callback_id, "unknown")

    def wait(self, callback_id: str, timeout: float = DEFAULT_TIMEOUT) -> Placement:
        """The callback's verdict once it has one, or where it still is after ``timeout``
        seconds (check ``where``)."""
        deadline = time.monotonic() + timeout
        while True:
            placement = self.find(callback_id)
            if placement.where in ("delivered", "quarantined") or time.monotonic() > deadline:
                return placement
            time.sleep(POLL)  # polling pace, with a deadline: the memo key decides

    def assert_delivered(self, callback_id: str, timeout: float = DEFAULT_TIMEOUT) -> Entry:
        """The inbox entry of ``callback_id``; AssertionError naming where it went if not."""
        placement = self.wait(callback_id, timeout)
        if placement.entry is None:
            raise AssertionError(f"callback {callback_id} was not delivered: it was "
                                 f"{self._after(placement, timeout)}")
        return placement.entry

    def assert_quarantined(self, callback_id: str, reason: str | None = None,
                           timeout: float = DEFAULT_TIMEOUT) -> DeadLetter:
        """The dead letter of ``callback_id`` (with ``reason``, if given); AssertionError
        naming where it went if not."""
        placement = self.wait(callback_id, timeout)
        wanted = f" with reason {reason!r}" if reason else ""
        letter = placement.letter
        if letter is None or (reason is not None and letter.reason != reason):
            raise AssertionError(f"callback {callback_id} was not quarantined{wanted}: it was "
                                 f"{self._after(placement, timeout)}")
        return letter

    @staticmethod
    def _after(placement: Placement, timeout: float) -> str:
        late = "" if placement.where in ("delivered", "quarantined") else f" after {timeout:g} s"
        return placement.describe() + late
