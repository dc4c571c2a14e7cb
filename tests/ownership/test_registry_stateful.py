"""Random interleavings of registry calls, checked against a small model of runs and fences."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from leasegate.ownership import Lease, LeaseHeld, LeaseLost, Registry, RunState
from leasegate.testing.redis_server import RedisServer
from tests.support.helpers import wait_for_state

SESSION_KEYS = ("job:a", "job:b", "tenant/7 weekly")
LONG_TTL = 30.0
SHORT_TTL = 0.15
PARK = 60.0
MAX_EXPIRIES = 2  # each one waits ~SHORT_TTL of real time: keep the examples fast


@dataclass
class ModelRun:
    session_key: str
    run_id: str
    fence: int
    state: RunState = RunState.LIVE
    outcome: str | None = None
    superseded_by: str | None = None


@dataclass
class Model:
    runs: dict[str, ModelRun] = field(default_factory=dict)
    fences: dict[str, list[int]] = field(default_factory=dict)

    def alive(self, session_key: str) -> list[ModelRun]:
        return [run for run in self.runs.values()
                if run.session_key == session_key and run.state.alive]


class RegistryMachine(RuleBasedStateMachine):
    """``client`` is set by the test on a subclass: one Redis of the session per version."""

    client: redis.Redis

    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry(self.client, f"sm{uuid.uuid4().hex[:10]}")
        self.model = Model()
        self.lease_of: dict[str, Lease] = {}
        self.expiries = 0

    # -- rules -------------------------------------------------------------------------------

    @rule(target=leases, session_key=st.sampled_from(SESSION_KEYS),
          policy=st.sampled_from(["supersede", "exclusive"]))
    def acquire(self, session_key: str, policy: str) -> Lease:
        alive = self.model.alive(session_key)
        if policy == "exclusive" and alive:
            with pytest.raises(LeaseHeld) as caught:
                self.registry.acquire(session_key, LONG_TTL, "exclusive")
            assert caught.value.holder_run_id == alive[0].run_id
            assert caught.value.holder_state == alive[0].state.value
            return self.lease_of[alive[0].run_id]  # nothing new: hand an existing lease on
        lease = self.registry.acquire(session_key, LONG_TTL, policy)  # type: ignore[arg-type]
        fences = self.model.fences.setdefault(session_key, [])
        assert lease.fence == (fences[-1] + 1 if fences else 1)
        assert lease.previous_run_id == (alive[0].run_id if alive else None)
        for run in alive:
            run.state = RunState.SUPERSEDED
            run.superseded_by = lease.run_id
        fences.append(lease.fence)
        self.model.runs[lease.run_id] = ModelRun(session_key, lease.run_id, lease.fence)
        self.lease_of[lease.run_id] = lease
        return lease

    @rule(lease=leases, with_ttl=st.booleans())
    def renew(self, lease: Lease, with_ttl: bool) -> None:
        run = self.model.runs[lease.run_id]
        if run.state.alive:
            renewed = self.registry.renew(lease, LONG_TTL if with_ttl else None)
            assert renewed.state is RunState.LIVE
            assert renewed.fence == run.fence
            run.state = RunState.LIVE
        else:
            with pytest.raises(LeaseLost) as caught:
                self.registry.renew(lease)
            assert caught.value.reason == run.state.value

    @rule(lease=leases)
    def park(self, lease: Lease) -> None:
        run = self.model.runs[lease.run_id]
        if run.state.alive:
            assert self.registry.park(lease, PARK).state is RunState.PARKED
            run.state = RunState.PARKED
        else:
            with pytest.raises(LeaseLost) as caught:
                self.registry.park(lease, PARK)
            assert caught.value.reason == run.state.value

    @rule(lease=leases, outcome=st.sampled_from(["completed", "failed", "cancelled"]))
    def release(self, lease: Lease, outcome: str) -> None:
        run = self.model.runs[lease.run_id]
        if run.state.alive:
            run.state = RunState.RELEASED
            run.outcome = outcome
        status = self.registry.release(lease, outcome)  # type: ignore[arg-type]
        assert status.state is run.state
        assert status.outcome == run.outcome

    @precondition(lambda self: self.expiries < MAX_EXPIRIES)
    @rule(lease=leases)
    def expire(self, lease: Lease) -> None:
        """Shorten a live or parked run's ttl and wait (polling) until the server expires it."""
        run = self.model.runs[lease.run_id]
        if not run.state.alive:
            return
        self.expiries += 1
        self.registry.renew(lease, SHORT_TTL)
        wait_for_state(self.registry, lease, RunState.EXPIRED)
        run.state = RunState.EXPIRED

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def every_run_agrees_with_the_model(self) -> None:
        for run in self.model.runs.values():
            status = self.registry.status(run.session_key, run.run_id)
            assert status.state is run.state, (run, status)
            assert status.fence == run.fence
            assert status.outcome == run.outcome
            assert status.superseded_by == run.superseded_by
            if run.superseded_by is not None:
                assert status.superseded_by_fence == self.model.runs[run.superseded_by].fence

    @invariant()
    def at_most_one_owner_per_session_key(self) -> None:
        owners: dict[str, int] = {}
        for run in self.model.runs.values():
            if self.registry.status(run.session_key, run.run_id).state.alive:
                owners[run.session_key] = owners.get(run.session_key, 0) + 1
        assert all(count == 1 for count in owners.values()), owners

    @invariant()
    def fences_strictly_increase(self) -> None:
        for session_key, fences in self.model.fences.items():
            assert all(a < b for a, b in itertools.pairwise(fences))
            if fences:
                counter = self.client.get(self.registry.keys.fence(session_key))
                assert counter is not None
                assert int(counter) == fences[-1]


def test_registry_state_machine(redis_server: RedisServer) -> None:
    client = redis_server.client()

    class Machine(RegistryMachine):
        pass

    Machine.client = client
    try:
        run_state_machine_as_test(
            Machine,
            settings=settings(max_examples=20, stateful_step_count=20, deadline=None),
        )
    finally:
        client.close()
