"""The promise as a model-based test: hypothesis drives the runtime API (start, supersede,
submit with stable callback ids, release, renew, park, let a lease run out), a worker's side
(the gate delivering, erroring, refusing, or converting an oversized result), the reaper, and
data loss (FLUSHALL; SIGKILL with or without the AOF tail), against a real redis-server; after
every step the whole of Redis is checked: no callback in a foreign inbox, entry 1 the prompt,
no callback with two verdicts. Settling (a rule, and at teardown) runs the reaper past every
deadline + grace: then every callback submitted since the last data loss has exactly one.

Submits go through ``Run.submit`` and a real Celery app whose broker is a second redis-server
of the test's own on a queue no worker reads: FLUSHALL of the data server would otherwise
wipe kombu's bindings under the producer. Examples are derandomized: the same sequences every
run (no flake from a new seed; the invariants hold whatever the timing, so they never wait
on luck), and no example database to grow.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from typing import Any, ClassVar

from celery import Celery
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from leasegate.broker import Client, Envelope, Reaper, Settings, Verdict
from leasegate.ownership import LeaseLost, connect
from leasegate.testing.redis_server import RedisServer
from leasegate.workers.tasks.verdicts import storable
from tests.conftest import SECRET
from tests.support.helpers import wait_until
from tests.support.promise_model import (
    CallbackKey,
    ModelCallback,
    ModelRun,
    RecordingRun,
    inboxes,
    letters,
    lose_aof_tail,
    submitted_ms,
)

TOOL = "image_generate"
SESSIONS = ("cron:a", "cron:b")
RUN_IDS = (None, "r0", "r1", "r0")            # generated, and caller-chosen ones reused
CALLBACK_IDS = (None, "call_0", "call_1")      # stable tool-call ids, reused in every run
DEADLINES = (0.05, 0.5, 1.0)
SHORT = 0.25                                   # a lease (or park) that runs out in the test
GRACE = 0.05                                   # the reaper's grace past a deadline
# rules pick by index, and do nothing when there is nothing to pick: what exists depends on
# timing (a lease that ran out, a reaper that came first), and hypothesis needs the same draws
# for the same choices
PICK = st.integers(min_value=0, max_value=63)
RARE = st.integers(min_value=0, max_value=3)  # data loss acts on 3 only: runs get to live
HOW = st.sampled_from(("result", "error", "oversized", "refused"))
LIMITS = Settings(max_result_bytes=2048)       # so an oversized result is cheap to make

MODEL = settings(max_examples=50, stateful_step_count=40, deadline=None,
                 database=None, suppress_health_check=list(HealthCheck))


class PromiseModel(RuleBasedStateMachine):
    binary: ClassVar[str]
    broker: ClassVar[Celery]
    queue: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.server = RedisServer(self.binary, aof=True).start()
        self.client = Client(connect(self.server.url), "m", secret=SECRET, settings=LIMITS,
                             celery_app=self.broker)
        self.epoch = 0                      # data losses so far
        self.runs: list[ModelRun] = []
        self.prompts: dict[str, ModelRun] = {}
        self.signed: list[Envelope] = []
        self.callbacks: dict[CallbackKey, ModelCallback] = {}   # by submit time
        self.by_deadline: dict[CallbackKey, ModelCallback] = {}
        self.first: dict[CallbackKey, tuple[int, Verdict]] = {}  # the gate's first answer

    # -- the runtime ---------------------------------------------------------------------------

    @initialize()
    def first_runs(self) -> None:
        for sk in SESSIONS:  # something to submit to from the first step
            self.start_run(sk, None, short=False)

    @rule(sk=st.sampled_from(SESSIONS), run_id=st.sampled_from(RUN_IDS), short=st.booleans())
    def start_run(self, sk: str, run_id: str | None, short: bool) -> None:
        prompt = f"prompt-{len(self.prompts)}-{uuid.uuid4().hex[:8]}"
        try:
            lease = self.client.start_run(sk, prompt, ttl=SHORT if short else 30.0,
                                          run_id=run_id).lease
        except ValueError as exc:
            assert run_id is not None and "already used" in str(exc), exc
            return
        model = ModelRun(RecordingRun(self.client, lease, self.signed), prompt, self.epoch)
        for other in self.runs:  # supersede: no earlier run of the key may be delivered to
            if other.run.session_key == sk:
                other.ended_epoch = self.epoch
        self.runs.append(model)
        self.prompts[prompt] = model

    @rule(pick=PICK, callback_id=st.sampled_from(CALLBACK_IDS),
          deadline=st.sampled_from(DEADLINES))
    def submit(self, pick: int, callback_id: str | None, deadline: float) -> None:
        model = self.runs[pick % len(self.runs)]
        try:
            got = model.run.submit(TOOL, deadline=deadline, queue=self.queue,
                                   callback_id=callback_id, prompt="a fox")
        except LeaseLost:
            return
        except ValueError as exc:
            assert callback_id is not None and "already used" in str(exc), exc
            return
        env = self.signed[-1]
        assert env.callback_id == got and env.run_id == model.run.run_id
        callback = ModelCallback(env, model, self.epoch)
        self.callbacks[callback.by_submit] = callback
        self.by_deadline[callback.by_deadline] = callback

    @rule(pick=PICK, outcome=st.sampled_from(("completed", "failed")))
    def release(self, pick: int, outcome: Any) -> None:
        model = self.runs[pick % len(self.runs)]
        model.run.release(outcome)  # whatever state it returns, the run is over
        model.ended_epoch = self.epoch

    @rule(pick=PICK, park=st.booleans())
    def heartbeat(self, pick: int, park: bool) -> None:
        model = self.runs[pick % len(self.runs)]
        with contextlib.suppress(LeaseLost):  # it ran out, or was released or superseded
            model.run.park(SHORT) if park else model.run.renew()

    @rule(pick=PICK)
    def let_lease_run_out(self, pick: int) -> None:
        soon = self.client.server_time_ms() + 2000  # a tiny ttl or a short park, not 30 s
        short = [m for m in self.runs if m.run.lease.expires_at * 1000 <= soon]
        if not short:
            return
        expiry = round(short[pick % len(short)].run.lease.expires_at * 1000)
        wait_until(lambda: self.client.server_time_ms() > expiry, timeout=5.0,
                   message=f"server time past {expiry}")

    # -- a worker, and the reaper -------------------------------------------------------------

    @rule(pick=PICK, how=HOW)
    def deliver_again(self, pick: int, how: str) -> None:
        """A worker's retry, a redelivered task, or a task from before a data loss."""
        if self.callbacks:
            self.deliver(list(self.callbacks.values())[pick % len(self.callbacks)], how)

    @rule(pick=PICK, how=HOW)
    def deliver_first(self, pick: int, how: str) -> None:
        fresh = self.unanswered()
        if fresh:
            self.deliver(fresh[pick % len(fresh)], how)

    @rule(pick=PICK, how=HOW)
    def deliver_from_before_a_loss(self, pick: int, how: str) -> None:
        """A worker finishing a task Redis has forgotten: its run id may name a new run now."""
        stale = [c for c in self.callbacks.values() if c.epoch < self.epoch]
        if stale:
            self.deliver(stale[pick % len(stale)], how)

    def unanswered(self) -> list[ModelCallback]:
        return [c for c in self.owed() if c.by_submit not in self.first]

    def deliver(self, callback: ModelCallback, how: str) -> None:
        """What a worker does with a finished task: open the wire bytes submit sent, then
        deliver a result or an error, refuse it, or convert an oversized result first."""
        env = self.client.gate.open(callback.env.encode())
        before = self.client.server_time_ms()
        if how == "refused":
            verdict = self.client.gate.refuse(env, "deadline_too_long", "the model refuses")
        else:
            size = LIMITS.max_result_bytes * 2 if how == "oversized" else 16
            payload, kind = storable({"image": "x" * size}, LIMITS.max_result_bytes)
            if how == "error":
                payload, kind = {"error": "generator failed"}, "error"
            verdict = self.client.gate.deliver(env, payload, kind=kind)  # type: ignore[arg-type]
        first = self.first.get(callback.by_submit)
        if first and first[0] == self.epoch:  # nothing lost since: the same answer again
            assert verdict.repeat and verdict.delivered == first[1].delivered \
                and verdict.entry_id == first[1].entry_id, (verdict, first[1])
        elif not verdict.repeat:
            self.first[callback.by_submit] = (self.epoch, verdict)
        if verdict.delivered and not verdict.repeat:
            assert how != "refused", verdict
            assert callback.owner.ended_epoch != self.epoch, \
                f"delivered to a run known released or superseded: {verdict}"
            assert before <= env.deadline_at_ms, f"delivered after its deadline: {verdict}"

    @rule()
    def reap(self) -> None:
        Reaper.for_client(self.client).reap(GRACE)

    @rule(odds=RARE)
    def settle_now(self, odds: int) -> None:
        if odds == 3:  # waits out every deadline: now and then, and always at teardown
            self.settle()

    def settle(self) -> None:
        """Past every deadline + grace the reaper has run: every callback submitted since the
        last data loss has exactly one verdict, and none is pending any more."""
        owed = self.owed()
        if owed:
            last = max(c.env.deadline_at_ms for c in owed) + round(GRACE * 1000)
            wait_until(lambda: self.client.server_time_ms() > last, timeout=5.0,
                       message="every deadline + grace to pass")
        reaper = Reaper.for_client(self.client)
        while reaper.reap(GRACE):
            pass
        counts = self.verdicts()
        for c in owed:
            assert counts[c.by_submit] == 1, \
                f"callback {c.by_submit} has {counts[c.by_submit]} verdicts, not 1"
            assert c.env.callback_id not in c.owner.run.pending(), f"{c.by_submit} pending"

    def owed(self) -> list[ModelCallback]:
        """Callbacks that must end with exactly one verdict: submitted since the last data
        loss (for earlier ones, Redis may have lost the submit or the verdict itself)."""
        return [c for c in self.callbacks.values() if c.epoch == self.epoch]

    # -- data loss ------------------------------------------------------------------------------

    @rule(odds=RARE)
    def flushall(self, odds: int) -> None:
        if odds != 3:
            return
        self.client.redis.flushall()
        self.epoch += 1

    @rule(odds=RARE, lose=st.sampled_from((0, 0, 1, 200, 5000)))
    def crash(self, odds: int, lose: int) -> None:
        """SIGKILL; with ``lose``, the AOF's last bytes go too (a crash before the write)."""
        if odds != 3:
            return
        self.server.kill()
        if lose_aof_tail(self.server.directory, lose):
            self.epoch += 1
        self.server.start()

    # -- what must hold after every step --------------------------------------------------------

    def verdicts(self) -> Counter[CallbackKey]:
        """Verdicts per callback (its key by submit time), from every inbox and letter."""
        counts: Counter[CallbackKey] = Counter()
        for sk, run_id, entries in inboxes(self.client):
            for entry in entries[1:]:
                counts[(sk, run_id, entry.callback_id or "", submitted_ms(entry))] += 1
        for letter in letters(self.client):
            callback = self.by_deadline.get(letter.key)
            assert callback is not None, f"dead letter {letter} for no submitted callback"
            counts[callback.by_submit] += 1
        return counts

    @invariant()
    def inboxes_hold_their_prompt_and_only_their_own_callbacks(self) -> None:
        for sk, run_id, entries in inboxes(self.client):
            assert entries and entries[0].role == "user" and entries[0].kind == "prompt", \
                f"inbox of {run_id} ({sk}) does not start with its prompt: {entries[:1]}"
            owner = self.prompts.get(entries[0].payload)
            assert owner is not None and (owner.run.session_key, owner.run.run_id) == \
                (sk, run_id), f"inbox of {run_id} ({sk}) holds another run's prompt"
            assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
            for entry in entries[1:]:
                assert entry.role != "user", f"a second role=user entry in {run_id}: {entry}"
                callback = self.callbacks.get(
                    (sk, run_id, entry.callback_id or "", submitted_ms(entry)))
                assert callback is not None, f"inbox of {run_id} holds an unknown {entry}"
                assert callback.owner is owner, \
                    f"{entry} of run {callback.owner.run} is in {owner.run}'s inbox"
                assert entry.provenance["fence"] == owner.run.fence == callback.env.fence
                assert callback.env.incarnation == owner.run.lease.incarnation

    @invariant()
    def no_callback_has_two_verdicts(self) -> None:
        twice = {key: n for key, n in self.verdicts().items() if n > 1}
        assert not twice, f"callbacks with more than one verdict: {twice}"

    def teardown(self) -> None:
        try:
            self.settle()
        finally:
            self.client.redis.close()
            self.server.close()


def test_every_callback_ends_in_exactly_one_place(redis_binary: str) -> None:
    with RedisServer(redis_binary) as broker_server:
        app = Celery("promise-model", broker=broker_server.url, set_as_current=False)

        @seed(20261129)
        class Bound(PromiseModel):
            binary = redis_binary
            broker = app
            queue = f"model-{uuid.uuid4().hex[:8]}"

        run_state_machine_as_test(Bound, settings=MODEL)
