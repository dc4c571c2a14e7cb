"""Pushed results: one run's inbox as Server-Sent Events, with no thread per stream.

Each stream is a coroutine blocked in XREAD BLOCK on the run's inbox (redis.asyncio), so a
delivery reaches the client as soon as the gate's XADD lands; a thousand idle streams cost a
thousand parked coroutines and Redis connections, not threads. Whether the run has ended is
Redis's word (the registry's status, read every ``poll`` seconds, or when its lease is due to
end by server time); the gateway's clock only paces heartbeats and polls.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from ..broker import Entry
from ..ownership import RunStatus
from .entries import entry_json

MIN_BLOCK = 0.05  # seconds: never spin on a lease that is due to end this instant


@dataclass(frozen=True)
class StreamSettings:
    poll: float = 5.0        # seconds between status reads (run-end detection), +-20 %
    heartbeat: float = 15.0  # seconds between ': hb' comments on a quiet stream
    max_streams: int = 10_000  # per process: each holds one Redis connection while blocked
    batch: int = 100         # entries per XREAD

    @classmethod
    def from_env(cls) -> StreamSettings:
        return cls(_number("LEASEGATE_SSE_POLL", cls.poll, float),
                   _number("LEASEGATE_SSE_HEARTBEAT", cls.heartbeat, float),
                   int(_number("LEASEGATE_SSE_MAX_STREAMS", cls.max_streams, int)))


def _number(name: str, default: float, kind: type[float] | type[int]) -> float:
    raw = os.environ.get(name) or ""
    try:
        value = kind(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") \
            from None
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {raw}")
    return value


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class InboxStream:
    """The events of one run's inbox after seq ``after``, until the run ends."""

    redis: aioredis.Redis
    key: str                                           # the run's inbox stream
    ref: str                                           # echoed in artifact links
    after: int                                         # last seq the client has
    status: Callable[[], Awaitable[RunStatus]]         # the registry's word, read async
    state_body: Callable[[RunStatus], Awaitable[dict[str, Any]]]
    settings: StreamSettings
    last_id: str = "0-0"                               # stream id read up to

    def _entries(self, rows: Any) -> list[str]:
        out = []
        for entry_id, fields in rows:
            self.last_id = _text(entry_id)
            entry = Entry.from_stream(entry_id, fields)
            if entry.seq > self.after:  # a resumed stream skips what the client has
                self.after = entry.seq
                out.append(sse("entry", entry_json(entry, self.ref), entry.seq))
        return out

    async def _drain(self) -> list[str]:
        rows = await self.redis.xrange(self.key, min=f"({self.last_id}" if self.last_id !=
                                       "0-0" else "-")
        return self._entries(rows)

    def _pace(self) -> float:
        # jittered: streams opened together must not poll together, in bursts
        return self.settings.poll * random.uniform(0.8, 1.2)

    async def events(self, first: RunStatus) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        status, seen = first, first.state
        for event in await self._drain():  # the backlog, then live deliveries
            yield event
        next_poll = next_beat = loop.time()
        next_poll += self._pace()
        next_beat += self.settings.heartbeat
        while True:
            if not status.state.alive:
                for event in await self._drain():  # delivered before the run ended
                    yield event
                yield sse("state", await self.state_body(status))
                return
            block = min(next_poll, next_beat) - loop.time()
            if status.expires_at is not None and status.server_time is not None:
                # wake when the lease is due to end by server time; Redis then decides
                block = min(block, status.expires_at - status.server_time + MIN_BLOCK)
            reply: Any = await self.redis.xread({self.key: self.last_id},
                                                count=self.settings.batch,
                                                block=max(1, int(max(block, MIN_BLOCK) * 1000)))
            for _, rows in reply or []:
                for event in self._entries(rows):
                    yield event
            now = loop.time()
            if now >= next_beat:
                next_beat = now + self.settings.heartbeat
                yield ": hb\n\n"
            if not reply or now >= next_poll:
                next_poll = now + self._pace()
                status = await self.status()
                if status.state is not seen and status.state.alive:
                    seen = status.state  # live <-> parked: said, the stream goes on
                    yield sse("state", await self.state_body(status))
