"""The envelope: round trip, every malformed case, signatures, and fuzzing of decode."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leasegate.broker.envelope import (
    RAW_CAP,
    WIRE_KEYS,
    BadSignature,
    Envelope,
    EnvelopeError,
    MalformedEnvelope,
    digest_args,
)

SECRET = b"s" * 32
OLD_SECRET = b"o" * 32
INC = "0123456789abcdef0123456789abcdef"
ARGS = {"prompt": "a red fox", "size": [1024, 1024], "seed": 7, "opts": {"b": 1, "a": None}}


def make(**overrides: Any) -> Envelope:
    fields: dict[str, Any] = {
        "callback_id": "3f1c0e2a9b8d4c6e8f7a6b5c4d3e2f1a", "session_key": "cron:daily-digest",
        "run_id": "r-42", "fence": 3, "incarnation": INC, "tool": "image_generate",
        "task_args": ARGS,
        "submitted_at_ms": 1_700_000_000_000, "deadline_at_ms": 1_700_000_600_000,
    }
    fields.update(overrides)
    secret = fields.pop("secret", SECRET)
    return Envelope.create(secret, **fields)


def wire_map(env: Envelope | None = None) -> dict[Any, Any]:
    return dict(msgpack.unpackb((env or make()).encode(), raw=False))


def pack(value: Any) -> bytes:
    return bytes(msgpack.packb(value, use_bin_type=True))


def malformed(wire: bytes, field: str | None = None) -> MalformedEnvelope:
    with pytest.raises(MalformedEnvelope) as info:
        Envelope.decode(wire, SECRET)
    err = info.value
    assert err.reason == "malformed"
    assert err.raw == wire[:RAW_CAP]
    if field is not None:
        assert err.field == field
        assert field in str(err)
    return err


def test_round_trip() -> None:
    env = make()
    wire = env.encode()
    assert Envelope.decode(wire, SECRET) == env
    assert env.v == 2 and env.task_id == env.callback_id and len(env.sig) == 32
    assert env.args_digest == digest_args(ARGS)
    assert set(wire_map(env)) == set(WIRE_KEYS.values())


def test_task_id_may_differ_from_callback_id() -> None:
    env = make(task_id="celery-task-1")
    assert Envelope.decode(env.encode(), SECRET).task_id == "celery-task-1"


def test_to_dict_has_sig_as_hex() -> None:
    env = make()
    d = env.to_dict()
    assert d["sig"] == env.sig.hex() and d["fence"] == 3 and d["tool"] == "image_generate"
    json.dumps(d)


def test_args_digest_is_canonical() -> None:
    reordered = {"opts": {"a": None, "b": 1}, "seed": 7, "size": (1024, 1024),
                 "prompt": "a red fox"}
    assert digest_args(reordered) == digest_args(ARGS)
    # What a JSON message body (Celery's default) does to the args keeps the digest.
    assert digest_args(json.loads(json.dumps(ARGS))) == digest_args(ARGS)
    assert digest_args({**ARGS, "seed": 8}) != digest_args(ARGS)
    with pytest.raises(TypeError, match="task_args"):
        digest_args({"x": object()})


def test_decode_accepts_bytearray_and_memoryview() -> None:
    wire = make().encode()
    assert Envelope.decode(bytearray(wire), SECRET) == Envelope.decode(memoryview(wire), SECRET)


def test_key_rotation() -> None:
    old = make(secret=OLD_SECRET)
    assert Envelope.decode(old.encode(), [SECRET, OLD_SECRET]) == old
    assert Envelope.decode(make().encode(), (SECRET, OLD_SECRET)) == make()
    with pytest.raises(BadSignature):
        Envelope.decode(old.encode(), [SECRET])


def test_forged_signature() -> None:
    forged = make(secret=b"f" * 32)
    with pytest.raises(BadSignature) as info:
        Envelope.decode(forged.encode(), SECRET)
    err = info.value
    assert err.reason == "bad_signature" and isinstance(err, EnvelopeError)
    assert err.raw == forged.encode()
    assert err.claimed["session_key"] == "cron:daily-digest" and err.claimed["run_id"] == "r-42"


TAMPER: dict[str, Any] = {
    "callback_id": "another", "session_key": "cron:other", "run_id": "r-43", "fence": 4,
    "incarnation": "f" * 32, "tool": "image_edit", "args_digest": "0" * 64, "task_id": "t-2",
    "submitted_at_ms": 1_700_000_000_001, "deadline_at_ms": 1_700_009_999_999,
}


@pytest.mark.parametrize("name", sorted(TAMPER))
def test_tampering_any_field_breaks_the_signature(name: str) -> None:
    assert set(TAMPER) == set(WIRE_KEYS) - {"v", "sig"}
    env = make()
    with pytest.raises(BadSignature):
        Envelope.decode(dataclasses.replace(env, **{name: TAMPER[name]}).encode(), SECRET)
    # The same on the wire, re-encoded by hand.
    wire = wire_map(env)
    wire[WIRE_KEYS[name]] = TAMPER[name]
    with pytest.raises(BadSignature):
        Envelope.decode(pack(wire), SECRET)


def test_tampered_signature() -> None:
    wire = wire_map()
    wire["sig"] = bytes([wire["sig"][0] ^ 1]) + wire["sig"][1:]
    with pytest.raises(BadSignature):
        Envelope.decode(pack(wire), SECRET)


def test_reencoding_keeps_the_signature() -> None:
    # Another msgpack writer may order keys differently or pick wider int formats.
    env = make()
    reordered = dict(reversed(list(wire_map(env).items())))
    assert Envelope.decode(pack(reordered), SECRET) == env


def test_oversized() -> None:
    wire = make().encode()
    with pytest.raises(MalformedEnvelope, match=rf"is {len(wire)} bytes; the limit is 100 bytes"):
        Envelope.decode(wire, SECRET, max_bytes=100)
    err = malformed(b"\x00" * 10_000)
    assert "10000 bytes" in str(err) and "4096 bytes" in str(err)
    assert len(err.raw) == RAW_CAP and err.size == 10_000


def test_raw_cap_is_configurable() -> None:
    with pytest.raises(MalformedEnvelope) as info:
        Envelope.decode(b"\xc1" * 100, SECRET, raw_cap=10)
    assert info.value.raw == b"\xc1" * 10 and info.value.size == 100


@pytest.mark.parametrize("wire", [b"", b"\xc1", b"\x81", b"\x92\x01", b"\xa1\xff",
                                  pack({"v": 1}) + b"\x00"])
def test_not_msgpack(wire: bytes) -> None:
    assert "not msgpack" in str(malformed(wire))


@pytest.mark.parametrize("value", [[1, 2], "text", 1, None, b"bytes"])
def test_not_a_map(value: Any) -> None:
    assert "map" in str(malformed(pack(value)))


def test_not_bytes() -> None:
    with pytest.raises(MalformedEnvelope, match="bytes"):
        Envelope.decode("text", SECRET)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [0, 1, 4, "2", None, True, 2.0])
def test_unknown_version(version: Any) -> None:
    wire = wire_map()
    wire["v"] = version
    assert "version" in str(malformed(pack(wire), "v"))


def test_a_version_1_envelope_is_refused_as_malformed() -> None:
    """Upgrading: a version 1 envelope (no incarnation) still in a queue is quarantined as
    malformed, never delivered by the run id and fence alone (drain the queues first)."""
    wire = wire_map()
    del wire["inc"]
    wire["v"] = 1
    err = malformed(pack(wire), "v")
    assert "unknown envelope version 1" in str(err)


def test_missing_version() -> None:
    wire = wire_map()
    del wire["v"]
    malformed(pack(wire), "v")


@pytest.mark.parametrize("name", [name for name in WIRE_KEYS if name != "v"])
def test_missing_field(name: str) -> None:
    wire = wire_map()
    del wire[WIRE_KEYS[name]]
    malformed(pack(wire), name)


def test_unknown_key_rejected() -> None:
    wire = wire_map()
    wire["extra"] = 1
    assert "extra" in str(malformed(pack(wire)))


def test_bytes_keys_rejected() -> None:
    wire = wire_map()
    wire[b"extra"] = 1
    malformed(pack(wire))


WRONG_TYPES: dict[str, tuple[Any, str]] = {
    "callback_id": (b"abc", "str"), "session_key": (1, "str"), "run_id": (None, "str"),
    "fence": ("3", "int"), "incarnation": (b"\x00" * 16, "str"), "tool": (["image"], "str"),
    "args_digest": (b"\x00" * 32, "str"),
    "task_id": (1.5, "str"), "submitted_at_ms": (1.7e12, "int"), "deadline_at_ms": (True, "int"),
    "sig": ("00" * 32, "bytes"),
}


@pytest.mark.parametrize("name", sorted(WRONG_TYPES))
def test_wrong_type(name: str) -> None:
    value, expected = WRONG_TYPES[name]
    wire = wire_map()
    wire[WIRE_KEYS[name]] = value
    err = malformed(pack(wire), name)
    assert f"must be {expected}" in str(err)


BAD_VALUES: list[tuple[str, Any]] = [
    ("session_key", ""), ("session_key", "a{b}"), ("session_key", "k" * 513),
    ("session_key", "a\nb"), ("run_id", ""), ("run_id", "a:b"), ("run_id", "r" * 129),
    ("run_id", "r}"), ("callback_id", ""), ("callback_id", "a:b"), ("callback_id", "c" * 129),
    ("callback_id", "c\x00"), ("task_id", ""), ("task_id", "t{"), ("tool", ""),
    ("tool", "t" * 65), ("tool", "image generate"), ("tool", "imäge"), ("tool", "a/b"),
    ("args_digest", "a" * 63), ("args_digest", "A" * 64), ("args_digest", "g" * 64),
    ("fence", 0), ("fence", -1), ("fence", 2**63), ("submitted_at_ms", -1),
    ("incarnation", ""), ("incarnation", "0" * 31), ("incarnation", "0" * 33),
    ("incarnation", "A" * 32), ("incarnation", "g" * 32),
    ("deadline_at_ms", 1_699_999_999_999), ("deadline_at_ms", 2**64 - 1),
    ("sig", b""), ("sig", b"\x00" * 31), ("sig", b"\x00" * 33),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_bad_value(name: str, value: Any) -> None:
    wire = wire_map()
    wire[WIRE_KEYS[name]] = value
    malformed(pack(wire), name)


def test_accepted_edges() -> None:
    env = make(session_key="k" * 512, run_id="r" * 128, callback_id="c" * 128,
               tool="t" * 64, fence=2**63 - 1, submitted_at_ms=5, deadline_at_ms=5)
    assert Envelope.decode(env.encode(), SECRET) == env
    assert make(tool="ns.image_generate:v2-beta").tool == "ns.image_generate:v2-beta"


@pytest.mark.parametrize(("name", "value"), [
    ("callback_id", "a:b"), ("session_key", ""), ("run_id", "x{"), ("tool", "a b"),
    ("fence", 0), ("deadline_at_ms", 1), ("task_id", "t:1"), ("incarnation", "xyz"),
])
def test_create_rejects_what_decode_would(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        make(**{name: value})


def test_create_names_a_non_str_id() -> None:
    with pytest.raises(ValueError, match="session_key must be str"):
        make(session_key=7)


def test_create_rejects_lone_surrogates() -> None:
    with pytest.raises(ValueError, match="run_id"):
        make(run_id="r\ud800")


@pytest.mark.parametrize("secret", [b"", b"x" * 15, "x" * 32])
def test_short_secret(secret: Any) -> None:
    with pytest.raises(ValueError, match=r"secret.*16"):
        make(secret=secret)
    with pytest.raises(ValueError, match=r"secret.*16") as info:
        Envelope.decode(make().encode(), secret)
    assert not isinstance(info.value, EnvelopeError)
    with pytest.raises(ValueError, match=r"secret.*16"):
        Envelope.decode(make().encode(), [SECRET, secret])


def test_no_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        Envelope.decode(make().encode(), [])


def test_verify_secret_length() -> None:
    assert Envelope.verify_secret_length(b"x" * 16) == b"x" * 16
    with pytest.raises(ValueError, match="16"):
        Envelope.verify_secret_length(b"x" * 15)


# --- fuzzing: only EnvelopeError ever escapes decode, and its raw bytes are capped ---

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
           | st.text(max_size=40) | st.binary(max_size=40)
           | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12))
           | st.builds(msgpack.Timestamp, st.integers(-(2**40), 2**40), st.integers(0, 10**9 - 1)))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=8) | st.binary(max_size=8), inner, max_size=5),
    max_leaves=30,
)
small_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=4)
right_keys = st.fixed_dictionaries({key: small_values for key in WIRE_KEYS.values()})


def one_field_replaced() -> st.SearchStrategy[dict[str, Any]]:
    base = wire_map()

    def replace(key: str, value: Any) -> dict[str, Any]:
        return {**base, key: value}

    return st.builds(replace, st.sampled_from(sorted(base)), values)


def check_decode(wire: bytes) -> None:
    try:
        Envelope.decode(wire, [SECRET, OLD_SECRET])
    except EnvelopeError as err:
        assert err.raw == wire[:RAW_CAP]
        assert len(err.raw) <= RAW_CAP
        assert err.reason in ("malformed", "bad_signature")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=6000))
def test_fuzz_bytes(wire: bytes) -> None:
    check_decode(wire)


@settings(max_examples=400, deadline=None)
@given(values)
def test_fuzz_msgpack_values(value: Any) -> None:
    check_decode(pack(value))


@settings(max_examples=400, deadline=None)
@given(right_keys | one_field_replaced())
def test_fuzz_maps_with_the_right_keys(value: dict[Any, Any]) -> None:
    check_decode(pack(value))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(0, 300))
def test_fuzz_corrupted_valid_wire(noise: bytes, at: int) -> None:
    wire = make().encode()
    at = min(at, len(wire))
    check_decode(wire[:at] + noise + wire[at + len(noise):])


@pytest.mark.parametrize("wire", [
    b"\x91" * 3000,                        # deep nesting
    b"\xcf" + b"\xff" * 8,                 # uint64 max
    b"\xd3" + b"\x80" + b"\x00" * 7,       # int64 min
    b"\xd4\xff\x00",                       # timestamp ext with bad length
    b"\xd6\xff\x00\x00\x00\x01",           # valid timestamp ext
    b"\xdf\xff\xff\xff\xff",               # map claiming 4G entries
    b"\xdb\xff\xff\xff\xff",               # str claiming 4GB
    b"\xc7\x05\x01",                       # truncated ext
])
def test_hostile_msgpack(wire: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        Envelope.decode(wire, SECRET)
