"""The chaos drill once on RabbitMQ as the Celery broker and a Redis Cluster as the store: a
fresh vhost (quorum queues), a local cluster of 3 primaries + 3 replicas, the primary of some
sessions' shards SIGKILLed mid-drill (runs of those sessions released with cancel_pending
before and during the failover) and its replica promoted, 3 real workers SIGKILLed at random,
raw poison published straight onto the queue; then every callback must be in exactly one right
place (benchmarks/chaos.py).

On RabbitMQ the drill excuses no message lost in the transport: a delivered message stays
with RabbitMQ until it is acknowledged. Replication is asynchronous: the writes the killed
primary acknowledged but had not replicated are bounded by a surviving mark and excused only on
its shards. ``make chaos`` runs the full size, and the RabbitMQ drill on a standalone Redis.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.rabbitmq import RabbitVhost, require_rabbitmq

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.chaos, pytest.mark.faults, pytest.mark.e2e, pytest.mark.rabbitmq]


@pytest.mark.timeout(150)
def test_chaos_drill_on_rabbitmq_and_a_cluster_losing_a_primary_has_no_violations() -> None:
    require_rabbitmq()
    with RabbitVhost("lgchaos") as vhost:
        args = [sys.executable, "-m", "benchmarks.chaos", "--runs", "100", "--seconds", "60",
                "--fault-interval", "1.5", "--self-test", "--redis", "cluster",
                "--broker", vhost.url]
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=130,
                              check=False)
        types, ready = vhost.queue_types(), vhost.ready("media")
    output = done.stdout + ("\n" + done.stderr[-3000:] if done.returncode else "")
    lines = done.stdout.strip().splitlines()
    assert lines and lines[-1] == "violations=0", output
    assert done.returncode == 0, output
    summary = "\n".join(lines)
    assert "broker rabbitmq, redis cluster" in summary, output
    assert "self-test: 6/6 corruptions detected" in summary, output
    assert "no_verdict for a message lost in the transport=0" in summary, output
    faults = next(line for line in lines if line.startswith("faults: "))
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", faults)}
    assert counts["primary_killed"] == 1, output  # one primary died mid-drill
    assert counts["aof_tail_lost"] == 0, output  # the cluster's loss is the failover's
    for count in ("window_writes", "window_verdicts", "exempt_after_loss"):  # even if 0
        assert count in counts, output
    assert counts.get("poison", 0) > 0, output
    kills = next(line for line in lines if line.startswith("kills: "))
    assert re.search(r"workers=[1-9]", kills) and "primaries=1" in kills, output
    assert re.search(r"primary killed: lost window \d+ ms before the kill on \d+ of 32 shards",
                     summary), output
    logs = next(line for line in lines if line.startswith("worker logs: "))
    # a failover is "Redis unavailable": no task turned it into an error verdict
    assert not re.search(r'"internal_verdicts": [1-9]', logs), output
    assert types["media"] == "quorum", types
    assert ready == 0, "messages left on the queue after the drill settled"


def test_a_cluster_drill_needs_rabbitmq_as_the_broker() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.chaos", "--redis", "cluster"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "--redis cluster needs --broker rabbitmq" in done.stderr, done.stderr
