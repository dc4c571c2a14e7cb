"""The plain objects the registry hands out: a lease, a run's state, a run's status."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RunState(enum.Enum):
    LIVE = "live"
    PARKED = "parked"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"
    RELEASED = "released"
    UNKNOWN = "unknown"

    @property
    def alive(self) -> bool:
        """Owns its session key: results may be delivered to it."""
        return self in (RunState.LIVE, RunState.PARKED)


OUTCOMES = ("completed", "failed", "cancelled")
POLICIES = ("supersede", "exclusive")


@dataclass(frozen=True)
class Lease:
    """Proof of ownership of one run. ``fence`` grows with every new run of the session key.

    Times are Redis server time in seconds since the epoch. ``incarnation`` is the random
    nonce the acquire stored in the run's record: fence counters restart after Redis loses
    data, so (run id, fence) can be issued twice; (run id, fence, incarnation) cannot.
    """

    session_key: str
    run_id: str
    fence: int
    expires_at: float
    ttl: float
    state: RunState = RunState.LIVE
    previous_run_id: str | None = None
    incarnation: str = ""


@dataclass(frozen=True)
class RunStatus:
    """What the registry knows of one run, read at one instant of server time."""

    session_key: str
    run_id: str
    state: RunState
    fence: int | None = None
    expires_at: float | None = None
    outcome: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    ended_at: float | None = None
    ttl: float | None = None
    superseded_by: str | None = None
    superseded_by_fence: int | None = None
    server_time: float | None = None
    incarnation: str | None = None
