"""The chaos drill at a small size: 3 real workers SIGKILLed at random and restarted, Redis
(AOF) SIGKILLed and restarted once, ~150 runs that finish, fail, park, get superseded or die;
then every callback must be in exactly one right place (see benchmarks/chaos.py).

``make chaos`` runs the full size (hundreds of runs, bounded to 5 minutes).
"""

from __future__ import annotations

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
    assert "self-test: 5/5 corruptions detected" in summary, output
    assert "redis=1" in summary, output  # Redis really was restarted
