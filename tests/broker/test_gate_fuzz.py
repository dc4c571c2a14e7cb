"""Arbitrary bytes and arbitrary field values through decode and the gate: no exception
escapes, and nothing but a genuine, current callback ever reaches an inbox. Version 3
(Ed25519) envelopes are mutated field by field and byte by byte the same way."""

from __future__ import annotations

import uuid
from typing import Any

import msgpack
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leasegate.broker import Client, Envelope, EnvelopeError, generate_pems, key_id, load_verify_key
from leasegate.broker.envelope import WIRE_KEYS, WIRE_KEYS_V3
from tests.conftest import SECRET

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63),
                                                           max_value=2**64 - 1),
                    st.floats(allow_nan=False), st.text(max_size=40), st.binary(max_size=40))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10)


def _inbox_lengths(client: Client) -> dict[str, int]:
    keys = client.redis.keys(f"{client.keys.namespace}:*:inbox")
    return {k.decode(): client.redis.xlen(k) for k in keys}


@SETTINGS
@given(junk=st.binary(max_size=600))
def test_arbitrary_bytes_never_reach_an_inbox(broker_client: Client, junk: bytes) -> None:
    run = broker_client.start_run(f"fuzz-{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    verdict = broker_client.gate.deliver(junk, result={"x": 1})
    assert not verdict.delivered
    assert verdict.reason in ("malformed", "bad_signature")
    assert len(run.inbox.entries()) == 1


@SETTINGS
@given(fields=st.fixed_dictionaries({}, optional={key: values for key in WIRE_KEYS.values()}),
       extra=st.dictionaries(st.text(max_size=6), values, max_size=2))
def test_arbitrary_field_values_are_quarantined(broker_client: Client,
                                                fields: dict[str, Any],
                                                extra: dict[str, Any]) -> None:
    run = broker_client.start_run(f"fuzz-{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    # aim some at the live run, so a bug in the checks would have somewhere to deliver to
    fields.setdefault("sk", run.session_key)
    fields.setdefault("run", run.run_id)
    wire = msgpack.packb({**extra, **fields}, use_bin_type=True)
    before = _inbox_lengths(broker_client)
    verdict = broker_client.gate.deliver(wire, result={})
    assert not verdict.delivered
    assert verdict.reason in ("malformed", "bad_signature")
    assert _inbox_lengths(broker_client) == before


@SETTINGS
@given(fence=st.integers(min_value=1, max_value=2**63 - 1),
       deadline=st.integers(min_value=0, max_value=2**63 - 1),
       same_run=st.booleans(), same_incarnation=st.booleans())
def test_signed_envelopes_with_wrong_claims_never_deliver(redis_client: redis.Redis,
                                                          namespace: str, fence: int,
                                                          deadline: int, same_run: bool,
                                                          same_incarnation: bool) -> None:
    client = Client(redis_client, namespace, secret=SECRET)
    run = client.start_run(f"fuzz-{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    now = client.server_time_ms()
    env = Envelope.create(SECRET, callback_id=uuid.uuid4().hex, session_key=run.session_key,
                          run_id=run.run_id if same_run else uuid.uuid4().hex, fence=fence,
                          incarnation=(run.lease.incarnation if same_incarnation
                                       else uuid.uuid4().hex), tool="image_generate",
                          task_args={}, submitted_at_ms=0,
                          deadline_at_ms=deadline)
    verdict = client.gate.deliver(env, result={})
    genuine = (same_run and same_incarnation and fence == run.fence
               and deadline >= client.server_time_ms())
    if verdict.delivered:
        assert same_run and same_incarnation and fence == run.fence and deadline >= now
    else:
        assert not genuine
        assert verdict.reason in ("unknown_run", "deadline_passed")
    assert len(run.inbox.entries()) == (2 if verdict.delivered else 1)


SIGNING_PEM = generate_pems()[0]
REVOKED_PEM, REVOKED_PUBLIC = generate_pems()
REVOKED_KID = key_id(load_verify_key(REVOKED_PUBLIC))
REFUSALS = ("malformed", "bad_signature", "unknown_key", "revoked_key")


@SETTINGS
@given(key=st.sampled_from(sorted(WIRE_KEYS_V3.values())),
       value=st.one_of(values, st.sampled_from([REVOKED_KID, "0" * 16, "ed25519"])),
       mutate=st.booleans(),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=3))
def test_mutated_v3_envelopes_never_deliver(redis_client: redis.Redis, namespace: str, key: str,
                                            value: Any, mutate: bool,
                                            flips: list[tuple[int, int]]) -> None:
    client = Client(redis_client, namespace, signing_key=SIGNING_PEM,
                    verify_keys=[REVOKED_PUBLIC], revoked_keys=[REVOKED_KID])
    run = client.start_run(f"fuzz-{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    genuine = run.envelope("image_generate", {"prompt": "p"})
    data = msgpack.unpackb(genuine.encode(), raw=False)
    if mutate:
        data[key] = value
    wire = bytearray(msgpack.packb(data, use_bin_type=True))
    for position, bits in flips:
        wire[position % len(wire)] ^= bits
    try:  # the mutation may be a no-op: only then may it deliver
        same = Envelope.decode(bytes(wire), client.keyring) == genuine
    except EnvelopeError:
        same = False
    verdict = client.gate.deliver(bytes(wire), result={})
    assert verdict.delivered == same
    if not same:
        assert verdict.reason in REFUSALS
    assert len(run.inbox.entries()) == (2 if same else 1)
