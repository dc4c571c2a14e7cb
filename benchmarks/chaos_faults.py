"""The chaos drill's later faults, kept apart from its driver (benchmarks/chaos.py): poison on
the queue, a Redis restart that loses the end of its AOF, and what the checker must then
accept, because each fault changes what a right ending is for some callbacks.

- Poison: raw items that are not Celery messages, pushed straight onto the workers' queue;
  each distinct item must end as exactly one ``malformed`` dead letter holding its bytes.
- AOF tail loss: Redis is SIGKILLed and the end of its last incremental AOF file is cut, so
  acknowledged writes are lost. A mark (the server time, written every few ms until the kill)
  tells where the loss can begin: every write before the surviving mark survived. A callback
  whose submit may have run at or after that mark may have lost its records (its pending
  entry, its message), so it may have no verdict: it is exempt from "has a verdict", never
  from "is in no other run's inbox" nor from "is in at most one place".
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis

QUEUE = "media"  # the queue the drill's workers consume
# The drill's tools (benchmarks.apps:chaos declares the two of its own) and their routes.
CHAOS_TASKS = {"hard_limit": ("chaos.hard_limit", QUEUE), "oversized": ("chaos.oversized", QUEUE)}
TOOLS = {"image_generate": ("leasegate.image_generate", QUEUE), **CHAOS_TASKS}
# Distinct inputs; the first is pushed twice, so one letter per distinct input is checked.
POISON = (b"chaos poison: not json", b"\xff\xfe\x00 chaos binary poison",
          b'{"chaos": "json, but no message"}')
MARK_EVERY = 0.01      # seconds between loss marks in the run-up to the kill
MARK_FOR = 1.0         # seconds of marks before the kill
CUT_BYTES = (1024, 6144)  # how much of the AOF tail is cut (a range, drawn per drill)


@dataclass
class Loss:
    """One restart that lost its AOF tail: writes at server time >= ``mark_ms`` may be lost
    (up to the kill); everything from ``restarted_ms`` on happened after it."""
    mark_ms: int
    killed_ms: int
    restarted_ms: int
    cut_bytes: int
    mark_survived: bool

    def may_have_lost(self, began_ms: int | None, ended_ms: int | None) -> bool:
        """Could a call that began and ended at these server times have been erased?"""
        if began_ms is None or ended_ms is None:
            return True  # unknown: assume the worst
        return ended_ms >= self.mark_ms - 1 and began_ms <= self.restarted_ms


@dataclass
class PoisonLog:
    pushed: Counter[bytes] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, r: redis.Redis, index: int) -> None:
        raw = POISON[index % len(POISON)] if index < len(POISON) else POISON[0]
        r.lpush(QUEUE, raw)
        with self.lock:
            self.pushed[raw] += 1

    def check(self, letters: list[bytes]) -> list[str]:
        """What is wrong with the ``malformed`` letters' raw bytes, given what was pushed."""
        got = Counter(letters)
        problems = [f"poison {raw!r} (pushed {n}x) has {got[raw]} malformed letters, not 1"
                    for raw, n in self.pushed.items() if got[raw] != 1]
        problems += [f"a malformed letter for input nobody pushed: {raw[:60]!r}"
                     for raw in got if raw not in self.pushed]
        return problems


def write_marks(r: redis.Redis, key: str, stop: threading.Event, seconds: float) -> int:
    """Write the server time to ``key`` every MARK_EVERY s for ``seconds``; the first mark's
    time (every write before it is older than any later mark)."""
    first: int | None = None
    for _ in range(max(1, round(seconds / MARK_EVERY))):
        seconds_, micros = r.time()
        now = int(seconds_) * 1000 + int(micros) // 1000
        first = now if first is None else first
        r.set(key, now)
        if stop.wait(MARK_EVERY):
            break
    assert first is not None
    return first


def cut_aof_tail(directory: str, rng: random.Random) -> int:
    """Cut the end of the last incremental file of Redis 7's multi-part AOF (the server must
    be dead); returns how many bytes were cut."""
    files = sorted(Path(directory, "appendonlydir").glob("*.incr.aof"),
                   key=lambda p: int(p.name.split(".")[-3]))
    if not files:
        raise RuntimeError(f"no incremental AOF file under {directory}/appendonlydir")
    last = files[-1]
    size = last.stat().st_size
    cut = min(size, rng.randint(*CUT_BYTES))
    with last.open("r+b") as handle:
        handle.truncate(size - cut)
    return cut
