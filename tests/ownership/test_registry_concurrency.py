"""Races between acquirers, and a client whose clock is an hour off."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import redis

from leasegate.ownership import Lease, LeaseHeld, Registry, RunState
from leasegate.testing.redis_server import RedisServer
from tests.support.helpers import registry_verdicts

THREADS = 8


def race(registry: Registry, session_key: str, policy: str) -> list[Lease | Exception]:
    """``THREADS`` threads call acquire at once (released together by a barrier)."""
    barrier = threading.Barrier(THREADS)
    results: list[Lease | Exception] = []
    lock = threading.Lock()

    def contender() -> None:
        barrier.wait(timeout=10)
        try:
            outcome: Lease | Exception = registry.acquire(session_key, 30, policy)  # type: ignore[arg-type]
        except Exception as exc:  # collected and checked by the test
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=contender) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert len(results) == THREADS
    return results


@pytest.mark.parametrize("round_", range(4))
def test_exclusive_race_has_exactly_one_winner(registry: Registry, redis_client: redis.Redis,
                                               round_: int) -> None:
    session_key = f"race-{round_}-{uuid.uuid4().hex[:6]}"
    results = race(registry, session_key, "exclusive")
    winners = [r for r in results if isinstance(r, Lease)]
    losers = [r for r in results if not isinstance(r, Lease)]
    assert len(winners) == 1, results
    assert len(losers) == THREADS - 1
    winner = winners[0]
    assert winner.fence == 1
    for loser in losers:
        assert isinstance(loser, LeaseHeld), loser
        assert loser.holder_run_id == winner.run_id
        assert loser.holder_expires_at == winner.expires_at
        assert loser.holder_state == "live"
    assert registry.status(winner).state is RunState.LIVE
    # losers consumed no fencing token
    assert redis_client.get(registry.keys.fence(session_key)) == b"1"


def test_supersede_race_hands_out_distinct_fences_and_leaves_one_owner(
        registry: Registry) -> None:
    results = race(registry, "race-supersede", "supersede")
    leases = [r for r in results if isinstance(r, Lease)]
    assert len(leases) == THREADS, results
    by_fence = sorted(leases, key=lambda lease: lease.fence)
    assert [lease.fence for lease in by_fence] == list(range(1, THREADS + 1))
    states = {lease.fence: registry.status(lease) for lease in leases}
    assert [f for f, s in states.items() if s.state.alive] == [THREADS]
    for earlier, later in itertools.pairwise(by_fence):
        # each run was superseded by exactly the next one, which names it as its predecessor
        assert later.previous_run_id == earlier.run_id
        assert states[earlier.fence].state is RunState.SUPERSEDED
        assert states[earlier.fence].superseded_by == later.run_id
        assert states[earlier.fence].superseded_by_fence == later.fence


# -- clock skew ----------------------------------------------------------------------------------

SKEWED_CHILD = """
import datetime, json, sys, time

_real_time = time.time
time.time = lambda: _real_time() + 3600

class SkewedDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return super().now(tz) + datetime.timedelta(hours=1)

datetime.datetime = SkewedDatetime

url, namespace, root_dir = sys.argv[1:4]
sys.path.insert(0, root_dir)
from leasegate.ownership import connect
from tests.support.helpers import registry_verdicts, server_time
from leasegate.ownership import Registry

client = connect(url)  # a cluster client on a cluster node URL
verdicts = registry_verdicts(Registry(client, namespace), client)
skew = time.time() - server_time(client)
dt_skew = datetime.datetime.now().timestamp() - server_time(client)
print(json.dumps({"verdicts": verdicts, "skew": skew, "dt_skew": dt_skew}))
"""


EXPECTED_VERDICTS: list[list[object]] = [
    ["acquire", "live", 1, True, True],
    ["renew", "live", 20.0, True],
    ["park", "parked", True],
    ["status", "parked", 1, True, True],
    ["exclusive", "parked", True, True],
    ["renew-after-park", "live", 20.0, True],
    ["expire", "expired", True],
    ["renew-expired", "expired"],
    ["release-expired", "expired"],
    ["supersede", 2, True],
    ["renew-superseded", "superseded"],
    ["status-superseded", "superseded", True, 2],
    ["release", "released", "failed", "failed", True],
    ["renew-released", "released"],
    ["status-unknown", "unknown"],
]


def test_client_clock_skew_changes_no_verdict(redis_server: RedisServer,
                                              redis_client: redis.Redis) -> None:
    here = registry_verdicts(Registry(redis_client, f"here{uuid.uuid4().hex[:8]}"), redis_client)
    child = subprocess.run(
        [sys.executable, "-c", SKEWED_CHILD, redis_server.url, f"skew{uuid.uuid4().hex[:8]}",
         str(Path(__file__).parents[2])],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    # the child's clocks really were an hour ahead of the server's
    assert 3590 < report["skew"] < 3610
    assert 3590 < report["dt_skew"] < 3610
    # json turns tuples into lists: compare in that form
    assert json.loads(json.dumps(here)) == report["verdicts"]
    # and they are the right ones, not merely the same wrong ones
    assert here == EXPECTED_VERDICTS
