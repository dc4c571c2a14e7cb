"""Behaviour of every call of the ownership registry, against a real redis-server."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from leasegate.ownership import (
    Lease,
    LeaseHeld,
    LeaseLost,
    Registry,
    RegistryUnavailable,
    RunState,
)
from leasegate.ownership.keys import SHARD_TAGS, shard_of
from leasegate.testing.redis_server import free_port
from tests.support.helpers import server_time, wait_for_state, wait_until

SK = "job:nightly-report"


# -- acquire and supersede ---------------------------------------------------------------------


def test_acquire_gives_growing_fences_and_previous_run(registry: Registry,
                                                       redis_client: redis.Redis) -> None:
    before = server_time(redis_client)
    first = registry.acquire(SK, ttl=30)
    after = server_time(redis_client)
    assert first.fence == 1
    assert first.state is RunState.LIVE
    assert first.previous_run_id is None
    assert first.ttl == 30
    assert before + 30 - 0.001 <= first.expires_at <= after + 30 + 0.001

    second = registry.acquire(SK, ttl=30)
    third = registry.acquire(SK, ttl=30)
    assert (second.fence, third.fence) == (2, 3)
    assert second.previous_run_id == first.run_id
    assert third.previous_run_id == second.run_id
    assert len({first.run_id, second.run_id, third.run_id}) == 3

    status = registry.status(third)
    assert status.state is RunState.LIVE
    assert status.fence == 3
    assert status.expires_at == third.expires_at
    assert status.ttl == 30


def test_fences_are_per_session_key(registry: Registry) -> None:
    assert registry.acquire("a").fence == 1
    assert registry.acquire("b").fence == 1
    assert registry.acquire("a").fence == 2


def test_previous_run_id_only_names_a_run_that_was_alive(registry: Registry) -> None:
    first = registry.acquire(SK)
    registry.release(first)
    second = registry.acquire(SK)
    assert second.fence == 2
    assert second.previous_run_id is None


def test_acquire_with_explicit_run_id_and_reuse_refused(registry: Registry) -> None:
    lease = registry.acquire(SK, run_id="run-1")
    assert lease.run_id == "run-1"
    with pytest.raises(ValueError, match="run_id"):
        registry.acquire(SK, run_id="run-1")
    # the refused attempt neither consumed a fence nor disturbed the holder
    assert registry.status(lease).state is RunState.LIVE
    assert registry.acquire(SK).fence == 2


def test_supersede_ends_the_old_run_at_once(registry: Registry) -> None:
    old = registry.acquire(SK, ttl=30)
    new = registry.acquire(SK, ttl=30)  # policy defaults to supersede
    status = registry.status(old)
    assert status.state is RunState.SUPERSEDED
    assert status.superseded_by == new.run_id
    assert status.superseded_by_fence == new.fence == 2
    assert status.ended_at is not None
    assert status.server_time is not None
    assert status.ended_at <= status.server_time
    assert registry.status(new).state is RunState.LIVE


def test_supersede_ends_a_parked_run(registry: Registry) -> None:
    old = registry.park(registry.acquire(SK), until=600)
    new = registry.acquire(SK)
    status = registry.status(old)
    assert status.state is RunState.SUPERSEDED
    assert status.superseded_by == new.run_id
    assert new.previous_run_id == old.run_id


# -- exclusive -----------------------------------------------------------------------------------


def test_exclusive_raises_lease_held_while_live(registry: Registry) -> None:
    holder = registry.acquire(SK, ttl=30, policy="exclusive")
    with pytest.raises(LeaseHeld) as caught:
        registry.acquire(SK, ttl=30, policy="exclusive")
    assert caught.value.session_key == SK
    assert caught.value.holder_run_id == holder.run_id
    assert caught.value.holder_expires_at == holder.expires_at
    assert caught.value.holder_state == "live"
    assert holder.run_id in str(caught.value)
    assert registry.status(holder).state is RunState.LIVE
    # a refused acquire does not consume a fencing token
    registry.release(holder)
    assert registry.acquire(SK, policy="exclusive").fence == 2


def test_exclusive_raises_lease_held_while_parked(registry: Registry) -> None:
    holder = registry.acquire(SK, ttl=30)
    parked = registry.park(holder, until=600)
    with pytest.raises(LeaseHeld) as caught:
        registry.acquire(SK, policy="exclusive")
    assert caught.value.holder_run_id == holder.run_id
    assert caught.value.holder_state == "parked"
    assert caught.value.holder_expires_at == parked.expires_at
    assert registry.status(holder).state is RunState.PARKED


def test_exclusive_succeeds_after_release(registry: Registry) -> None:
    holder = registry.acquire(SK, policy="exclusive")
    registry.release(holder)
    lease = registry.acquire(SK, policy="exclusive")
    assert lease.fence == 2
    assert lease.previous_run_id is None
    assert registry.status(holder).state is RunState.RELEASED


def test_exclusive_succeeds_after_expiry(registry: Registry) -> None:
    holder = registry.acquire(SK, ttl=0.2, policy="exclusive")
    with pytest.raises(LeaseHeld):
        registry.acquire(SK, policy="exclusive")
    wait_for_state(registry, holder, RunState.EXPIRED)
    lease = registry.acquire(SK, policy="exclusive")
    assert lease.fence == 2
    assert lease.previous_run_id is None
    # the expired run stays expired: it is not rewritten as superseded
    status = registry.status(holder)
    assert status.state is RunState.EXPIRED
    assert status.superseded_by is None


# -- renew ---------------------------------------------------------------------------------------


def test_renew_extends(registry: Registry, redis_client: redis.Redis) -> None:
    lease = registry.acquire(SK, ttl=5)
    before = server_time(redis_client)
    renewed = registry.renew(lease)
    after = server_time(redis_client)
    assert renewed.state is RunState.LIVE
    assert renewed.ttl == 5
    assert (renewed.run_id, renewed.fence) == (lease.run_id, lease.fence)
    assert before + 5 - 0.001 <= renewed.expires_at <= after + 5 + 0.001
    assert registry.status(lease).expires_at == renewed.expires_at


def test_renew_with_ttl_sets_the_new_ttl(registry: Registry, redis_client: redis.Redis) -> None:
    lease = registry.acquire(SK, ttl=5)
    before = server_time(redis_client)
    renewed = registry.renew(lease, ttl=60)
    assert renewed.ttl == 60
    assert renewed.expires_at >= before + 60 - 0.001
    # the new ttl is the run's own from now on
    again = registry.renew(lease)
    assert again.ttl == 60
    assert again.expires_at >= renewed.expires_at
    assert registry.status(lease).ttl == 60


def test_renew_of_expired_raises_lease_lost_expired(registry: Registry) -> None:
    lease = registry.acquire(SK, ttl=0.2)
    wait_for_state(registry, lease, RunState.EXPIRED)
    with pytest.raises(LeaseLost) as caught:
        registry.renew(lease)
    assert caught.value.reason == "expired"
    assert caught.value.run_id == lease.run_id
    assert caught.value.session_key == SK
    # a refused renew does not revive it
    assert registry.status(lease).state is RunState.EXPIRED


def test_renew_of_superseded_raises_lease_lost_superseded(registry: Registry) -> None:
    old = registry.acquire(SK)
    registry.acquire(SK)
    with pytest.raises(LeaseLost) as caught:
        registry.renew(old)
    assert caught.value.reason == "superseded"
    with pytest.raises(LeaseLost) as caught:
        registry.park(old)
    assert caught.value.reason == "superseded"
    assert registry.status(old).state is RunState.SUPERSEDED


def test_renew_of_released_raises_lease_lost_released(registry: Registry) -> None:
    lease = registry.acquire(SK)
    registry.release(lease)
    with pytest.raises(LeaseLost) as caught:
        registry.renew(lease)
    assert caught.value.reason == "released"
    assert registry.status(lease).state is RunState.RELEASED


def test_renew_of_unknown_run_raises_lease_lost_unknown(registry: Registry) -> None:
    ghost = Lease(SK, "never-acquired", 1, 0.0, 30.0)
    with pytest.raises(LeaseLost) as caught:
        registry.renew(ghost)
    assert caught.value.reason == "unknown"
    assert registry.status(ghost).state is RunState.UNKNOWN


def test_renew_with_a_forged_fence_is_refused(registry: Registry) -> None:
    lease = registry.acquire(SK)
    forged = Lease(SK, lease.run_id, lease.fence + 1, lease.expires_at, lease.ttl)
    with pytest.raises(LeaseLost) as caught:
        registry.renew(forged)
    assert caught.value.reason == "unknown"
    registry.release(forged)
    assert registry.status(lease).state is RunState.LIVE


# -- park ----------------------------------------------------------------------------------------


def test_park(registry: Registry, redis_client: redis.Redis) -> None:
    lease = registry.acquire(SK, ttl=5)
    before = server_time(redis_client)
    parked = registry.park(lease, until=120)
    after = server_time(redis_client)
    assert parked.state is RunState.PARKED
    assert before + 120 - 0.001 <= parked.expires_at <= after + 120 + 0.001
    assert parked.ttl == 5  # parking leaves the heartbeat ttl alone
    status = registry.status(lease)
    assert status.state is RunState.PARKED
    assert status.expires_at == parked.expires_at


def test_renew_after_park_returns_to_live(registry: Registry, redis_client: redis.Redis) -> None:
    lease = registry.acquire(SK, ttl=5)
    registry.park(lease, until=120)
    before = server_time(redis_client)
    renewed = registry.renew(lease)
    assert renewed.state is RunState.LIVE
    assert before + 5 - 0.001 <= renewed.expires_at < before + 6
    assert registry.status(lease).state is RunState.LIVE


def test_parked_run_expires_at_its_deadline(registry: Registry) -> None:
    lease = registry.park(registry.acquire(SK, ttl=30), until=0.2)
    status = wait_for_state(registry, lease, RunState.EXPIRED)
    assert status.expires_at == lease.expires_at is not None
    with pytest.raises(LeaseLost) as caught:
        registry.renew(lease)
    assert caught.value.reason == "expired"


def test_park_over_max_raises(redis_client: redis.Redis, namespace: str) -> None:
    registry = Registry(redis_client, namespace, max_park=60)
    lease = registry.acquire(SK)
    with pytest.raises(ValueError, match="until") as caught:
        registry.park(lease, until=61)
    assert "60" in str(caught.value)
    with pytest.raises(ValueError, match="until"):
        registry.park(lease, until=0)
    assert registry.status(lease).state is RunState.LIVE
    assert registry.park(lease, until=60).state is RunState.PARKED


# -- release -------------------------------------------------------------------------------------


def test_release_is_idempotent(registry: Registry) -> None:
    lease = registry.acquire(SK)
    first = registry.release(lease, "failed")
    assert first.state is RunState.RELEASED
    assert first.outcome == "failed"
    assert first.ended_at is not None
    second = registry.release(lease, "completed")
    assert second.state is RunState.RELEASED
    assert second.outcome == "failed"
    assert second.ended_at == first.ended_at


@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled"])
def test_release_outcomes(registry: Registry, outcome: str) -> None:
    lease = registry.acquire(SK)
    assert registry.release(lease, outcome).outcome == outcome  # type: ignore[arg-type]


def test_release_of_parked_run(registry: Registry) -> None:
    lease = registry.park(registry.acquire(SK), until=600)
    status = registry.release(lease, "cancelled")
    assert (status.state, status.outcome) == (RunState.RELEASED, "cancelled")


def test_release_of_expired_run_keeps_expired(registry: Registry) -> None:
    lease = registry.acquire(SK, ttl=0.2)
    wait_for_state(registry, lease, RunState.EXPIRED)
    status = registry.release(lease)
    assert status.state is RunState.EXPIRED
    assert status.outcome is None
    assert status.ended_at is None


def test_release_of_superseded_run_keeps_superseded(registry: Registry) -> None:
    old = registry.acquire(SK)
    new = registry.acquire(SK)
    status = registry.release(old, "completed")
    assert status.state is RunState.SUPERSEDED
    assert status.outcome is None
    assert status.superseded_by == new.run_id
    # releasing the superseded run must not disturb the new owner
    assert registry.status(new).state is RunState.LIVE
    with pytest.raises(LeaseHeld) as caught:
        registry.acquire(SK, policy="exclusive")
    assert caught.value.holder_run_id == new.run_id


def test_release_of_unknown_run(registry: Registry) -> None:
    status = registry.release(Lease(SK, "never-acquired", 1, 0.0, 30.0))
    assert status.state is RunState.UNKNOWN


# -- status --------------------------------------------------------------------------------------


def test_status_by_lease_and_by_key_and_run_id(registry: Registry) -> None:
    lease = registry.acquire(SK, ttl=30)
    by_lease = registry.status(lease)
    by_ids = registry.status(SK, lease.run_id)
    assert by_lease.state is by_ids.state is RunState.LIVE
    assert (by_ids.session_key, by_ids.run_id) == (SK, lease.run_id)
    assert by_ids.fence == by_lease.fence == 1
    assert by_ids.expires_at == by_lease.expires_at == lease.expires_at
    assert by_ids.created_at is not None
    assert by_ids.server_time is not None
    assert by_ids.created_at <= by_ids.server_time < by_ids.expires_at


def test_status_of_missing_run_is_unknown(registry: Registry) -> None:
    registry.acquire(SK)
    status = registry.status(SK, "no-such-run")
    assert status.state is RunState.UNKNOWN
    assert status.fence is None
    assert status.expires_at is None
    assert status.server_time is not None
    assert registry.status("no-such-session", "no-such-run").state is RunState.UNKNOWN


def test_status_needs_a_run_id(registry: Registry) -> None:
    with pytest.raises(TypeError, match="run_id"):
        registry.status(SK)  # type: ignore[call-overload]


# -- hold ----------------------------------------------------------------------------------------


def test_hold_renews_in_the_background_past_several_ttls(registry: Registry) -> None:
    with registry.hold(SK, ttl=0.3) as lease:
        first_expiry = lease.expires_at
        statuses = []

        def three_ttls_later() -> bool:
            statuses.append(registry.status(lease))
            server_now = statuses[-1].server_time
            assert server_now is not None
            return server_now > first_expiry + 0.6

        wait_until(three_ttls_later, timeout=10, message="three TTLs of server time")
        assert all(status.state is RunState.LIVE for status in statuses)
        last = statuses[-1]
        assert last.expires_at is not None
        assert last.expires_at > first_expiry + 0.6
        lease.check()
        assert not lease.lost
    status = registry.status(lease)
    assert (status.state, status.outcome) == (RunState.RELEASED, "completed")


def test_hold_releases_failed_on_exception(registry: Registry) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), registry.hold(SK, ttl=30) as lease:
        assert registry.status(lease).state is RunState.LIVE
        raise Boom
    status = registry.status(lease)
    assert (status.state, status.outcome) == (RunState.RELEASED, "failed")


def test_hold_exclusive_raises_while_held(registry: Registry) -> None:
    with registry.hold(SK, ttl=30, policy="exclusive") as lease:
        with pytest.raises(LeaseHeld) as caught, registry.hold(SK, policy="exclusive"):
            pass
        assert caught.value.holder_run_id == lease.run_id
    assert registry.status(lease).state is RunState.RELEASED


def test_hold_superseded_from_outside(registry: Registry) -> None:
    with pytest.raises(LeaseLost) as on_exit, registry.hold(SK, ttl=0.3) as lease:
        newer = registry.acquire(SK, ttl=30)
        wait_until(lambda: lease.lost, timeout=5, message="the renewer to notice")
        with pytest.raises(LeaseLost) as caught:
            lease.check()
        assert caught.value.reason == "superseded"
        assert caught.value.run_id == lease.run_id
    assert on_exit.value.reason == "superseded"
    status = registry.status(lease)
    assert status.state is RunState.SUPERSEDED
    assert status.superseded_by == newer.run_id
    assert registry.status(newer).state is RunState.LIVE


def test_hold_superseded_just_before_exit_still_raises(registry: Registry) -> None:
    """The renewer has not run yet (ttl 30 s: first beat after 10 s) when the block ends."""
    with pytest.raises(LeaseLost) as on_exit, registry.hold(SK, ttl=30) as lease:
        newer = registry.acquire(SK, ttl=30)
    assert on_exit.value.reason == "superseded"
    assert registry.status(lease).state is RunState.SUPERSEDED
    assert registry.status(newer).state is RunState.LIVE


def test_hold_expired_while_block_ran_raises_on_exit(registry: Registry) -> None:
    """The block outlives its lease (renewer blocked): exit reports the loss, not 'completed'."""
    with pytest.raises(LeaseLost) as on_exit, registry.hold(SK, ttl=30) as lease:
        registry.renew(lease, ttl=0.2)  # the next background beat is 10 s away
        wait_for_state(registry, lease, RunState.EXPIRED)
    assert on_exit.value.reason == "expired"
    assert registry.status(lease).state is RunState.EXPIRED


def test_hold_does_not_leave_renewer_threads(registry: Registry) -> None:
    with registry.hold(SK, ttl=30) as lease:
        name = f"leasegate-renew-{lease.run_id[:8]}"
        assert any(thread.name == name for thread in threading.enumerate())
    assert not any(thread.name == name for thread in threading.enumerate())


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session_key", "field"),
    [("", "session_key"), ("x" * 513, "session_key"), ("a{b}c", "session_key"),
     ("a{b", "session_key"), ("a}b", "session_key"), ("a\nb", "session_key")],
    ids=["empty", "513-bytes", "braces", "open-brace", "close-brace", "control-char"],
)
def test_bad_session_key(registry: Registry, session_key: str, field: str) -> None:
    with pytest.raises(ValueError) as caught:
        registry.acquire(session_key)
    assert field in str(caught.value)
    with pytest.raises(ValueError) as caught:
        registry.status(session_key, "run")
    assert field in str(caught.value)


def test_session_key_of_512_bytes_is_fine(registry: Registry) -> None:
    key = "é" * 256  # 512 bytes in UTF-8
    lease = registry.acquire(key)
    assert registry.status(key, lease.run_id).state is RunState.LIVE
    with pytest.raises(ValueError, match="session_key"):
        registry.acquire(key + "x")


@pytest.mark.parametrize("ttl", [0, -1, -0.001, float("nan")])
def test_ttl_not_positive(registry: Registry, ttl: float) -> None:
    with pytest.raises(ValueError) as caught:
        registry.acquire(SK, ttl=ttl)
    assert "ttl" in str(caught.value)
    lease = registry.acquire(SK)
    with pytest.raises(ValueError) as caught:
        registry.renew(lease, ttl=ttl)
    assert "ttl" in str(caught.value)


def test_ttl_over_max(redis_client: redis.Redis, namespace: str) -> None:
    registry = Registry(redis_client, namespace, max_ttl=10)
    with pytest.raises(ValueError) as caught:
        registry.acquire(SK, ttl=10.5)
    assert "ttl" in str(caught.value)
    lease = registry.acquire(SK, ttl=10)
    with pytest.raises(ValueError) as caught:
        registry.renew(lease, ttl=11)
    assert "ttl" in str(caught.value)
    assert registry.status(lease).ttl == 10


def test_ttl_over_default_max(registry: Registry) -> None:
    with pytest.raises(ValueError) as caught:
        registry.acquire(SK, ttl=3601)
    assert "ttl" in str(caught.value)
    with pytest.raises(ValueError) as caught:
        registry.acquire(SK, ttl=float("inf"))
    assert "ttl" in str(caught.value)


def test_unknown_policy(registry: Registry) -> None:
    with pytest.raises(ValueError) as caught:
        registry.acquire(SK, policy="steal")  # type: ignore[arg-type]
    assert "policy" in str(caught.value)


def test_unknown_outcome(registry: Registry) -> None:
    lease = registry.acquire(SK)
    with pytest.raises(ValueError) as caught:
        registry.release(lease, "done")  # type: ignore[arg-type]
    assert "outcome" in str(caught.value)
    assert registry.status(lease).state is RunState.LIVE


@pytest.mark.parametrize(("run_id", "field"),
                         [("", "run_id"), ("a:b", "run_id"), ("r" * 129, "run_id")])
def test_bad_run_id(registry: Registry, run_id: str, field: str) -> None:
    with pytest.raises(ValueError) as caught:
        registry.acquire(SK, run_id=run_id)
    assert field in str(caught.value)


def test_bad_input_leaves_no_keys(registry: Registry, redis_client: redis.Redis,
                                  namespace: str) -> None:
    for call in (lambda: registry.acquire(""), lambda: registry.acquire(SK, ttl=0),
                 lambda: registry.acquire(SK, policy="steal")):  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            call()
    assert list(redis_client.scan_iter(match=f"{namespace}:*")) == []


# -- Redis unreachable ---------------------------------------------------------------------------


def test_unreachable_redis_raises_registry_unavailable() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.2,
                         retry=Retry(NoBackoff(), 1))
    registry = Registry(client, "lg")
    with pytest.raises(RegistryUnavailable):
        registry.acquire(SK)
    with pytest.raises(RegistryUnavailable):
        registry.renew(Lease(SK, "some-run", 1, 0.0, 30.0))
    with pytest.raises(RegistryUnavailable):
        registry.park(Lease(SK, "some-run", 1, 0.0, 30.0))
    with pytest.raises(RegistryUnavailable):
        registry.status(SK, "some-run")
    with pytest.raises(RegistryUnavailable):
        registry.release(Lease(SK, "some-run", 1, 0.0, 30.0))
    client.close()


# -- retention and key layout --------------------------------------------------------------------


def test_retention_leaves_only_the_fence_counter(redis_client: redis.Redis,
                                                 namespace: str) -> None:
    registry = Registry(redis_client, namespace, retention=0.5)
    released = registry.acquire(SK, ttl=30)
    registry.release(released)
    expired = registry.acquire(SK, ttl=0.2)
    # both records are readable for the retention period
    assert registry.status(released).state is RunState.RELEASED
    wait_for_state(registry, expired, RunState.EXPIRED)
    fence_key = registry.keys.fence(SK)

    def only_fence_left() -> bool:
        found = redis_client.scan_iter(match=f"{namespace}:*")
        return sorted(k.decode() for k in found) == [fence_key]

    wait_until(only_fence_left, timeout=10, message="retention to drop the run records")
    assert registry.status(released).state is RunState.UNKNOWN
    assert registry.status(expired).state is RunState.UNKNOWN
    assert redis_client.get(fence_key) == b"2"
    assert redis_client.ttl(fence_key) == -1
    # the counter outlived the records, so the next token still grows
    assert registry.acquire(SK).fence == 3


def test_every_key_carries_the_hash_tag_and_only_the_fence_lacks_a_ttl(
        registry: Registry, redis_client: redis.Redis, namespace: str) -> None:
    sessions = ["job:a", "job:b", "tenant/7 weekly"]
    for session_key in sessions:
        first = registry.acquire(session_key)
        registry.park(first, until=300)
        second = registry.acquire(session_key)
        registry.renew(second)
        registry.release(registry.acquire(session_key, ttl=5), "failed")
    registry.acquire("job:a", ttl=5)

    keys = sorted(k.decode() for k in redis_client.scan_iter(match=f"{namespace}:*"))
    assert keys
    for session_key in sessions:
        mine = [k for k in keys if f"{{{session_key}}}" in k]
        # fence, owner pointer (job:a only: the others were released) and three run records
        assert len(mine) == (6 if session_key == "job:a" else 4)
        # one slot: the session's shard's, which its shard's counters share
        tag = SHARD_TAGS[shard_of(session_key)]
        assert {key_slot(k.encode()) for k in mine} == {key_slot(tag.encode())}
        assert all(k.startswith(f"{namespace}:{{{tag}}}:{{{session_key}}}:") for k in mine)
    # besides the sessions' keys only their shards' counters
    assert all(any(f"{{{s}}}" in k for s in sessions) or k.endswith(":metrics") for k in keys)

    for key in keys:
        ttl = redis_client.pttl(key)
        if key.endswith(":fence"):
            assert ttl == -1, key
        else:
            assert ttl > 0, key


def test_a_retried_acquire_after_a_lost_reply_returns_the_same_run(registry: Registry) -> None:
    """The client's retry of an acquire whose reply was lost finds its own run, not an error."""
    session_key = SK
    acquisition = registry.prepare_acquire(session_key, 30, "supersede", None)
    assert acquisition.generated
    keys, argv = acquisition.keys, acquisition.argv
    first = registry.scripts("acquire", keys, argv)  # the reply we pretend never arrived
    again = registry.scripts("acquire", keys, argv)  # what redis-py's retry sends
    lease = registry.finish_acquire(acquisition, again)
    assert (lease.run_id, lease.fence) == (acquisition.run_id, int(first[1]))
    assert registry.status(lease).state is RunState.LIVE
    # the same run id asked for by another acquire (another incarnation) is refused
    other = dataclasses.replace(acquisition, generated=False, incarnation="0" * 32)
    refused = registry.scripts("acquire", other.keys, other.argv)
    with pytest.raises(ValueError, match="already used"):
        registry.finish_acquire(other, refused)
