"""Server-side lease controls for tests (``leasegate_lease_control``): expire a run's lease
now, supersede it, park it, and make a task's result arrive late. Each acts on Redis the way
the real event would, so the gate's own rules decide what happens next."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..broker import Client, Run
from ..ownership import Lease, as_text

# Move the lease's expiry to the server's now: the gate derives 'expired' from exp <= TIME,
# exactly as it would for a runtime that stopped renewing. Nothing else changes.
EXPIRE_NOW = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'live' and state ~= 'parked' then return state or 'unknown' end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'exp', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return 'expired'
"""


class LeaseNotHeld(AssertionError):
    """The run's lease is not live or parked: there is nothing left to expire or park."""


class LeaseControl:
    """What a test does to a run's lease from outside the runtime, as the world would."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._undo: list[Callable[[], None]] = []

    def expire(self, run: Run) -> None:
        """Let ``run``'s lease run out now (on Redis server time), as if its runtime died."""
        state = as_text(self.client.redis.eval(
            EXPIRE_NOW, 1, self.client.keys.run(run.session_key, run.run_id)))
        if state != "expired":
            raise LeaseNotHeld(f"run {run.run_id} of session {run.session_key!r} is {state}, "
                               "not live or parked: its lease cannot expire")

    def supersede(self, run: Run, ttl: float = 60.0, prompt: Any = "superseded") -> Run:
        """Start a newer run of ``run``'s session key (policy supersede), as a new cron tick
        or chat turn would; the new run is returned."""
        return self.client.start_run(run.session_key, prompt, ttl=ttl, policy="supersede")

    def park(self, run: Run, until: float = 300.0) -> Lease:
        """Park ``run``: it waits for callbacks without heartbeats until ``until`` seconds."""
        return run.park(until)

    def after_work(self, task: Any, action: Callable[[], object]) -> None:
        """Call ``action()`` each time ``task``'s work function returns, before its result
        reaches the gate: what happens meanwhile (an expiry, a supersede) makes the result
        late. Needs the in-process worker of ``leasegate_worker``; undone after the test."""
        task = getattr(task, "_get_current_object", lambda: task)()  # a decorator's proxy
        original = task.run
        own = "run" in vars(task)  # usually the class's: then undoing is deleting ours

        def run_then_act(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            action()
            return result

        task.run = run_then_act
        self._undo.append(lambda: setattr(task, "run", original) if own
                          else delattr(task, "run"))

    @contextmanager
    def active(self) -> Iterator[LeaseControl]:
        """The fixture's life: every ``after_work`` is undone at the end."""
        try:
            yield self
        finally:
            while self._undo:
                self._undo.pop()()
