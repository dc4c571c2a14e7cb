"""The chaos drill at a small size: 3 real workers SIGKILLed at random and restarted, Redis
(AOF) SIGKILLed and restarted twice (runs released with cancel_pending while it is down; the
second time the end of its AOF is cut), ~150 runs that finish, fail, park, get superseded or
die, some of their tasks hitting a hard time limit or returning an oversized result, and
poison pushed onto the queue; then every callback must be in exactly one right place (see
benchmarks/chaos.py).

``make chaos`` runs the full size (hundreds of runs, bounded to 5 minutes).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.chaos, pytest.mark.faults, pytest.mark.e2e]

# Redis stays away for 2 s when it is restarted: owned tasks wait it out and lose nothing.
REDIS_DOWN = "2"


@pytest.mark.timeout(150)
def test_chaos_drill_has_no_violations() -> None:
    args = [sys.executable, "-m", "benchmarks.chaos", "--runs", "150", "--seconds", "75",
            "--fault-interval", "1.5", "--redis-down", REDIS_DOWN, "--self-test"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=140,
                          check=False)
    output = done.stdout + ("\n" + done.stderr[-3000:] if done.returncode else "")
    lines = done.stdout.strip().splitlines()
    assert lines and lines[-1] == "violations=0", output
    assert done.returncode == 0, output
    summary = "\n".join(lines)
    assert "self-test: 6/6 corruptions detected" in summary, output
    assert "redis=2" in summary, output  # Redis really was restarted, twice
    faults = next(line for line in lines if line.startswith("faults: "))
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", faults)}
    for fault in ("time_limits", "oversized", "poison", "revoked_in_outage", "aof_tail_lost"):
        assert counts.get(fault, 0) > 0, f"no {fault} in: {faults}\n{output}"
    assert counts["aof_tail_lost"] == 1, output
    assert "exempt_after_loss" in counts, output  # how many the loss exempted, even if 0


def test_a_no_verdict_is_excused_only_for_tasks_a_killed_worker_had_not_finished() -> None:
    from benchmarks.chaos_record import lost_with_worker
    from benchmarks.common import KILL_MARK

    def line(task: str, what: str) -> str:
        return f"[t: INFO/MainProcess] Task leasegate.image_generate[{task}] {what}\n"

    a, b, c, d = (ch * 32 for ch in "abcd")
    killed = line(a, "received") + line(b, "received") + line(b, "succeeded in 0.3s: None")
    alive = line(c, "received")  # the incarnation that is still running: nothing is lost
    revoked = f"[t: INFO/MainProcess] Discarding revoked task: leasegate.image_generate[{d}]\n"
    assert lost_with_worker([killed + KILL_MARK + alive]) == {a}
    assert lost_with_worker([revoked + KILL_MARK, alive]) == {d}
    assert lost_with_worker([killed + alive]) == set()


def test_a_no_verdict_is_excused_for_a_message_no_worker_received_sent_before_a_kill() -> None:
    from benchmarks.chaos_check import lost_in_transport
    from benchmarks.chaos_record import CallbackRecord, Record

    record = Record()
    record.callbacks["a" * 32] = CallbackRecord("a" * 32, "cron:x", "r", 1, 0, "submitted",
                                               began_ms=1000, ended_ms=1001)
    assert not lost_in_transport(record, "a" * 32)  # no kill at all
    record.kills_ms = [999]
    assert not lost_in_transport(record, "a" * 32)  # the kill came before it was sent
    record.kills_ms.append(1500)
    assert lost_in_transport(record, "a" * 32)
    record.taken_ever = {"a" * 32}  # a worker received it: the transport did not lose it
    assert not lost_in_transport(record, "a" * 32)


def test_a_receipt_inside_the_loss_window_exempts_its_callback() -> None:
    from benchmarks.chaos_check import exempt_after_loss
    from benchmarks.chaos_faults import Loss
    from benchmarks.chaos_record import CallbackRecord, Record, received_times

    log = ("[2026-11-29 19:07:11,914: INFO/MainProcess] Task leasegate.image_generate"
           f"[{'a' * 32}] received\n")
    at = received_times([log])[("a" * 32)][0]
    record = Record()
    record.callbacks["a" * 32] = CallbackRecord("a" * 32, "cron:x", "r", 1, 0, "submitted",
                                               began_ms=at - 9000, ended_ms=at - 8990)
    record.loss = Loss(mark_ms=at - 100, killed_ms=at + 100, restarted_ms=at + 2000,
                       cut_bytes=1, mark_survived=True)
    assert exempt_after_loss(record) == set()  # submitted long before the window
    record.received_ms = received_times([log])
    assert exempt_after_loss(record) == {"a" * 32}  # but taken off the queue inside it
    record.loss = Loss(mark_ms=at + 50, killed_ms=at + 100, restarted_ms=at + 2000,
                       cut_bytes=1, mark_survived=True)
    assert exempt_after_loss(record) == set()  # taken before the window: the take survived


def test_a_killed_primary_excuses_only_the_sessions_of_its_shards() -> None:
    from benchmarks.chaos_check import exempt_after_loss
    from benchmarks.chaos_faults import Loss
    from benchmarks.chaos_record import CallbackRecord, Record, RunRecord, writes_in_window
    from leasegate.ownership import shard_of

    record = Record()
    for key in ("cron:job-1", "cron:job-2"):
        record.callbacks[key] = CallbackRecord(key, key, "r", 1, 0, "submitted",
                                               began_ms=1000, ended_ms=1010)
        record.runs[(key, "r")] = RunRecord(key, "r", "p", "finish", created_ms=1005)
    assert shard_of("cron:job-1") != shard_of("cron:job-2")
    record.loss = Loss(mark_ms=1000, killed_ms=1020, restarted_ms=3000, cut_bytes=0,
                       mark_survived=True, shards=frozenset({shard_of("cron:job-1")}))
    assert exempt_after_loss(record) == {"cron:job-1"}
    assert writes_in_window(record) == 2  # job-1's submit and its run's start
    record.loss.shards = None  # a standalone Redis: the loss covers every session
    assert exempt_after_loss(record) == {"cron:job-1", "cron:job-2"}
    assert writes_in_window(record) == 4


def test_runs_started_in_the_same_millisecond_are_ordered_by_fence() -> None:
    from benchmarks.chaos_check import next_starts
    from benchmarks.chaos_record import Record, RunRecord

    record = Record()
    later = RunRecord("cron:job-47", "b" * 32, "p", "finish", fence=3, created_ms=1000)
    earlier = RunRecord("cron:job-47", "a" * 32, "p", "finish", fence=2, created_ms=1000)
    record.runs = {("cron:job-47", r.run_id): r for r in (later, earlier)}  # later first
    starts = next_starts(record)
    assert starts == {("cron:job-47", "a" * 32): 1000}  # fence 3 has no successor
