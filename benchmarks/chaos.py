"""``make chaos``: many isolated runs against 3 real worker processes while workers are
SIGKILLed and Redis is restarted; then an independent check of where every callback ended.

    python -m benchmarks.chaos --runs 600 --seconds 300 [--redis-down 2] [--self-test]
        [--broker rabbitmq] [--redis cluster]

Runs (session keys drawn from a small pool of cron jobs, so runs of one job overlap) each
submit 1-3 image_generate callbacks and then finish, fail, park, get superseded, or die (the
runtime stops renewing: the lease expires; that is what a SIGKILLed runtime leaves behind).
Meanwhile a fault thread SIGKILLs a prefork child (Celery requeues its task at once) or a
whole worker, main process and children (its unacknowledged messages come back after the
visibility timeout), and restarts it; Redis (AOF, ``appendfsync always``) is SIGKILLed and
restarted once, half way, while runs release with ``cancel_pending`` (revocations in the
outage), and again at three quarters after the end of its AOF is cut (acknowledged writes
lost). Some callbacks use the drill's own tools: ``hard_limit`` (killed by a hard time limit:
only the reaper's ``no_verdict`` can answer; it may also answer for a task a SIGKILLed
worker had taken, as its log shows) and ``oversized`` (a result over the limit:
``result_too_large``); poison is pushed onto the queue. See benchmarks/chaos_faults.py for
those faults and what the checker accepts after the data loss.

``--redis cluster`` (with ``--broker rabbitmq``: kombu has no Redis Cluster transport): the
store is a local Redis Cluster (3 primaries + 3 replicas), and the Redis fault, half way, is
the primary of some sessions' shards SIGKILLed and its replica promoted; what asynchronous
replication may have lost is bounded by a mark in the victim's slot and excused on its shards
only (benchmarks/chaos_cluster.py). No AOF cut there.

The driver keeps its own record: every run (session key, run id, fence, prompt, and the server
time of each lifecycle change: created, lease expiry after each renew/park, release, the next
run of its session key) and every callback (its envelope is recorded before it is submitted).
After the runs, it waits until every submitted callback has a verdict, then walks every inbox
stream and every dead letter and checks (benchmarks/chaos_check.py):

- every inbox entry 1 is its run's prompt, and no other entry is role=user;
- no callback is in an inbox other than its owner's, with its owner's fence;
- no callback reached an owner that was not live or parked when it was written (the entry's
  server time ``at`` against the recorded lifecycle: at or after creation, before the lease
  expiry, not after the release returned, not after the next run of the session key started,
  not after the callback's deadline);
- every submitted callback is in exactly one place (its owner's inbox once, or the dead
  letters once, skipped work included); a callback whose submit failed is in at most one.

Bounds are honest: a release is only known to have happened between the server times read
before and after the call; a renew whose reply was lost may have extended the lease up to
(server time after the failure + ttl). Entries inside such a window are counted as
``ambiguous`` and accepted.

Prints the counts and a last line ``violations=N``; exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

from leasegate.broker import Client, Envelope, Run
from leasegate.ownership import SHARDS, Lease, LeaseLost, RegistryUnavailable
from leasegate.testing.redis_cluster import RedisClusterNodes
from leasegate.testing.redis_server import RedisServer

from .chaos_check import SELF_TESTS, Findings, check, self_test, verdicts_missing
from .chaos_faults import TOOLS, TRANSIENT, Faults, retrying, settled_in_lost_window
from .chaos_record import (
    TAKEN,
    CallbackRecord,
    Record,
    RunRecord,
    lost_with_worker,
    received_times,
    summarize_log,
    verdicts_in_window,
    writes_in_window,
)
from .common import SECRET, Worker, wait_until
from .rabbitmq import fresh_vhost

T = TypeVar("T")
WORKERS = 3
LIVE_WORKERS: list[Worker] = []  # for the watchdog
LIVE_SERVERS: list[RedisServer] = []
FATES = (("finish", 35), ("fail", 15), ("park", 20), ("supersede", 15), ("die", 15))
WORKER_ENV = {
    "LEASEGATE_GENERATOR_LATENCY": "0.3",
    "LEASEGATE_CHECK_INTERVAL": "0.2",
    "LEASEGATE_MAX_DEADLINE": "5",
    "LEASEGATE_VISIBILITY_TIMEOUT": "8",
    # the reaper, small: a hard-time-limited task's no_verdict comes before the drill settles;
    # the grace still outlasts a redelivery after a worker kill (visibility 8 s + 1 s sweep)
    "LEASEGATE_VERDICT_GRACE": "20",
    "LEASEGATE_MAINTENANCE_INTERVAL": "1",
}
HARD_LIMIT_SETTLE = 45.0  # no hard_limit submit later than this before the budget ends
EXTRA_TOOLS = (("hard_limit", 0.08), ("oversized", 0.06))  # share of submits each



class RecordingRun(Run):
    """A Run that records each envelope before its task is sent."""

    def __init__(self, client: Client, lease: Lease, record: Record) -> None:
        super().__init__(client, lease)
        self.record = record
        self.last: str | None = None

    def _sign(self, *args: Any, **kwargs: Any) -> Envelope:
        # every envelope, Run.envelope's and Run.submit's, is signed here
        env = super()._sign(*args, **kwargs)
        with self.record.lock:
            self.record.callbacks[env.callback_id] = CallbackRecord(
                env.callback_id, env.session_key, env.run_id, env.fence, env.deadline_at_ms)
        self.last = env.callback_id
        return env


# -- calls that ride through a Redis restart -------------------------------------------------

class Driver:
    def __init__(self, client: Client, record: Record, rng: random.Random, jobs: int,
                 hard_limit_until: float = 0.0) -> None:
        self.client = client
        self.record = record
        self.rng = rng
        self.jobs = [f"cron:job-{i}" for i in range(jobs)]
        self.hard_limit_until = hard_limit_until  # monotonic: later ones could not settle

    def now_ms(self) -> int:
        return retrying(self.client.server_time_ms, self.record)

    # lifecycle, each change logged with server time ---------------------------------------

    def start(self, fate: str, session_key: str | None = None,
              ttl: float | None = None) -> tuple[RecordingRun, RunRecord]:
        session_key = session_key or self.rng.choice(self.jobs)
        run_id = uuid.uuid4().hex
        prompt = f"chaos prompt {run_id[:12]}"
        ttl = ttl or self.rng.uniform(1.5, 3.0)
        rec = RunRecord(session_key, run_id, prompt, fate, ttl_ms=round(ttl * 1000))
        with self.record.lock:
            self.record.runs[(session_key, run_id)] = rec
        while True:
            try:
                run = self.client.start_run(session_key, prompt=prompt, ttl=ttl, run_id=run_id)
                lease = run.lease
                created = round(lease.expires_at * 1000) - rec.ttl_ms
                break
            except TRANSIENT:
                self.record.count("driver_retries")
                time.sleep(0.05)
            except ValueError:  # created by an attempt whose reply was lost
                status = retrying(lambda: self.client.registry.status(session_key, run_id),
                                  self.record)
                lease = Lease(session_key, run_id, status.fence or 0,
                              status.expires_at or 0.0, ttl, status.state,
                              incarnation=status.incarnation or "")
                created = round((status.created_at or 0) * 1000)
                self.record.count("start_reply_lost")
                break
        rec.fence, rec.created_ms = lease.fence, created
        rec.exp_ms = rec.max_exp_ms = round(lease.expires_at * 1000)
        return RecordingRun(self.client, lease, self.record), rec

    def renew(self, run: RecordingRun, rec: RunRecord, park: float | None = None) -> bool:
        """Renew (or park for ``park`` s); False once the lease is lost."""
        duration = rec.ttl_ms if park is None else round(park * 1000)
        try:
            lease = run.renew() if park is None else run.park(until=park)
            # the latest call that answered sets the expiry exactly (it may also shorten it)
            rec.exp_ms = round(lease.expires_at * 1000)
            rec.max_exp_ms = max(rec.max_exp_ms, rec.exp_ms)
            rec.touched_ms.append(rec.exp_ms - duration)
            return True
        except LeaseLost:
            return False
        except TRANSIENT:
            # it may have run before the reply was lost: the lease may reach this far
            rec.exp_ms = max(rec.exp_ms, self.now_ms() + duration)
            rec.max_exp_ms = max(rec.max_exp_ms, rec.exp_ms)
            rec.touched_ms.append(rec.exp_ms - duration)
            self.record.count("renew_reply_lost")
            return True

    def release(self, run: RecordingRun, rec: RunRecord, outcome: str,
                cancel: bool = False) -> None:
        before = self.now_ms()
        retrying(lambda: run.release(outcome, cancel_pending=cancel),  # type: ignore[arg-type]
                 self.record)
        rec.released_before_ms, rec.released_after_ms = before, self.now_ms()

    def pick_tool(self) -> str:
        roll = self.rng.random()
        for tool, share in EXTRA_TOOLS:
            if roll < share and (tool != "hard_limit" or time.monotonic() < self.hard_limit_until):
                return tool
            roll -= share
        return "image_generate"

    def submit(self, run: RecordingRun, rec: RunRecord, tool: str | None = None) -> None:
        run.last = None
        outcome = "submitted"
        tool = tool or self.pick_tool()
        # hard_limit: the deadline outlasts the 1 s time limit, so the kill comes first
        deadline = 2.5 if tool == "hard_limit" else self.rng.uniform(3.0, 5.0)
        began = self.now_ms()
        # the driver's own id: a submit whose reply is lost signs nothing, yet may be pending
        callback_id = uuid.uuid4().hex
        try:
            run.submit(tool, prompt=f"image for {rec.run_id[:8]}", size="256x256",
                       deadline=deadline, callback_id=callback_id)
        except LeaseLost:
            outcome = "refused"  # the submit script refused: nothing pending, nothing sent
        except RegistryUnavailable:
            outcome = "unanswered"  # the script may have run: pending, but nothing sent
        except Exception:
            outcome = "uncertain"  # the send failed: the broker may still have the message
        ended = self.now_ms()
        if run.last is None and outcome == "unanswered":
            with self.record.lock:  # only the reaper can end it: its deadline is a bound
                self.record.callbacks[callback_id] = CallbackRecord(
                    callback_id, rec.session_key, rec.run_id, rec.fence,
                    ended + round(deadline * 1000))
            run.last = callback_id
        if run.last is not None:  # else no envelope was made: nothing can arrive
            with self.record.lock:
                callback = self.record.callbacks[run.last]
                callback.outcome, callback.tool = outcome, tool
                callback.began_ms, callback.ended_ms = began, ended
            rec.callbacks.append(run.last)
            self.record.count(f"tool_{tool}")
        self.record.count(f"submit_{outcome}")

    # the fates -----------------------------------------------------------------------------

    def live_until(self, run: RecordingRun, rec: RunRecord, seconds: float,
                   wanted: set[str] | None = None) -> bool:
        """Heartbeat for ``seconds`` (or until every wanted callback is in the inbox)."""
        deadline = time.monotonic() + seconds
        seen = 1
        while time.monotonic() < deadline:
            if wanted is not None and not wanted:
                return True
            step = min(rec.ttl_ms / 3000, deadline - time.monotonic())
            try:
                entries = run.inbox.read(after=seen, block=max(step, 0.01))
            except TRANSIENT:
                entries = []
                time.sleep(0.05)
            for entry in entries:
                seen = max(seen, entry.seq)
                if wanted is not None:
                    wanted.discard(entry.callback_id or "")
            if not self.renew(run, rec):
                return False
        return True

    def awaited(self, rec: RunRecord) -> set[str]:
        """The callbacks a run can wait for (a hard-time-limited task never delivers)."""
        return {cb for cb in rec.callbacks if self.record.callbacks[cb].tool != "hard_limit"}

    def play(self, fate: str) -> None:
        run, rec = self.start(fate)
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            self.submit(run, rec)
        if fate == "finish":
            if self.live_until(run, rec, 12.0, self.awaited(rec)):
                self.release(run, rec, "completed")
        elif fate == "fail":
            if self.live_until(run, rec, self.rng.uniform(0.0, 0.6)):
                self.release(run, rec, "failed")
        elif fate == "park":
            if self.live_until(run, rec, self.rng.uniform(0.0, 0.3)):
                self.park(run, rec)
        elif fate == "supersede":
            self.live_until(run, rec, self.rng.uniform(0.0, 0.6))
            successor, srec = self.start("finish", session_key=rec.session_key)
            if self.live_until(successor, srec, self.rng.uniform(0.2, 1.0)):
                self.release(successor, srec, "completed")
        else:  # die: no release, no more heartbeats; the lease runs out
            self.live_until(run, rec, self.rng.uniform(0.0, 0.8))

    def park(self, run: RecordingRun, rec: RunRecord) -> None:
        until = self.rng.uniform(2.0, 6.0)
        if not self.renew(run, rec, park=until):
            return
        waiting = self.awaited(rec)
        deadline = time.monotonic() + until
        while waiting and time.monotonic() < deadline:
            try:
                got = run.wait_resume(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            except TRANSIENT:
                time.sleep(0.05)
                continue
            if got:
                waiting.discard(got)
        if self.rng.random() < 0.7 and self.renew(run, rec):  # resume, then finish
            self.release(run, rec, "completed")
        # else: it stays parked until its park runs out


# -- the whole drill -------------------------------------------------------------------------

def drill(runs: int, seconds: float, seed: int, actors: int, jobs: int,
          fault_interval: float, redis_down: float, workdir: Path,
          self_testing: bool = False, broker: str | None = None,
          cluster: bool = False) -> tuple[Findings, Record, dict[str, Any]]:
    rng = random.Random(seed)
    started = time.monotonic()
    record = Record()
    namespace = f"chaos{uuid.uuid4().hex[:6]}"
    broker_env = {"LEASEGATE_BROKER_URL": broker} if broker else {}
    if broker and broker.startswith(("amqp", "pyamqp")):  # poison is published to RabbitMQ
        record.amqp, record.poison.amqp_url = True, broker
    info: dict[str, Any] = {"namespace": namespace, "seed": seed,
                            "broker": "rabbitmq" if record.amqp else "redis",
                            "redis": "cluster" if cluster else "standalone"}
    store = RedisClusterNodes() if cluster else RedisServer(aof=True)
    with store:
        # a cluster is reached through one node's URL; that node is never the one killed
        url = store.url
        workers = [Worker("benchmarks.apps:chaos", url, namespace, workdir,
                          name=f"chaos{i}", queues="media", concurrency=1, loglevel="INFO",
                          **WORKER_ENV, **broker_env) for i in range(WORKERS)]
        LIVE_WORKERS[:] = workers
        LIVE_SERVERS[:] = store.nodes if isinstance(store, RedisClusterNodes) else [store]
        client = Client.from_url(url, namespace, secret=SECRET.encode(), tasks=TOOLS,
                                 broker_url=broker)
        try:
            for w in workers:
                w.start()
            for w in workers:
                w.wait_log(" ready.", timeout=60)
            info["startup_s"] = round(time.monotonic() - started, 1)
            budget = started + seconds
            runs_started = [0]
            lock = threading.Lock()
            hard_limit_until = budget - HARD_LIMIT_SETTLE
            faults = Faults(workers, store,
                            Driver(client, record, random.Random(rng.random()), jobs),
                            fault_interval, lambda: runs_started[0] >= runs // 2,
                            lambda: runs_started[0] >= runs * 3 // 4, redis_down)
            faults.start()
            errors: list[BaseException] = []

            def actor(index: int) -> None:
                driver = Driver(client, record, random.Random(f"{seed}-{index}"), jobs,
                                hard_limit_until)
                try:
                    while time.monotonic() < budget - 25:  # leave time to settle and check
                        with lock:
                            if runs_started[0] >= runs:
                                return
                            runs_started[0] += 1
                        fate = driver.rng.choices([f for f, _ in FATES],
                                                  [w for _, w in FATES])[0]
                        record.count(f"fate_{fate}")
                        driver.play(fate)
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=actor, args=(i,), name=f"chaos-actor-{i}")
                       for i in range(actors)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            faults.stop.set()
            faults.join()
            if faults.error is not None:
                errors.append(faults.error)
            if not faults.redis_restarted:
                faults.restart_redis()  # a short drill still gets its Redis restarts
            faults.push_poison()
            if record.loss is None and not cluster:  # a cluster's loss is the failover's
                faults.restart_losing_tail()
            info["runs_phase_s"] = round(time.monotonic() - started, 1)
            for w in workers:  # every worker alive again for the settling phase
                if not w.alive():
                    w.start()
            missing: list[str] = []

            def settled() -> bool:
                nonlocal missing
                try:
                    missing = verdicts_missing(client, record)
                except TRANSIENT:
                    return False
                return not missing

            with contextlib.suppress(RuntimeError):  # what is missing is reported below
                wait_until(settled, max(5.0, budget - time.monotonic() - 15), "every verdict",
                           interval=0.2)
            info["unsettled"] = missing[:20]
            info["settled_s"] = round(time.monotonic() - started, 1)
            logs = [w.log() for w in workers]
            record.lost_with_worker = lost_with_worker(logs)
            if record.amqp and record.loss is not None:
                loss = record.loss
                record.ack_outlived_verdict = {  # only tasks of sessions the loss covers
                    task for task in settled_in_lost_window(loss, logs)
                    if task not in record.callbacks
                    or loss.covers(record.callbacks[task].session_key)}
            record.taken_ever = {m["received"] or m["revoked"]
                                 for log in logs for m in TAKEN.finditer(log)}
            record.received_ms = received_times(logs)
            info["window_verdicts"] = verdicts_in_window(record, logs)
            findings = check(client, record)
            if self_testing:
                missed = self_test(client, record)
                found = SELF_TESTS - len(missed)
                info["self_test"] = f"{found}/{SELF_TESTS} corruptions detected" + (
                    f", missed: {', '.join(missed)}" if missed else "")
                for name in missed:
                    findings.bad(f"self-test: the check missed a planted {name}")
            for exc in errors:
                findings.bad(f"driver error: {exc!r}")
            findings.counts["unsettled"] += len(missing)
            info["worker_logs"] = {w.name: summarize_log(w.log()) for w in workers}
        finally:
            for w in workers:
                w.stop(timeout=10)
            client.redis.close()
    info["seconds"] = round(time.monotonic() - started, 1)
    return findings, record, info



def report(findings: Findings, record: Record, info: dict[str, Any]) -> str:
    ev, counts = record.events, findings.counts
    quarantined = {k.split(":", 1)[1]: v for k, v in sorted(counts.items())
                   if k.startswith("quarantined:")}
    lines = [
        f"runs={len(record.runs)} (fates: " + ", ".join(
            f"{f}={ev[f'fate_{f}']}" for f, _ in (*FATES, ("revoke", 0))) + ")",
        f"callbacks={len(record.callbacks)} submitted={counts['callbacks_submitted']} "
        f"refused={counts['callbacks_refused']} uncertain={counts['callbacks_uncertain']} "
        f"unanswered={counts['callbacks_unanswered']}",
        f"kills: children={ev['kill_child']} workers={ev['kill_worker']} "
        f"primaries={ev['kill_primary']}; restarts: "
        f"workers={ev['restart_worker']} redis={ev['restart_redis']}",
        f"delivered={counts['delivered']} quarantined={sum(quarantined.values())} "
        f"{json.dumps(quarantined, sort_keys=True)} skipped_before_start="
        f"{counts['quarantined_skipped_before_start']}",
        f"inboxes={counts['inboxes']} ambiguous_release_window="
        f"{counts['ambiguous_release_window']} unsettled={counts['unsettled']} "
        f"driver_retries={ev['driver_retries']} renew_reply_lost={ev['renew_reply_lost']} "
        f"start_reply_lost={ev['start_reply_lost']}",
        f"time: startup {info.get('startup_s')} s, runs until {info.get('runs_phase_s')} s, "
        f"settled at {info.get('settled_s')} s, total {info.get('seconds')} s "
        f"(seed {info['seed']}, broker {info['broker']}, redis {info['redis']})"
        + (f"; self-test: {info['self_test']}" if "self_test" in info else ""),
        f"worker logs: {json.dumps(info.get('worker_logs', {}), sort_keys=True)}",
        *fault_lines(findings, record, info),
    ]
    for violation in findings.violations[:30]:
        lines.append(f"VIOLATION {violation}")
    if len(findings.violations) > 30:
        lines.append(f"... and {len(findings.violations) - 30} more")
    lines.append(f"violations={len(findings.violations)}")
    return "\n".join(lines)


def fault_lines(findings: Findings, record: Record, info: dict[str, Any]) -> list[str]:
    """The later faults: a detail line, then the named counts."""
    ev, counts, loss = record.events, findings.counts, record.loss
    hits = sum(log.get("time_limits", 0) for log in info.get("worker_logs", {}).values())
    window = "no loss" if loss is None else (
        f"lost window {loss.killed_ms - loss.mark_ms} ms before the kill, "
        f"{loss.cut_bytes} bytes cut, mark survived={loss.mark_survived}"
        if loss.shards is None else
        f"primary killed: lost window {loss.killed_ms - loss.mark_ms} ms before the kill on "
        f"{len(loss.shards)} of {SHARDS} shards, {loss.marks_lost} marks lost (acknowledged, "
        f"not replicated), mark survived={loss.mark_survived}, "
        f"promoted {(loss.promoted_ms or loss.restarted_ms) - loss.killed_ms} ms after the "
        "kill")
    return [
        f"fault details: hard_limit callbacks={ev['tool_hard_limit']} (no_verdict letters "
        f"{counts['no_verdict_hard_limit']}); oversized delivered as result_too_large="
        f"{counts['oversized_delivered_as_error']}; malformed letters="
        f"{counts['quarantined:malformed']} for {len(record.poison.pushed)} distinct poison "
        f"items; revoked just before the restart={ev['revoked_before_restart']}; {window}; "
        f"exempt without a verdict={counts['exempt_without_verdict']}, no_verdict after loss="
        f"{counts['no_verdict_after_loss']}, no_verdict after a worker kill="
        f"{counts['no_verdict_lost_worker']}, no_verdict for a message lost in the transport="
        f"{counts['no_verdict_lost_in_transport']}, no_verdict where RabbitMQ kept the ack of "
        f"a verdict the data loss erased={counts['no_verdict_ack_outlived_verdict']}, "
        f"no_verdict after a failed submit={counts['no_verdict_submit_failed']}, "
        f"bounds relaxed={counts['bounds_relaxed_after_loss']}",
        f"faults: time_limits={hits} oversized={ev['tool_oversized']} "
        f"poison={ev['poison_pushed']} revoked_in_outage={ev['revoked_in_outage']} "
        f"aof_tail_lost={ev['aof_tail_lost']} primary_killed={ev['kill_primary']} "
        f"window_writes={writes_in_window(record)} "
        f"window_verdicts={info.get('window_verdicts', 0)} "
        f"exempt_after_loss={counts['exempt_after_loss']}",
    ]


def watchdog(seconds: float) -> None:
    """The drill stops by itself: past its bound (and a margin), kill everything and exit."""
    if threading.Event().wait(seconds):
        return
    print(f"chaos: still running after {seconds:.0f} s: killing the workers and exiting",
          file=sys.stderr, flush=True)
    for worker in LIVE_WORKERS:
        with contextlib.suppress(Exception):
            worker.kill()
    for server in LIVE_SERVERS:
        with contextlib.suppress(Exception):
            server.kill()
    print("violations=unknown (watchdog)", flush=True)
    os._exit(3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=300.0,
                        help="hard bound on the whole drill, start to check")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--actors", type=int, default=6, help="runs alive at once")
    parser.add_argument("--jobs", type=int, default=50, help="session keys (cron jobs)")
    parser.add_argument("--fault-interval", type=float, default=3.0,
                        help="mean seconds between worker kills")
    parser.add_argument("--redis-down", type=float, default=2.0,
                        help="seconds Redis stays down when it is restarted")
    parser.add_argument("--self-test", action="store_true",
                        help="afterwards, plant six kinds of violation and confirm the check "
                             "reports each")
    parser.add_argument("--redis", choices=("standalone", "cluster"), default="standalone",
                        help="the store: one Redis (AOF; SIGKILLed and restarted), or a local "
                             "Redis Cluster of 3 primaries + 3 replicas (a primary SIGKILLed "
                             "mid-drill, its replica promoted); cluster needs --broker rabbitmq")
    parser.add_argument("--broker", default=None,
                        help="the Celery broker (LEASEGATE_BROKER_URL): an amqp:// URL of a "
                             "vhost whose queues start empty, or 'rabbitmq' for a fresh vhost "
                             "on the local RabbitMQ (rabbitmqctl); default: the drill's Redis")
    parser.add_argument("--json", type=Path, default=None, help="also write the counts here")
    parser.add_argument("--keep-logs", type=Path, default=None,
                        help="copy the worker logs here (they are kept anyway on a violation)")
    args = parser.parse_args(argv)
    if args.seconds < 45:
        parser.error("--seconds must be >= 45 (workers start, runs, settling, the check)")
    if args.redis == "cluster" and not (args.broker == "rabbitmq" or str(
            args.broker).startswith(("amqp://", "pyamqp://"))):
        parser.error(f"--redis cluster needs --broker rabbitmq (or an amqp:// URL), not "
                     f"{args.broker or 'the default (Redis)'}: kombu has no Redis Cluster "
                     "transport, so the Celery broker cannot be the cluster")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    threading.Thread(target=watchdog, args=(args.seconds + 30,), daemon=True).start()
    logging.getLogger("leasegate.quarantine").setLevel(logging.ERROR)
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="leasegate-chaos-"))
        broker = stack.enter_context(fresh_vhost()) if args.broker == "rabbitmq" \
            else args.broker
        findings, record, info = drill(args.runs, args.seconds, seed, args.actors, args.jobs,
                                       args.fault_interval, args.redis_down, Path(workdir),
                                       args.self_test, broker, args.redis == "cluster")
        if findings.violations or args.keep_logs:  # keep the worker logs to be read
            keep = args.keep_logs or Path(tempfile.mkdtemp(prefix="leasegate-chaos-logs-"))
            keep.mkdir(parents=True, exist_ok=True)
            for log in Path(workdir).glob("*.log"):
                (keep / log.name).write_bytes(log.read_bytes())
            # the driver's own record too: a violation is judged against it
            (keep / "record.json").write_text(json.dumps(
                {"runs": [dataclasses.asdict(rec) for rec in record.runs.values()],
                 "callbacks": {cb: dataclasses.asdict(c) for cb, c in record.callbacks.items()},
                 "violations": findings.violations}, indent=1, default=str))
            info["logs"] = str(keep)
    text = report(findings, record, info)
    if "logs" in info:
        text = text.replace("\nviolations=", f"\nworker logs kept in {info['logs']}\nviolations=")
    print(text, flush=True)
    if args.json:
        args.json.write_text(json.dumps({"events": record.events, "counts": findings.counts,
                                         "violations": findings.violations, **info},
                                        indent=2, default=str))
    return 1 if findings.violations else 0


if __name__ == "__main__":
    sys.exit(main())
