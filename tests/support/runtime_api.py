"""Helpers for tests of the runtime API over HTTP: start a run, wait for inbox entries, count
the commands Redis ran (to show a refused request reached nothing), read dead letters."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import redis

from leasegate.broker import Client

from .celery_workers import SECRET
from .helpers import wait_for_value


def session(prefix: str = "cron:") -> str:
    return f"{prefix}t-{uuid.uuid4().hex[:8]}"


def start(http: httpx.Client, session_key: str | None = None, *, prompt: Any = "Draw a fox",
          ttl: float = 60, **extra: Any) -> dict[str, Any]:
    reply = http.post("/v1/runs", json={"session_key": session_key or session(),
                                        "prompt": prompt, "ttl": ttl, **extra})
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def inbox(http: httpx.Client, ref: str, after: int = 0) -> list[dict[str, Any]]:
    reply = http.get(f"/v1/runs/{ref}/inbox", params={"after": after})
    assert reply.status_code == 200, reply.text
    entries: list[dict[str, Any]] = reply.json()["entries"]
    return entries


def wait_entries(http: httpx.Client, ref: str, count: int,
                 timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll the inbox until it holds ``count`` entries; fail after ``timeout``."""
    seen: list[dict[str, Any]] = []

    def enough() -> tuple[list[dict[str, Any]]] | None:
        seen[:] = inbox(http, ref)
        return (list(seen),) if len(seen) >= count else None

    return wait_for_value(enough, timeout, 0.05, f"{count} inbox entries",
                          lambda: f"the inbox has {len(seen)}: {seen}")[0]


def wait_settled(http: httpx.Client, ref: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the run's status until no callback is pending (each has its verdict)."""
    last: list[dict[str, Any]] = [{}]

    def settled() -> dict[str, Any] | None:
        last[0] = http.get(f"/v1/runs/{ref}").json()
        return None if last[0]["pending"] else last[0]

    return wait_for_value(settled, timeout, 0.05, "no callback pending", lambda: str(last[0]))


def commands_run(client: redis.Redis) -> int:
    """How many commands Redis has executed (INFO commandstats), this call's own excluded."""
    stats: dict[str, Any] = client.info("commandstats")
    total = sum(int(v["calls"]) for v in stats.values())
    return total - int(stats.get("cmdstat_info", {}).get("calls", 0))


def python_client(redis_url: str, namespace: str) -> Client:
    return Client.from_url(redis_url, namespace, secret=SECRET.encode())
