"""What the promise model (tests/system/test_promise_model.py) keeps and reads: its own record
of runs and signed envelopes, and a walk of every inbox and dead letter in Redis, so that its
invariants compare what Redis holds against what the runtime asked for, not against itself."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leasegate.broker import Client, Entry, Envelope, Inbox, Run
from leasegate.ownership import Lease, as_text, glob_escape

# (session key, run id, callback id, submitted at ms or deadline ms): one callback, whatever
# data loss did to fences and run ids (the times are server times, never issued twice)
CallbackKey = tuple[str, str, str, int]


class RecordingRun(Run):
    """A Run that keeps every envelope it signs (``Run.submit`` signs after its script took
    the callback, just before sending), as benchmarks/chaos.py's RecordingRun does."""

    def __init__(self, client: Client, lease: Lease, signed: list[Envelope]) -> None:
        super().__init__(client, lease)
        self.signed = signed

    def _sign(self, *args: Any, **kwargs: Any) -> Envelope:
        env = super()._sign(*args, **kwargs)
        self.signed.append(env)
        return env


@dataclass(eq=False)
class ModelRun:
    run: RecordingRun
    prompt: str
    epoch: int                    # data losses before it started
    ended_epoch: int | None = None  # released or superseded, known in this epoch


@dataclass(eq=False)
class ModelCallback:
    env: Envelope
    owner: ModelRun
    epoch: int                    # data losses before its submit returned

    @property
    def by_submit(self) -> CallbackKey:
        e = self.env
        return (e.session_key, e.run_id, e.callback_id, e.submitted_at_ms)

    @property
    def by_deadline(self) -> CallbackKey:
        e = self.env
        return (e.session_key, e.run_id, e.callback_id, e.deadline_at_ms)


@dataclass(frozen=True)
class Letter:
    """One dead letter that names a callback (raw quarantines name none)."""

    id: str
    reason: str
    key: CallbackKey              # by deadline: gate and reaper letters both record it


def inboxes(client: Client) -> Iterator[tuple[str, str, list[Entry]]]:
    """(session key, run id, entries) of every inbox stream in the namespace."""
    pattern = re.compile(r"^run:([^:]+):inbox$")
    for raw in client.redis.scan_iter(match=client.keys.session_pattern("*", "run:*:inbox"),
                                      count=1000):
        session_key, rest = client.keys.split_session_key(as_text(raw))
        match = pattern.match(rest)
        assert match, f"inbox key {as_text(raw)!r} does not parse"
        yield session_key, match[1], Inbox(client.redis, as_text(raw)).entries()


def letters(client: Client) -> list[Letter]:
    found = []
    every_shard = f"{glob_escape(client.keys.namespace)}:{{*}}:dlq:letter:*"
    for raw in client.redis.scan_iter(match=every_shard, count=1000):
        f: Mapping[str, str] = {as_text(k): as_text(v)
                                for k, v in client.redis.hgetall(raw).items()
                                if as_text(k) not in ("body", "arts", "raw")}
        if f.get("cb"):
            found.append(Letter(f["id"], f["reason"],
                                (f["sk"], f["run"], f["cb"], int(f["deadline"]))))
    return found


def submitted_ms(entry: Entry) -> int:
    return round(float(entry.provenance["submitted_at"]) * 1000)


def lose_aof_tail(directory: str, size: int) -> int:
    """Cut ``size`` bytes off the newest append-only file (Redis 7: the last incr file under
    appendonlydir/; 6.2: appendonly.aof): what a crash before the disk write loses. Returns
    how many bytes went. Call between kill and start."""
    folder = Path(directory, "appendonlydir")
    if folder.is_dir():
        parts = sorted(folder.glob("*.incr.aof"), key=lambda p: int(p.name.split(".")[-3]))
        target = parts[-1] if parts else None
    else:
        target = Path(directory, "appendonly.aof")
    if target is None or not target.exists():
        return 0
    length = target.stat().st_size
    cut = min(size, length)
    with target.open("r+b") as handle:
        handle.truncate(length - cut)
    return cut
