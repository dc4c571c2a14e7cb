"""The chaos drill's own record (benchmarks/chaos.py): every run's lifecycle and every callback
the driver made, on Redis server time, and what the workers' logs say about the tasks they
took; the check (benchmarks/chaos_check.py) judges the store against it."""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from .chaos_faults import SETTLED_AT, Loss, PoisonLog
from .common import KILL_MARK

# -- the driver's own record ------------------------------------------------------------------

@dataclass
class RunRecord:
    session_key: str
    run_id: str
    prompt: str
    fate: str
    fence: int = 0
    ttl_ms: int = 0
    created_ms: int | None = None
    exp_ms: int = 0                     # latest lease expiry known (an upper bound)
    released_before_ms: int | None = None   # release happened in (before, after]
    released_after_ms: int | None = None
    callbacks: list[str] = field(default_factory=list)
    max_exp_ms: int = 0                 # the longest expiry any answered call set
    touched_ms: list[int] = field(default_factory=list)  # server times of lease changes


@dataclass
class CallbackRecord:
    callback_id: str
    session_key: str
    run_id: str
    fence: int
    deadline_ms: int
    # submitted | refused (never sent) | uncertain (send failed) | unanswered (the submit
    # script's reply was lost: maybe pending, never sent)
    outcome: str = "pending"
    tool: str = "image_generate"
    began_ms: int | None = None     # the submit call ran within (began, ended], server time
    ended_ms: int | None = None


class Record:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[tuple[str, str], RunRecord] = {}
        self.callbacks: dict[str, CallbackRecord] = {}
        self.events: Counter[str] = Counter()
        self.poison = PoisonLog()
        self.loss: Loss | None = None
        # task ids a SIGKILLed worker had taken: their verdict may come only from the reaper
        self.lost_with_worker: set[str] = set()
        self.taken_ever: set[str] = set()  # task ids any worker received or discarded
        self.kills_ms: list[int] = []      # server time of each worker or Redis SIGKILL
        self.received_ms: dict[str, list[int]] = {}  # task id -> when a worker took it
        self.amqp = False  # RabbitMQ is the broker: no pop-then-record loss to excuse
        self.ack_outlived_verdict: set[str] = set()  # RabbitMQ: settled as the AOF tail was cut

    def count(self, event: str, n: int = 1) -> None:
        with self.lock:
            self.events[event] += n



TAKEN = re.compile(r"Task [\w.]+\[(?P<received>[0-9a-f]{32})\] received"
                   r"|Discarding revoked task: [\w.]+\[(?P<revoked>[0-9a-f]{32})\]")
FINISHED = re.compile(r"Task [\w.]+\[(?P<task>[0-9a-f]{32})\] (?:succeeded|raised|retry)"
                      r"|revoked callback (?P<callback>[0-9a-f]{32}):")


RECEIVED_AT = re.compile(r"^\[(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/MainProcess\] "
                         r"Task [\w.]+\[(?P<task>[0-9a-f]{32})\] received", re.M)


def received_times(logs: list[str]) -> dict[str, list[int]]:
    """When each task was taken off the queue, from the workers' log lines (this machine's
    clock, the one Redis reads too), in ms since the epoch."""
    times: dict[str, list[int]] = {}
    for log in logs:
        for m in RECEIVED_AT.finditer(log):
            at = datetime.strptime(m["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            times.setdefault(m["task"], []).append(round(at * 1000))
    return times


def lost_with_worker(logs: list[str]) -> set[str]:
    """The task ids a SIGKILLed worker incarnation had taken (received, or acked as revoked)
    and not finished: each incarnation's log that ends in the driver's kill mark."""
    lost: set[str] = set()
    for log in logs:
        for killed in log.split(KILL_MARK)[:-1]:
            taken = {m["received"] or m["revoked"] for m in TAKEN.finditer(killed)}
            lost |= taken - {m["task"] or m["callback"] for m in FINISHED.finditer(killed)}
    return lost


def summarize_log(log: str) -> dict[str, int]:
    return {name: log.count(text) for name, text in (
        ("delivered", "delivered result callback"), ("delivered_error", "delivered error"),
        ("quarantined", "quarantined callback"),
        ("skipped", "skipped leasegate.image_generate"), ("worker_lost", "WorkerLostError"),
        ("time_limits", "Hard time limit"),
        ("broker_lost", "Connection to broker lost"), ("retry", "Retry in"),
        ("internal_verdicts", "failed outside its work"), ("thread_died", "Exception in thread"),
        ("errors", "ERROR/"), ("criticals", "CRITICAL/"))}


def writes_in_window(record: Record) -> int:
    """The driver's own writes the loss covers, in flight between the surviving mark and the
    kill (starts, renews and parks, releases, submits): what it could have erased of them."""
    loss = record.loss
    if loss is None:
        return 0

    def inside(began: int | None, ended: int | None) -> bool:  # in flight in [mark, kill)
        return began is not None and ended is not None and ended >= loss.mark_ms \
            and began < loss.killed_ms

    found = 0
    for rec in record.runs.values():
        if not loss.covers(rec.session_key):
            continue
        found += sum(inside(t, t) for t in (rec.created_ms, *rec.touched_ms))
        found += inside(rec.released_before_ms, rec.released_after_ms)
    return found + sum(inside(c.began_ms, c.ended_ms) for c in record.callbacks.values()
                       if loss.covers(c.session_key))


def verdicts_in_window(record: Record, logs: list[str]) -> int:
    """The workers' verdicts on the lost shards logged inside the loss window, before the
    kill (a task's "succeeded"/"raised" line follows its verdict)."""
    loss = record.loss
    if loss is None:
        return 0
    found = 0
    for log in logs:
        for match in SETTLED_AT.finditer(log):
            at_ms = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000
            callback = record.callbacks.get(match["task"])
            found += (callback is not None and loss.covers(callback.session_key)
                      and loss.mark_ms <= at_ms < loss.killed_ms)
    return found
