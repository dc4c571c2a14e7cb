"""Draining dead letters: hand each quarantined letter to a handler, then archive it, with a
Redis consumer group on each shard's dead-letter stream remembering progress across crashes.

One order across shards: every shard's group is read a batch at a time (one pipeline for the
shards that need more) and the letters are handed over merged by stream id: the order they
were quarantined in, to the millisecond (within one, by shard). A shard's own pending entries
come before its new ones; both are in its stream's order, so the merge stays in id order.

Its own module because it is the one part of the dead letters with a protocol of its own
(XREADGROUP, XAUTOCLAIM, acknowledgement inside archive-2.lua); ``DeadLetters.drain`` calls it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from ...ownership import as_text, check_seconds, unavailable_as_error
from ..codes import QUARANTINED
from ..keys import letter_shard
from .index import MAX_LIMIT, check_name
from .letter import DeadLetter, KeepQuarantined, load_letters
from .merge import stream_position

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


@dataclass
class _Feed:
    """One shard's part of a drain: where its next read starts and what it read."""

    stream: str
    after: str = "0"        # pending entries after this id first; then ">" (new ones)
    done: bool = False
    buffer: deque[tuple[str, DeadLetter | None]] = field(default_factory=deque)


class _Drain:
    """One drain call: the group, the consumer and the filter every step shares."""

    def __init__(self, letters: DeadLetters, group: str, consumer: str, batch: int,
                 reason: str | None, by: str, kind: str | None) -> None:
        self.client: redis.Redis = letters.client
        self.letters = letters
        self.group, self.consumer, self.batch, self.reason, self.by = (group, consumer, batch,
                                                                        reason, by)
        self.kind = kind

    def run(self, handler: Handler, idle_ms: int) -> int:
        handled = 0
        feeds = [_Feed(self.letters.keys.dead_letters(shard))
                 for shard in self.letters.keys.shards]
        with unavailable_as_error():
            for feed in feeds:
                self._join(feed.stream, idle_ms)
            while True:
                self._refill([f for f in feeds if not f.buffer and not f.done])
                live = [f for f in feeds if f.buffer]
                if not live:
                    return handled
                feed = min(live, key=lambda f: stream_position(f.buffer[0][0]))
                letter_id, letter = feed.buffer.popleft()
                handled += self._settle(feed.stream, letter_id, letter, handler)

    def _join(self, stream: str, idle_ms: int) -> None:
        """Create the group if need be; take over entries others left pending too long."""
        try:
            self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        start = "0-0"
        while True:  # XAUTOCLAIM pages like SCAN; claimed entries join our own pending list
            reply = self.client.xautoclaim(stream, self.group, self.consumer, idle_ms,
                                           start, count=self.batch)
            start = as_text(reply[0])
            if start == "0-0":
                return

    def _refill(self, feeds: list[_Feed]) -> None:
        """The next batch of each feed, one pipeline per step: a feed whose pending entries
        ran out reads its new ones in the next step; one with no new ones is done."""
        while feeds:
            pipe = self.client.pipeline(transaction=False)
            for feed in feeds:
                pipe.xreadgroup(self.group, self.consumer, {feed.stream: feed.after},
                                count=self.batch)
            replies: Any = pipe.execute()
            batches = [[as_text(i) for _, items in reply or [] for i, _ in items]
                       for reply in replies]
            found = {x.id: x for x in load_letters(self.client, self.letters.keys,
                                                    [i for ids in batches for i in ids])}
            again = []
            for feed, ids in zip(feeds, batches, strict=True):
                feed.buffer.extend((i, found.get(i)) for i in ids)
                if feed.after != ">":
                    feed.after = ids[-1] if ids else ">"
                    again += [] if ids else [feed]
                elif not ids:
                    feed.done = True
            feeds = again

    def _settle(self, stream: str, letter_id: str, letter: DeadLetter | None,
                handler: Handler) -> int:
        if letter is None or letter.state != QUARANTINED or self.reason not in (
                None, letter.reason) or self.kind not in (None, letter.kind):
            self.client.xack(stream, self.group, letter_id)  # not ours to hand over
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
