"""The failover drill (benchmarks/failover.py) at a small size: the primary SIGKILLed while
the replica lags, the sentinels promote it. Without LEASEGATE_MIN_REPLICAS acknowledged
verdicts are lost (and say so); with it none is; neither ever misdelivers."""

from __future__ import annotations

import pytest

from benchmarks.failover import drill

pytestmark = [pytest.mark.faults, pytest.mark.chaos]


def test_without_min_replicas_a_failover_loses_acknowledged_verdicts_never_misdelivers() -> None:
    counts = drill(min_replicas=0, sessions=8)
    assert counts.misdelivered == 0 and counts.duplicated == 0, counts
    assert counts.lost > 0 and counts.refused == 0, counts  # the window's verdicts, acked and gone
    assert counts.runs_lost == 8 and counts.unknown_run == 8, counts  # late callbacks: unknown_run


def test_with_min_replicas_a_failover_loses_no_acknowledged_verdict() -> None:
    counts = drill(min_replicas=1, sessions=8)
    assert counts.misdelivered == 0 and counts.duplicated == 0, counts
    assert counts.lost == 0, counts
    assert counts.refused > 0 and counts.starts_refused == 8, counts  # what WAIT held back
    assert counts.acknowledged > 8, counts
