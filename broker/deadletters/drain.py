"""Draining dead letters: hand each quarantined letter to a handler, then archive it, with a
Redis consumer group on each shard's dead-letter stream remembering progress across crashes.

Shard by shard, in shard order, each shard's letters in its stream's order (not one merged
order across shards): a consumer group lives on one stream, and a shard's group is all a
crash needs to resume.

Its own module because it is the one part of the dead letters with a protocol of its own
(XREADGROUP, XAUTOCLAIM, acknowledgement inside archive-2.lua); ``DeadLetters.drain`` calls it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from ...ownership import as_text, check_seconds, unavailable_as_error
from ..codes import QUARANTINED
from ..keys import letter_shard
from .index import MAX_LIMIT, check_name
from .letter import DeadLetter, KeepQuarantined, load_letters

if TYPE_CHECKING:
    from .store import DeadLetters

Handler = Callable[[DeadLetter], None]


def drain(letters: DeadLetters, handler: Handler, reason: str | None, consumer: str | None,
          group: str, batch: int, claim_idle: float, by: str, kind: str | None = None) -> int:
    """``DeadLetters.drain``: the arguments are checked here, the docstring is there."""
    letters.index.filters(reason, None, None, kind)
    if reason is not None:
        group = f"{group}:{reason}"
    if kind is not None:
        group = f"{group}:kind={kind}"
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_LIMIT:
        raise ValueError(f"batch must be an int in 1..{MAX_LIMIT}, got {batch!r}")
    idle_ms = int(check_seconds("claim_idle", claim_idle, positive=False) * 1000)
    consumer = check_name("consumer", consumer or f"{socket.gethostname()}-{os.getpid()}")
    return _Drain(letters, group, consumer, batch, reason, check_name("by", by, 200),
                  kind).run(handler, idle_ms)


class _Drain:
    """One drain call: the group, the consumer and the filter every step shares; ``stream``
    is the shard's stream being drained."""

    def __init__(self, letters: DeadLetters, group: str, consumer: str, batch: int,
                 reason: str | None, by: str, kind: str | None) -> None:
        self.client: redis.Redis = letters.client
        self.letters = letters
        self.stream = ""
        self.group, self.consumer, self.batch, self.reason, self.by = (group, consumer, batch,
                                                                        reason, by)
        self.kind = kind

    def run(self, handler: Handler, idle_ms: int) -> int:
        handled = 0
        for shard in self.letters.keys.shards:
            self.stream = self.letters.keys.dead_letters(shard)
            with unavailable_as_error():
                self._join(idle_ms)
                for position in ("0", ">"):  # our pending entries first (in order), then new
                    after = position
                    while entries := self._read(after):
                        for letter_id, letter in entries:
                            handled += self._settle(letter_id, letter, handler)
                        after = entries[-1][0] if position == "0" else ">"
        return handled

    def _join(self, idle_ms: int) -> None:
        """Create the group if need be; take over entries others left pending too long."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        start = "0-0"
        while True:  # XAUTOCLAIM pages like SCAN; claimed entries join our own pending list
            reply = self.client.xautoclaim(self.stream, self.group, self.consumer, idle_ms,
                                           start, count=self.batch)
            start = as_text(reply[0])
            if start == "0-0":
                return

    def _read(self, position: str) -> list[tuple[str, DeadLetter | None]]:
        reply: Any = self.client.xreadgroup(self.group, self.consumer, {self.stream: position},
                                            count=self.batch)
        ids = [as_text(entry_id) for _, items in reply or [] for entry_id, _ in items]
        found = {letter.id: letter for letter in load_letters(self.client, self.letters.keys,
                                                               ids)}
        return [(letter_id, found.get(letter_id)) for letter_id in ids]

    def _settle(self, letter_id: str, letter: DeadLetter | None, handler: Handler) -> int:
        if letter is None or letter.state != QUARANTINED or self.reason not in (
                None, letter.reason) or self.kind not in (None, letter.kind):
            self.client.xack(self.stream, self.group, letter_id)  # not ours to hand over
            return 0
        try:
            handler(letter)
        except KeepQuarantined:
            return 0  # unacknowledged: it stays pending, and quarantined, for a later drain
        except Exception as exc:
            exc.add_note(f"dead-letter drain stopped at {letter_id}; it stays pending in "
                         f"{self.group}")
            raise
        # archived and acknowledged together: a crash before this hands the letter over again
        keys = self.letters.keys
        self.letters.scripts("archive", [keys.dead_letters(letter_shard(letter_id)),
                                         keys.dead_letter(letter_id)],
                             [self.group, letter_id, self.by, self.consumer, uuid.uuid4().hex])
        return 1
