"""The chaos drill once on RabbitMQ as the Celery broker: a fresh vhost (quorum queues), Redis
still the ownership and verdict store and still SIGKILLed and restarted twice (the second time
losing its AOF tail), 3 real workers SIGKILLed at random, raw poison published straight onto
the queue; then every callback must be in exactly one right place (benchmarks/chaos.py).

On RabbitMQ the drill excuses no message lost in the transport: a delivered message stays
with RabbitMQ until it is acknowledged.
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
def test_chaos_drill_on_rabbitmq_has_no_violations() -> None:
    require_rabbitmq()
    with RabbitVhost("lgchaos") as vhost:
        args = [sys.executable, "-m", "benchmarks.chaos", "--runs", "100", "--seconds", "60",
                "--fault-interval", "1.5", "--redis-down", "2", "--self-test",
                "--broker", vhost.url]
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=130,
                              check=False)
        types, ready = vhost.queue_types(), vhost.ready("media")
    output = done.stdout + ("\n" + done.stderr[-3000:] if done.returncode else "")
    lines = done.stdout.strip().splitlines()
    assert lines and lines[-1] == "violations=0", output
    assert done.returncode == 0, output
    summary = "\n".join(lines)
    assert "broker rabbitmq" in summary and "self-test: 6/6 corruptions detected" in summary
    assert "redis=2" in summary, output  # the store really was restarted, twice
    assert "no_verdict for a message lost in the transport=0" in summary, output
    faults = next(line for line in lines if line.startswith("faults: "))
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", faults)}
    for fault in ("poison", "aof_tail_lost"):
        assert counts.get(fault, 0) > 0, f"no {fault} in: {faults}\n{output}"
    kills = next(line for line in lines if line.startswith("kills: "))
    assert re.search(r"workers=[1-9]", kills), output  # whole workers died mid-drill
    assert types["media"] == "quorum", types
    assert ready == 0, "messages left on the queue after the drill settled"
