"""Sentinel failover drill: how many acknowledged verdicts a failover loses, with and without
LEASEGATE_MIN_REPLICAS=1, and that none is ever misdelivered.

A primary, a replica and three sentinels (real processes). Runs start and get callbacks; then
a window opens in which the replica hears nothing (SIGSTOPped, its link killed on the
primary: what replication lag looks like, made long enough to see), runs start and verdicts
are written; the primary is SIGKILLed mid-way, the sentinels promote the replica, the old
primary comes back as its replica, and the same clients carry on through the sentinels.

What a worker does is done here in-process: a gate call that returns is an acknowledged
verdict (the worker acks its message); one that raises RegistryUnavailable (NotDurable
included) is retried until it returns (the message is redelivered). Then:
  lost          acknowledged verdicts the new primary does not have
  misdelivered  inbox entries of a run that are not that very run's callbacks
  duplicated    callbacks with a verdict in more than one place

``python -m benchmarks.failover`` prints one JSON line per mode; ``make chaos`` runs it.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

from leasegate.broker import Client, Envelope, Run, Settings
from leasegate.ownership import RegistryUnavailable, connect
from leasegate.testing.redis_sentinel import SentinelGroup

SECRET = b"failover-secret-0123456789abcdef"
T = TypeVar("T")


@dataclass
class Counts:
    min_replicas: int
    acknowledged: int = 0     # gate calls that returned (a worker would ack)
    refused: int = 0          # gate calls that raised NotDurable / RegistryUnavailable first
    lost: int = 0
    misdelivered: int = 0
    duplicated: int = 0
    starts_refused: int = 0   # start_run calls that raised first (retried, same run id)
    runs_lost: int = 0        # started runs the new primary does not know
    unknown_run: int = 0      # callbacks of such runs, quarantined (never misdelivered)


def retried(call: Callable[[], T], patience: float = 60.0) -> tuple[T, int]:
    """``call()`` until it returns (a redelivered message); the result and the refusals."""
    deadline, refusals = time.monotonic() + patience, 0
    while True:
        try:
            return call(), refusals
        except RegistryUnavailable:
            refusals += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # pace of redelivery; the call decides


class Drill:
    def __init__(self, group: SentinelGroup, min_replicas: int, sessions: int) -> None:
        self.group = group
        self.namespace = f"fo{uuid.uuid4().hex[:8]}"
        settings = Settings(min_replicas=min_replicas, min_replicas_timeout_ms=100)
        self.client = Client(connect(group.url), self.namespace, secret=SECRET,
                             settings=settings)
        self.sessions = [f"agent:s{i}" for i in range(sessions)]
        self.counts = Counts(min_replicas)
        self.acked: dict[str, tuple[str, str]] = {}   # callback id -> (reason, entry id)
        self.owner: dict[str, tuple[str, str, str]] = {}  # callback -> sk, run id, incarnation
        self.unacked: list[Envelope] = []

    def envelope(self, run: Run) -> Envelope:
        env = run.envelope("image_generate")
        self.owner[env.callback_id] = (run.session_key, run.run_id, run.lease.incarnation)
        return env

    def deliver(self, env: Envelope, *, once: bool) -> None:
        try:
            verdict = self.client.gate.deliver(env, {"cb": env.callback_id})
        except RegistryUnavailable:
            self.counts.refused += 1
            if once:
                self.unacked.append(env)
                return
            verdict, refusals = retried(lambda: self.client.gate.deliver(env, {"cb": "again"}))
            self.counts.refused += refusals
        self.acked.setdefault(env.callback_id, (verdict.reason or "", verdict.entry_id))

    def run(self) -> Counts:
        # a loaded machine may miss even a healthy replica's WAIT: retried, as the same call
        first = [retried(functools.partial(self.client.start_run, sk, "before",
                                           run_id=f"a{i}"))[0]
                 for i, sk in enumerate(self.sessions)]
        for run in first:
            self.deliver(self.envelope(run), once=False)
        # the window: the replica hears nothing from here on
        self.group.pause_replica()
        self.group.primary.client().client_kill_filter(_type="replica")
        started: list[Run] = []
        pending: list[tuple[str, str]] = []
        for i, sk in enumerate(self.sessions):
            try:
                started.append(self.client.start_run(sk, "window", run_id=f"w{i}"))
            except RegistryUnavailable:
                self.counts.starts_refused += 1
                pending.append((sk, f"w{i}"))
        late = []
        for run in started:
            self.deliver(self.envelope(run), once=True)
            late.append(self.envelope(run))
        for run in first:  # superseded by now: quarantined
            self.deliver(self.envelope(run), once=True)
        old = self.group.primary_port()
        self.group.kill_primary()
        self.group.resume_replica()
        new = self.group.wait_failover(old)
        self.group.rejoin_old_primary(new)
        # redelivered messages, and runtimes retrying their start with the same run id
        for env in self.unacked:
            self.deliver(env, once=False)
        for sk, run_id in pending:
            run, _ = retried(functools.partial(self.client.start_run, sk, "window",
                                               run_id=run_id))
            self.deliver(self.envelope(run), once=False)
        self.restart_lost(started)
        for env in late:  # the lost runs' last callbacks arrive after all
            self.deliver(env, once=False)
        self.check()
        return self.counts

    def restart_lost(self, started: list[Run]) -> None:
        """Another runtime starts each lost run's id again: same id, maybe the same fence,
        a new incarnation. The lost run's late callbacks must not reach it."""
        other = Client(connect(self.group.url), self.namespace, secret=SECRET)
        for run in started:
            if other.registry.status(run.lease).fence is None:
                self.counts.runs_lost += 1
                other.start_run(run.session_key, "again", run_id=run.run_id)

    def check(self) -> None:
        redis = self.client.redis
        keys = self.client.keys
        for callback_id, (reason, entry_id) in self.acked.items():
            sk, run_id, _ = self.owner[callback_id]
            memo = redis.hgetall(keys.callback(sk, run_id, callback_id))
            if memo.get(b"entry", b"").decode() != entry_id:
                self.counts.lost += 1
            elif reason == "unknown_run":
                self.counts.unknown_run += 1
        places: dict[str, int] = {}
        for sk, run_id in self.client.registry.runs():
            status = self.client.registry.status(sk, run_id)
            run = self.client.attach(sk, run_id) if status.fence is not None else None
            for entry in run.inbox.entries() if run else []:
                if entry.callback_id is None:
                    continue
                places[entry.callback_id] = places.get(entry.callback_id, 0) + 1
                if self.owner.get(entry.callback_id) != (sk, run_id, status.incarnation):
                    self.counts.misdelivered += 1
        cursor: str | None = None
        while True:
            page = self.client.dead_letters.list(limit=200, cursor=cursor)
            for letter in page.letters:
                if letter.callback_id:
                    places[letter.callback_id] = places.get(letter.callback_id, 0) + 1
            if page.cursor is None:
                break
            cursor = page.cursor
        self.counts.duplicated = sum(1 for n in places.values() if n > 1)
        self.counts.acknowledged = len(self.acked)


def drill(min_replicas: int, sessions: int = 20) -> Counts:
    with SentinelGroup() as group:
        return Drill(group, min_replicas, sessions).run()


def wait_cost(calls: int = 500) -> dict[str, float]:
    """The gate's delivery with LEASEGATE_MIN_REPLICAS=1 against without, one connection,
    same group (loopback replica): the price of WAIT as a ratio of medians."""
    with SentinelGroup() as group:
        medians = {}
        for replicas in (0, 1):
            client = Client(connect(group.url), f"wc{uuid.uuid4().hex[:8]}", secret=SECRET,
                            settings=Settings(min_replicas=replicas))
            run = client.start_run("agent:cost", "x")
            envelopes = [run.envelope("image_generate") for _ in range(calls)]
            took = []
            for env in envelopes:
                started = time.perf_counter()
                client.gate.deliver(env, {"ok": 1})
                took.append(time.perf_counter() - started)
            medians[replicas] = sorted(took)[len(took) // 2]
    return {"deliver_wait_ratio": round(medians[1] / medians[0], 2),
            "deliver_median_us_plain": round(medians[0] * 1e6),
            "deliver_median_us_wait": round(medians[1] * 1e6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--cost", action="store_true", help="also measure what WAIT costs")
    args = parser.parse_args()
    logging.getLogger("leasegate.quarantine").setLevel(logging.ERROR)  # one line per letter
    violations = 0
    for min_replicas in (0, 1):
        counts = drill(min_replicas, args.sessions)
        print(json.dumps(asdict(counts)), flush=True)
        violations += counts.misdelivered + counts.duplicated + (counts.lost if min_replicas
                                                                  else 0)
    if args.cost:
        print(json.dumps(wait_cost()), flush=True)
    print(f"violations={violations}")
    raise SystemExit(1 if violations else 0)


if __name__ == "__main__":
    main()
