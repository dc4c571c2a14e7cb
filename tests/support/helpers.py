"""Small helpers shared by the registry tests: polling with a deadline, server time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import redis

from leasegate.ownership import Lease, Registry, RunState, RunStatus

T = TypeVar("T")


def wait_for_value(condition: Callable[[], T | None], timeout: float = 5.0,
                   interval: float = 0.01, message: str = "condition",
                   detail: Callable[[], str] | None = None) -> T:
    """Poll ``condition`` until it answers something true and return that answer; fail after
    ``timeout`` seconds of monotonic time (with ``detail()`` of what was seen last). The
    condition may raise to end the wait early (the process it waits on has died)."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() >= deadline:
            seen = f": {detail()}" if detail else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {message}{seen}")
        time.sleep(interval)  # polling pace, not synchronisation: the condition decides


def wait_until(predicate: Callable[[], object], timeout: float = 5.0,
               interval: float = 0.01, message: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds of monotonic time."""
    wait_for_value(predicate, timeout, interval, message)


def wait_for_state(registry: Registry, lease: Lease, state: RunState,
                   timeout: float = 5.0) -> RunStatus:
    """Poll ``registry.status(lease)`` until it shows ``state``; return that status."""
    seen: list[RunStatus] = []

    def reached() -> bool:
        seen.append(registry.status(lease))
        return seen[-1].state is state

    wait_until(reached, timeout, message=f"run {lease.run_id} to be {state.value}")
    return seen[-1]


def server_time(client: redis.Redis) -> float:
    """Redis server time in seconds since the epoch."""
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def registry_verdicts(registry: Registry, client: redis.Redis) -> list[list[object]]:
    """One fixed sequence of registry calls and what the registry answered at each step.

    Times are checked against the server's TIME (a second of slack), so the list says
    nothing about the caller's clock: two callers with different clocks must get equal lists.
    Every bool in the list is a check that should be True.
    """
    from leasegate.ownership import LeaseHeld, LeaseLost

    def near(expires_at: float | None, seconds: float) -> bool:
        return expires_at is not None and abs(expires_at - (server_time(client) + seconds)) < 1

    def lost_reason(call: Callable[[], object]) -> str:
        try:
            call()
        except LeaseLost as lost:
            return lost.reason
        return "not lost"

    out: list[list[object]] = []
    lease = registry.acquire("skew:a", ttl=30)
    out.append(["acquire", lease.state.value, lease.fence, lease.previous_run_id is None,
                near(lease.expires_at, 30)])
    renewed = registry.renew(lease, ttl=20)
    out.append(["renew", renewed.state.value, renewed.ttl, near(renewed.expires_at, 20)])
    parked = registry.park(lease, until=120)
    out.append(["park", parked.state.value, near(parked.expires_at, 120)])
    status = registry.status(lease)
    out.append(["status", status.state.value, status.fence,
                status.expires_at == parked.expires_at,
                status.server_time is not None and abs(status.server_time
                                                       - server_time(client)) < 1])
    try:
        registry.acquire("skew:a", policy="exclusive")
        out.append(["exclusive", "acquired"])
    except LeaseHeld as held:
        out.append(["exclusive", held.holder_state, held.holder_run_id == lease.run_id,
                    held.holder_expires_at == parked.expires_at])
    back = registry.renew(lease)
    out.append(["renew-after-park", back.state.value, back.ttl, near(back.expires_at, 20)])

    short = registry.acquire("skew:b", ttl=0.2)
    expired = wait_for_state(registry, short, RunState.EXPIRED)
    out.append(["expire", expired.state.value, expired.expires_at == short.expires_at])
    out.append(["renew-expired", lost_reason(lambda: registry.renew(short))])
    out.append(["release-expired", registry.release(short).state.value])

    newer = registry.acquire("skew:a", ttl=30)
    out.append(["supersede", newer.fence, newer.previous_run_id == lease.run_id])
    out.append(["renew-superseded", lost_reason(lambda: registry.renew(lease))])
    old = registry.status("skew:a", lease.run_id)
    out.append(["status-superseded", old.state.value, old.superseded_by == newer.run_id,
                old.superseded_by_fence])
    released = registry.release(newer, "failed")
    again = registry.release(newer, "completed")
    out.append(["release", released.state.value, released.outcome, again.outcome,
                released.ended_at is not None and abs(released.ended_at
                                                      - server_time(client)) < 1])
    out.append(["renew-released", lost_reason(lambda: registry.renew(newer))])
    out.append(["status-unknown", registry.status("skew:a", "nobody").state.value])
    return out
