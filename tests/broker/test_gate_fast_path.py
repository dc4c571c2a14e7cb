"""The gate's fast path keeps its behaviour: the deployment's limits bound into its script
(memo lifetime, dead-letter body cap) per Settings, its one-string reply read back whole
(a detail with newlines), the resume list's expiry kept with its run's across a renew without
a PTTL per delivery, and the envelope id checks' fast paths accepting nothing the full checks
refuse."""

from __future__ import annotations

import uuid

import redis
from hypothesis import given
from hypothesis import strategies as st

from leasegate.broker import Client, Settings
from leasegate.broker.envelope.signed import PLAIN_ID, PLAIN_SESSION_KEY
from leasegate.ownership import check_run_id, check_session_key
from tests.conftest import SECRET


def sk() -> str:
    return f"cron:job-{uuid.uuid4().hex[:8]}"


def test_each_clients_settings_reach_its_gate_script(redis_client: redis.Redis,
                                                     namespace: str) -> None:
    small = Client(redis_client, namespace, secret=SECRET,
                   settings=Settings(retention=60.0, dlq_max_age=90.0, dlq_body_cap=8))
    default = Client(redis_client, namespace, secret=SECRET)
    for client, memo_ttl_ms in ((small, 90_000), (default, default.settings.memo_ttl_ms)):
        run = client.start_run(sk(), prompt="p", ttl=30)
        env = run.envelope("image_generate", {})
        assert client.gate.deliver(env, result={"ok": True}).delivered
        memo = client.keys.callback(run.session_key, run.run_id, env.callback_id)
        assert memo_ttl_ms - 5_000 < redis_client.pttl(memo) <= memo_ttl_ms
        run.release()
        late = run.envelope("image_generate", {})
        verdict = client.gate.deliver(late, result={"words": "more than eight bytes"})
        assert verdict.reason == "run_released"
        letter = client.dead_letters.get(verdict.entry_id)
        assert (letter.payload_truncated > 0) is (client is small)


def test_a_detail_with_newlines_comes_back_whole_and_again_on_a_repeat(
        broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    env = run.envelope("image_generate", {})
    detail = "deadline is 9 s\nthis worker's maximum\n\nis 5 s"
    first = broker_client.gate.refuse(env, "deadline_too_long", detail)
    assert (first.delivered, first.reason, first.detail, first.repeat) == (
        False, "deadline_too_long", detail, False)
    again = broker_client.gate.deliver(env, result={"ok": True})
    assert (again.delivered, again.reason, again.detail, again.repeat) == (
        False, "deadline_too_long", detail, True)
    assert again.entry_id == first.entry_id and again.seq is None
    second = run.envelope("image_generate", {})
    delivered = broker_client.gate.deliver(second, result=1)
    repeat = broker_client.gate.deliver(second, result=1)
    assert (delivered.delivered, delivered.seq, delivered.detail, delivered.repeat) == (
        True, 2, "live", False)
    assert (repeat.delivered, repeat.seq, repeat.entry_id, repeat.repeat) == (
        True, 2, delivered.entry_id, True)


def test_the_resume_list_expires_with_its_run_across_a_renew(broker_client: Client,
                                                             redis_client: redis.Redis) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    keys = broker_client.keys
    record = keys.run(run.session_key, run.run_id)
    resume = keys.resume(run.session_key, run.run_id)
    assert broker_client.gate.deliver(run.envelope("image_generate", {}), result=1).delivered
    run.renew(ttl=600)
    assert broker_client.gate.deliver(run.envelope("image_generate", {}), result=2).delivered
    assert redis_client.llen(resume) == 2
    assert abs(redis_client.pttl(resume) - redis_client.pttl(record)) < 1_000
    assert redis_client.pttl(record) > 500_000


@given(st.one_of(st.text(max_size=300), st.from_regex(PLAIN_ID, fullmatch=True),
                 st.from_regex(PLAIN_SESSION_KEY, fullmatch=True)))
def test_the_id_fast_paths_accept_only_what_the_full_checks_accept(value: str) -> None:
    if PLAIN_ID.fullmatch(value):
        assert check_run_id(value) == value
    if PLAIN_SESSION_KEY.fullmatch(value):
        assert check_session_key(value) == value


def test_the_id_fast_paths_stop_short_of_the_limits() -> None:
    assert check_run_id("r" * 64) and not PLAIN_ID.fullmatch("r" * 65)
    assert check_session_key("s:" * 128) and not PLAIN_SESSION_KEY.fullmatch("s" * 257)
