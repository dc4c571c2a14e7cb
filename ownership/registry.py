"""The ownership registry: runs, their leases and fencing tokens, on Redis.

Every decision about time is taken inside Lua with Redis server time; the client's clock is
used for nothing but the pace of background renewals.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal, overload

import redis

from . import holding
from .acquisition import Acquisition
from .codes import ErrorCode
from .connection import as_text, connect, glob_escape, unavailable_as_error
from .durability import Durability
from .errors import LeaseHeld, LeaseLost
from .holding import HeldLease
from .keys import Keys, check_run_id, check_session_key, shard_of
from .lease import OUTCOMES, POLICIES, Lease, RunState, RunStatus
from .scripts import Scripts
from .seconds import to_ms
from .unconfirmed import Unconfirmed

DEFAULT_MAX_TTL = 3600.0
DEFAULT_MAX_PARK = 86400.0
DEFAULT_RETENTION = 7 * 86400.0
INCARNATION_BYTES = 16

Policy = Literal["supersede", "exclusive"]
Outcome = Literal["completed", "failed", "cancelled"]


class Registry:
    """Leases for runs of session keys.

    ``companions`` are key suffixes (such as ``:inbox``) of keys that belong to a run and must
    expire with its record; the layers above register theirs.
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = "lg",
        *,
        max_ttl: float = DEFAULT_MAX_TTL,
        max_park: float = DEFAULT_MAX_PARK,
        retention: float = DEFAULT_RETENTION,
        companions: Sequence[str] = (),
        durability: Durability | None = None,
    ) -> None:
        self.client = client
        self.keys = Keys(namespace)
        self.max_ttl = float(max_ttl)
        self.max_park = float(max_park)
        self.retention_ms = to_ms("retention", retention)
        self.companions = tuple(companions)
        self.scripts = Scripts(client, Path(__file__).parent / "commands", durability=durability)
        # acquisitions that reached the primary but not the replicas: retried as the same call
        self.unconfirmed = Unconfirmed()

    @classmethod
    def from_url(cls, url: str, namespace: str = "lg", **options: Any) -> Registry:
        return cls(connect(url), namespace, **options)

    @property
    def namespace(self) -> str:
        return self.keys.namespace

    # -- keys of one run ---------------------------------------------------------------------

    def run_keys(self, session_key: str, run_id: str) -> list[str]:
        """The run record, the owner pointer and every companion key of the run."""
        run_key = self.keys.run(session_key, run_id)
        return [run_key, self.keys.owner(session_key),
                *(run_key + suffix for suffix in self.companions)]

    def prepare_acquire(self, session_key: str, ttl: float, policy: str,
                        run_id: str | None) -> Acquisition:
        """Check an acquire's input and name its KEYS and ARGV (the broker's start-run sends
        them too). ``run_id`` None: a fresh uuid4."""
        check_session_key(session_key)
        if run_id is not None:
            retried = self.unconfirmed.take(session_key, run_id)
            if retried is not None:
                return retried  # the same call again: its incarnation finds its own record
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
        ttl_ms = to_ms("ttl", ttl, self.max_ttl)
        generated = run_id is None
        run_id = uuid.uuid4().hex if run_id is None else check_run_id(run_id)
        return Acquisition(
            session_key=session_key, run_id=run_id, ttl=float(ttl), ttl_ms=ttl_ms,
            policy=policy, retention_ms=self.retention_ms, generated=generated,
            incarnation=secrets.token_hex(INCARNATION_BYTES),
            fence_key=self.keys.fence(session_key), owner_key=self.keys.owner(session_key),
            run_key=self.keys.run(session_key, run_id),
            run_prefix=self.keys.run_prefix(session_key))

    def finish_acquire(self, acquisition: Acquisition, reply: Sequence[Any]) -> Lease:
        """Interpret the acquire-run reply: a Lease, or the error it stands for.

        A record holding our incarnation (a nonce fresh for this call) can only be this very
        call, retried by the client after a lost reply: its own run.
        """
        a = acquisition
        code = int(reply[0])
        if code == ErrorCode.LEASE_HELD:
            raise LeaseHeld(a.session_key, as_text(reply[1]), int(reply[2]) / 1000,
                            as_text(reply[3]))
        if code == ErrorCode.RUN_EXISTS:
            if len(reply) > 1 and as_text(reply[1]) == a.incarnation:
                status = self.status(a.session_key, a.run_id)
                if status.fence is not None and status.state.alive:
                    return Lease(a.session_key, a.run_id, status.fence,
                                 status.expires_at or 0.0, a.ttl, status.state,
                                 incarnation=a.incarnation)
            raise ValueError(f"run_id {a.run_id!r} is already used for session "
                             f"{a.session_key!r}")
        previous = as_text(reply[4]) or None
        return Lease(a.session_key, a.run_id, int(reply[1]), int(reply[2]) / 1000, a.ttl,
                     RunState.LIVE, previous, a.incarnation)

    # -- the calls -------------------------------------------------------------------------

    def acquire(self, session_key: str, ttl: float = 30.0, policy: Policy = "supersede",
                run_id: str | None = None) -> Lease:
        """Start a new run: a lease with the next fencing token.

        ``supersede`` ends a live previous run at once; ``exclusive`` raises ``LeaseHeld``.
        """
        acquisition = self.prepare_acquire(session_key, ttl, policy, run_id)
        with self.unconfirmed.kept(acquisition), unavailable_as_error():
            reply = self.scripts("acquire", acquisition.keys, acquisition.argv)
        return self.finish_acquire(acquisition, reply)

    def renew(self, lease: Lease, ttl: float | None = None) -> Lease:
        """Heartbeat: extend a live (or parked) lease by ``ttl`` (default: its own ttl)."""
        ttl_ms = 0 if ttl is None else to_ms("ttl", ttl, self.max_ttl)
        return self._extend(lease, "live", ttl_ms)

    def park(self, lease: Lease, until: float = 120.0) -> Lease:
        """Keep the run alive without heartbeats for ``until`` seconds (waiting for callbacks)."""
        return self._extend(lease, "parked", to_ms("until", until, self.max_park))

    def _extend(self, lease: Lease, state: str, duration_ms: int) -> Lease:
        run_key, owner, *companions = self.run_keys(lease.session_key, lease.run_id)
        keys = [run_key, owner, self.keys.metrics(shard_of(lease.session_key)), *companions]
        with unavailable_as_error():
            reply = self.scripts("extend", keys, [lease.fence, state, duration_ms,
                                                  self.retention_ms, lease.incarnation])
        if int(reply[0]) == ErrorCode.LEASE_LOST:
            raise LeaseLost(as_text(reply[1]), lease.session_key, lease.run_id)
        ttl = int(reply[3]) / 1000
        return Lease(lease.session_key, lease.run_id, lease.fence, int(reply[1]) / 1000, ttl,
                     RunState(state), lease.previous_run_id, lease.incarnation)

    def release(self, lease: Lease, outcome: Outcome = "completed") -> RunStatus:
        """End the run with an outcome. Idempotent: releasing again changes nothing.

        A run that already expired or was superseded keeps that state.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
        keys = self.run_keys(lease.session_key, lease.run_id)
        with unavailable_as_error():
            self.scripts("release", keys, [lease.run_id, lease.fence, outcome,
                                           self.retention_ms, lease.incarnation])
        return self.status(lease)

    @overload
    def status(self, lease: Lease, /) -> RunStatus: ...
    @overload
    def status(self, session_key: str, run_id: str, /) -> RunStatus: ...

    def status(self, target: Lease | str, run_id: str | None = None, /) -> RunStatus:
        """What is known of a run now (by server time)."""
        if isinstance(target, Lease):
            session_key, run_id = target.session_key, target.run_id
        else:
            session_key = check_session_key(target)
            if run_id is None:
                raise TypeError("status(session_key, run_id) needs the run_id")
            check_run_id(run_id)
        with unavailable_as_error():
            reply = self.scripts("status", [self.keys.run(session_key, run_id)], [])
        return status_from_reply(session_key, run_id, reply)

    def runs(self, session_key: str | None = None,
             run_id: str | None = None) -> Iterator[tuple[str, str]]:
        """(session key, run id) of every run record (of one session key, or with one id).

        A SCAN over the namespace: for operators and exporters, never the delivery path.
        """
        sk = glob_escape(session_key) if session_key else "*"
        rid = glob_escape(run_id) if run_id else "*"
        pattern = self.keys.session_pattern(sk, f"run:{rid}")
        with unavailable_as_error():
            for raw in self.client.scan_iter(match=pattern, count=1000, _type="hash"):
                found_sk, rest = self.keys.split_session_key(as_text(raw))
                tail = rest.removeprefix("run:")
                if tail != rest and tail and ":" not in tail:  # companions are not runs
                    yield found_sk, tail

    def hold(self, session_key: str, ttl: float = 30.0, policy: Policy = "supersede",
             run_id: str | None = None) -> AbstractContextManager[HeldLease]:
        """Acquire, renew every ttl/3 in the background, release on exit.

        The outcome is 'failed' if the block raised, else 'completed'. If the lease was lost
        while the block ran, exiting raises ``LeaseLost`` (``lease.check()`` raises it sooner).
        """
        return holding.hold(self, session_key, ttl, policy, run_id)


def _maybe_int(fields: dict[str, str], name: str) -> int | None:
    return int(fields[name]) if name in fields else None


def _maybe_seconds(fields: dict[str, str], name: str) -> float | None:
    return int(fields[name]) / 1000 if name in fields else None


def status_from_reply(session_key: str, run_id: str, reply: Sequence[Any]) -> RunStatus:
    """Build a RunStatus from ``{now_ms, state, field, value, ...}``."""
    raw = [as_text(item) for item in reply[2:]]
    fields = dict(zip(raw[::2], raw[1::2], strict=True))
    return RunStatus(
        session_key=session_key,
        run_id=run_id,
        state=RunState(as_text(reply[1])),
        fence=_maybe_int(fields, "fence"),
        expires_at=_maybe_seconds(fields, "exp"),
        outcome=fields.get("outcome"),
        created_at=_maybe_seconds(fields, "created"),
        updated_at=_maybe_seconds(fields, "updated"),
        ended_at=_maybe_seconds(fields, "ended"),
        ttl=_maybe_seconds(fields, "ttl"),
        superseded_by=fields.get("by_run"),
        superseded_by_fence=_maybe_int(fields, "by_fence"),
        server_time=int(reply[0]) / 1000,
        incarnation=fields.get("inc"),
    )
