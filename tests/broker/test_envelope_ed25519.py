"""Version 3 envelopes: Ed25519 signatures with a key id. Sign and verify, rotation with
overlapping keys, revocation, tampering, and the HMAC (version 2) migration path; at the gate,
each refusal is a dead letter with its own reason and the raw bytes, never an inbox entry."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import msgpack
import pytest
import redis

from leasegate.broker import (
    BadSignature,
    Client,
    Envelope,
    Keyring,
    MalformedEnvelope,
    RevokedKey,
    UnknownKey,
    VerifiedEnvelope,
    generate_pems,
    key_id,
    load_signing_key,
    load_verify_key,
)
from leasegate.broker.envelope import VERSION_ED25519
from tests.conftest import SECRET

OLD_PRIVATE, OLD_PUBLIC = generate_pems()
NEW_PRIVATE, NEW_PUBLIC = generate_pems()
OLD_KID = key_id(load_verify_key(OLD_PUBLIC))
NEW_KID = key_id(load_verify_key(NEW_PUBLIC))


def envelope(private_pem: bytes = NEW_PRIVATE, **overrides: Any) -> Envelope:
    fields: dict[str, Any] = dict(
        callback_id="cb1", session_key="cron:digest", run_id="run1", fence=3,
        incarnation="ab" * 16, tool="image_generate", task_args={"prompt": "p"},
        submitted_at_ms=1_000, deadline_at_ms=61_000)
    fields.update(overrides)
    return Envelope.create(load_signing_key(private_pem), **fields)


def rewire(env: Envelope, **changes: Any) -> bytes:
    """``env``'s wire form with some keys changed and its signature kept: a tampered copy."""
    data = msgpack.unpackb(env.encode(), raw=False)
    data.update(changes)
    return bytes(msgpack.packb(data, use_bin_type=True))


def test_a_signed_envelope_is_version_3_and_names_its_key() -> None:
    env = envelope()
    assert env.v == VERSION_ED25519 and env.alg == "ed25519" and env.kid == NEW_KID
    assert len(env.sig) == 64
    # the key id is the first 8 bytes of the SHA-256 of the raw public key
    raw = load_verify_key(NEW_PUBLIC).public_bytes_raw()
    assert env.kid == hashlib.sha256(raw).hexdigest()[:16]
    opened = Envelope.decode(env.encode(), Keyring(verify_keys=[NEW_PUBLIC]))
    assert isinstance(opened, VerifiedEnvelope) and opened == env
    assert opened.to_dict()["kid"] == NEW_KID


def test_rotation_accepts_both_overlapping_keys() -> None:
    worker = Keyring(verify_keys=[NEW_PUBLIC, OLD_PUBLIC])
    for private, kid in ((OLD_PRIVATE, OLD_KID), (NEW_PRIVATE, NEW_KID)):
        assert Envelope.decode(envelope(private).encode(), worker).kid == kid
    # the old key retired from the list: its envelopes are refused as an unknown key
    with pytest.raises(UnknownKey) as info:
        Envelope.decode(envelope(OLD_PRIVATE).encode(), Keyring(verify_keys=[NEW_PUBLIC]))
    assert info.value.reason == "unknown_key" and info.value.claimed["kid"] == OLD_KID


def test_a_revoked_key_is_refused_even_while_its_public_key_is_configured() -> None:
    worker = Keyring(verify_keys=[NEW_PUBLIC, OLD_PUBLIC], revoked_keys=[OLD_KID])
    with pytest.raises(RevokedKey) as info:
        Envelope.decode(envelope(OLD_PRIVATE).encode(), worker)
    assert info.value.reason == "revoked_key"
    assert Envelope.decode(envelope(NEW_PRIVATE).encode(), worker).kid == NEW_KID
    assert OLD_KID not in worker.fingerprints() and NEW_KID in worker.fingerprints()


@pytest.mark.parametrize("changes", [
    {"run": "run2"}, {"fence": 4}, {"sk": "cron:other"}, {"dl": 10**12}, {"id": "cb2"},
    {"inc": "cd" * 16}, {"tool": "other_tool"}, {"args": "0" * 64}, {"task": "t2"}, {"at": 0},
])
def test_a_valid_signature_over_a_modified_field_is_bad_signature(
        changes: dict[str, Any]) -> None:
    wire = rewire(envelope(), **changes)
    with pytest.raises(BadSignature) as info:
        Envelope.decode(wire, Keyring(verify_keys=[NEW_PUBLIC]))
    assert type(info.value) is BadSignature and info.value.reason == "bad_signature"
    assert info.value.raw == wire


def test_claiming_another_known_key_id_is_bad_signature() -> None:
    wire = rewire(envelope(OLD_PRIVATE), kid=NEW_KID)
    with pytest.raises(BadSignature) as info:
        Envelope.decode(wire, Keyring(verify_keys=[NEW_PUBLIC, OLD_PUBLIC]))
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("changes, field", [
    ({"alg": "hmac-sha256"}, "alg"), ({"kid": "XYZ"}, "kid"), ({"sig": b"\0" * 32}, "sig"),
    ({"kid": 7}, "kid"),
])
def test_a_bad_alg_kid_or_sig_is_malformed_naming_the_field(changes: dict[str, Any],
                                                             field: str) -> None:
    with pytest.raises(MalformedEnvelope) as info:
        Envelope.decode(rewire(envelope(), **changes), Keyring(verify_keys=[NEW_PUBLIC]))
    assert info.value.field == field


def test_version_2_needs_a_secret_and_version_3_needs_verify_keys() -> None:
    hmac_wire = Envelope.create(SECRET, callback_id="cb1", session_key="cron:digest",
                                run_id="run1", fence=3, incarnation="ab" * 16,
                                tool="image_generate", task_args={}, submitted_at_ms=0,
                                deadline_at_ms=1).encode()
    with pytest.raises(UnknownKey, match="no secret"):
        Envelope.decode(hmac_wire, Keyring(verify_keys=[NEW_PUBLIC]))
    with pytest.raises(UnknownKey):
        Envelope.decode(envelope().encode(), SECRET)
    # during a migration a worker holds both, and takes both
    both = Keyring(secrets=[SECRET], verify_keys=[NEW_PUBLIC])
    assert {Envelope.decode(w, both).v for w in (hmac_wire, envelope().encode())} == {2, 3}


def test_verify_keys_cannot_sign() -> None:
    """What a worker holds (public keys) gives it no way to mint an envelope."""
    with pytest.raises(ValueError, match="private key"):
        load_signing_key(NEW_PUBLIC)
    with pytest.raises(TypeError, match="private key"):
        Envelope.create(load_verify_key(NEW_PUBLIC), callback_id="cb1",  # type: ignore[arg-type]
                        session_key="cron:digest", run_id="run1", fence=3,
                        incarnation="ab" * 16, tool="image_generate", task_args={},
                        submitted_at_ms=0, deadline_at_ms=1)
    with pytest.raises(ValueError, match="private key"):
        load_verify_key(NEW_PRIVATE)  # a worker is never handed the private key by mistake
    assert not Keyring(verify_keys=[NEW_PUBLIC]).can_sign


@pytest.mark.parametrize("pem, field", [(b"not a pem", "signing_key"),
                                        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n", "signing_key")])
def test_bad_key_material_names_the_field(pem: bytes, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        load_signing_key(pem)
    with pytest.raises(ValueError, match="revoked_keys"):
        Keyring(verify_keys=[NEW_PUBLIC], revoked_keys=["nothex"])


@pytest.fixture
def signing_client(redis_client: redis.Redis, namespace: str) -> Client:
    return Client(redis_client, namespace, signing_key=NEW_PRIVATE,
                  verify_keys=[OLD_PUBLIC], revoked_keys=[OLD_KID])


def test_the_gate_quarantines_each_refusal_under_its_own_reason(
        signing_client: Client, redis_client: redis.Redis, namespace: str) -> None:
    run = signing_client.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    genuine = run.envelope("image_generate", {"prompt": "p"})
    assert genuine.v == 3 and genuine.kid == NEW_KID
    stranger = Client(redis_client, namespace, signing_key=generate_pems()[0])
    forged = {
        "bad_signature": rewire(genuine, fence=run.fence + 1),
        "revoked_key": Client(redis_client, namespace, signing_key=OLD_PRIVATE).attach(
            run.session_key, run.run_id).envelope("image_generate").encode(),
        "unknown_key": stranger.attach(run.session_key, run.run_id)
        .envelope("image_generate").encode(),
    }
    for reason, wire in forged.items():
        verdict = signing_client.gate.deliver(wire, result={"x": 1})
        assert not verdict.delivered and verdict.reason == reason
        letter = signing_client.dead_letters.get(verdict.entry_id)
        assert letter.reason == reason and letter.raw == wire
        assert letter.claimed_session_key == run.session_key
    assert len(run.inbox.entries()) == 1  # only the prompt
    verdict = signing_client.gate.deliver(genuine.encode(), result={"x": 1})
    assert verdict.delivered and len(run.inbox.entries()) == 2


def test_a_verify_only_client_refuses_to_sign(redis_client: redis.Redis,
                                              namespace: str) -> None:
    worker = Client(redis_client, namespace, verify_keys=[NEW_PUBLIC])
    run = worker.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    with pytest.raises(RuntimeError, match="verify keys only"):
        run.envelope("image_generate")
    assert worker.fingerprint is None and worker.check_secret() == {}
