"""The signature check of a well-formed envelope: which key signed it, and the reason to
refuse it (``bad_signature``, ``unknown_key``, ``revoked_key``) when none of ours did."""

from __future__ import annotations

import hmac

from .errors import BadSignature, RevokedKey, UnknownKey
from .keyring import Keyring
from .signed import VERSION, Envelope, VerifiedEnvelope


def verified(envelope: Envelope, keyring: Keyring, raw: bytes | None,
             raw_cap: int) -> VerifiedEnvelope:
    """``envelope`` proven signed by a key of ``keyring``; else the BadSignature (or its
    UnknownKey, RevokedKey) carrying ``raw`` (its encoding when None) and the claimed fields."""
    signed = envelope.signed_bytes()
    if envelope.v == VERSION:
        if not keyring.secrets:
            raise UnknownKey("a version 2 (HMAC) envelope, but this process holds no "
                             "secret: it accepts Ed25519 (version 3) envelopes only",
                             _wire(envelope, raw), envelope, raw_cap=raw_cap)
        for one in keyring.secrets:
            # hmac.digest: OpenSSL's one-shot HMAC, a few microseconds less than hmac.new
            if hmac.compare_digest(hmac.digest(one, signed, "sha256"), envelope.sig):
                return VerifiedEnvelope._of(envelope)
        raise BadSignature("envelope signature matches no configured secret",
                           _wire(envelope, raw), envelope, raw_cap=raw_cap)
    reason = keyring.verify_ed25519(envelope.kid, envelope.sig, signed)
    if reason is None:
        return VerifiedEnvelope._of(envelope)
    wire = _wire(envelope, raw)
    if reason == "revoked_key":
        raise RevokedKey(f"envelope is signed with revoked key {envelope.kid}", wire, envelope,
                         raw_cap=raw_cap)
    if reason == "unknown_key":
        raise UnknownKey(f"envelope is signed with key {envelope.kid}, which is not among the "
                         "verify keys", wire, envelope, raw_cap=raw_cap)
    raise BadSignature(f"envelope signature does not verify under key {envelope.kid}", wire,
                       envelope, raw_cap=raw_cap)


def _wire(envelope: Envelope, raw: bytes | None) -> bytes:
    """The bytes a refusal keeps: encoded only then, so a good envelope never pays for it."""
    return envelope.encode() if raw is None else raw
