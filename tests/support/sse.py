"""A small Server-Sent Events reader over httpx for tests: events as they arrive, comments
counted, a deadline on the whole read (the heartbeats keep every single read short)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    data: Any
    id: int | None


class EventReader:
    def __init__(self, http: httpx.Client, url: str, **kwargs: Any) -> None:
        self._cm = http.stream("GET", url, **kwargs)
        self.response = self._cm.__enter__()
        self._lines = self.response.iter_lines()
        self.heartbeats = 0
        self.ended = False

    def __iter__(self) -> Iterator[Event]:
        fields: dict[str, str] = {}
        for line in self._lines:
            if line.startswith(":"):
                self.heartbeats += 1
            elif line == "":
                if "data" in fields:
                    yield Event(fields.get("event", "message"), json.loads(fields["data"]),
                                int(fields["id"]) if "id" in fields else None)
                fields = {}
            else:
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
        self.ended = True

    def take(self, count: int, timeout: float = 30.0, event: str | None = None) -> list[Event]:
        """The next ``count`` events (of kind ``event`` when given; others are kept too)."""
        got: list[Event] = []
        deadline = time.monotonic() + timeout
        for item in self:
            got.append(item)
            if len([e for e in got if event is None or e.event == event]) >= count:
                return got
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"{len(got)} events, wanted {count} {event or ''}: {got}")

    def rest(self, timeout: float = 30.0) -> list[Event]:
        """Every event until the server ends the stream."""
        got: list[Event] = []
        deadline = time.monotonic() + timeout
        for item in self:
            got.append(item)
            if time.monotonic() > deadline:
                raise AssertionError(f"stream still open after {timeout} s: {got}")
        return got

    def close(self) -> None:
        self._cm.__exit__(None, None, None)

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
